"""Only the web layer (and the app factory and command line) may import Flask: the domain is
replayable and testable without a server (style-by-example.md §3.2)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cds_service"
ALLOWED = {"app.py", "web", "commands"}


def test_domain_modules_do_not_import_flask():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "flask" or n.startswith(("flask.", "werkzeug")) for n in names):
                offenders.append(str(relative))
    assert offenders == []

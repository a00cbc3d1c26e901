"""Golden files: a reviewed JSON snapshot per case, compared exactly.

``UPDATE_GOLDEN=1 pytest ...`` rewrites a file that differs and then fails that test with the
unified diff, so an update is never a silent pass (it used to rewrite the file and compare it with
itself) and the diff is read before it is committed. With ``CI`` set, an update is refused.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def dump(value: Any) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def _diff(old: str, new: str, path: Path) -> str:
    name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        f"a/{name}", f"b/{name}"))


def check_golden(path: Path, got: Any) -> None:
    """``got`` must equal the golden file at ``path`` (see the module docstring)."""
    new = dump(json.loads(json.dumps(got)))
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    stored = dump(json.loads(old)) if old else ""
    if os.environ.get("UPDATE_GOLDEN"):
        if os.environ.get("CI"):
            pytest.fail("UPDATE_GOLDEN is refused when CI is set: golden files change only in a "
                        "reviewed commit", pytrace=False)
        if new != stored:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new, encoding="utf-8")
            pytest.fail(f"golden file rewritten: review this diff before committing it\n"
                        f"{_diff(old, new, path)}", pytrace=False)
        return
    assert old, f"no golden file {path.name}: run with UPDATE_GOLDEN=1 and review it"
    if new != stored:
        pytest.fail(f"differs from the golden file (UPDATE_GOLDEN=1 rewrites it)\n"
                    f"{_diff(stored, new, path)}", pytrace=False)

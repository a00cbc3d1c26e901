"""``cds-service rxnorm-import``: a site RxNorm file from the RxNorm release files.

RxNorm (U.S. National Library of Medicine) is public domain; a site downloads a release and runs::

    cds-service rxnorm-import rrf/RXNCONSO.RRF rrf/RXNREL.RRF \
        --out /etc/cds/site/rxnorm-products.toml

and points ``CDS_EXTRA_MAPPINGS`` at the folder. The file maps clinical and branded drugs (SCD,
SBD), their components (SCDC, SBDC), dose-form groups (SCDF, SBDF, SCDG, SBDG) and packs (GPCK,
BPCK) to their ingredient codes and dose form, so that an order coded only by such a code (no
display) is recognised exactly (clinical-rules.md §2 "Medications"). It is loaded at start-up
with the other site mappings (mappings/README.md, "Site RxNorm file").

The RRF files are pipe-separated, one row per line with a trailing ``|`` (RxNorm Technical
Documentation, section 12): RXNCONSO ``RXCUI|LAT|TS|LUI|STT|SUI|ISPREF|RXAUI|SAUI|SCUI|SDUI|SAB|
TTY|CODE|STR|SRL|SUPPRESS|CVF``; RXNREL ``RXCUI1|RXAUI1|STYPE1|REL|RXCUI2|RXAUI2|STYPE2|RELA|RUI|
SRUI|SAB|SL|DIR|RG|SUPPRESS|CVF``. Only ``SAB=RXNORM`` rows are read. A relationship is followed
only from a product to what it is made of, judged by the term types at both ends (SBD → SCD →
SCDC → IN, ...), so the direction in which RXNREL writes a pair does not matter and a component
shared by another product never leaks that product's ingredients.

By default only products with an ingredient of a medication class in the mappings are written
(a few thousand lines); ``--all`` writes every product.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..cli import UsageError

# From a product to its parts: (term type of the concept, term types it is made of).
PARTS = {
    "BPCK": {"SBD", "SCD", "GPCK"}, "GPCK": {"SCD"},
    "SBD": {"SCD", "SBDC", "SBDF"}, "SCD": {"SCDC", "SCDF"},
    "SBDC": {"SCDC"}, "SBDF": {"SCDF"}, "SBDG": {"SCDG"},
    "SCDC": {"IN", "PIN"}, "SCDF": {"IN", "PIN", "MIN"}, "SCDG": {"IN", "PIN", "MIN"},
    "MIN": {"IN"}, "PIN": {"IN"},
}
PRODUCTS = ("SCD", "SBD", "SCDC", "SBDC", "SCDF", "SBDF", "SCDG", "SBDG", "GPCK", "BPCK", "PIN",
            "MIN")
FORMS = {"SCD": "DF", "SBD": "DF", "SCDF": "DF", "SBDF": "DF", "SCDG": "DFG", "SBDG": "DFG"}
KEPT = frozenset({*PRODUCTS, "IN", "DF", "DFG", "BN"})
CONSO_FIELDS = 18
REL_FIELDS = 16


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "rxnorm-import", help="build a site RxNorm file (products → ingredients, dose form)",
        description="Reads RXNCONSO.RRF and RXNREL.RRF of an RxNorm release and writes "
                    "rxnorm-products.toml for a site mapping folder (CDS_EXTRA_MAPPINGS).")
    parser.add_argument("conso", metavar="RXNCONSO.RRF")
    parser.add_argument("rel", metavar="RXNREL.RRF")
    parser.add_argument("--out", required=True, metavar="DIR/rxnorm-products.toml")
    parser.add_argument("--all", action="store_true",
                        help="write every product, not only those of the medication classes")
    parser.set_defaults(run=run)


def _rows(path: str, fields: int) -> Iterator[list[str]]:
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read: {exc.strerror}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            cells = line.split("|")
            if len(cells) != fields + 1 or cells[-1] != "":
                raise UsageError(f"{path}:{number}: not an RRF row of {fields} fields "
                                 f"(found {len(cells) - 1})")
            yield cells[:fields]


def read_release(conso: str, rel: str) -> tuple[dict[str, str], dict[str, str],
                                                dict[str, set[str]]]:
    """(rxcui → term type, rxcui → name, rxcui → related rxcuis) of the RxNorm rows."""
    tty: dict[str, str] = {}
    name: dict[str, str] = {}
    for row in _rows(conso, CONSO_FIELDS):
        rxcui, sab, term_type, text = row[0], row[11], row[12], row[14]
        # a concept's normalised atom; synonyms (SY, TMSY, PSN) and other sources are skipped
        if sab == "RXNORM" and term_type in KEPT:
            tty[rxcui], name[rxcui] = term_type, text
    links: dict[str, set[str]] = defaultdict(set)
    for row in _rows(rel, REL_FIELDS):
        one, two, sab = row[0], row[4], row[10]
        if sab == "RXNORM" and one and two:
            links[one].add(two)
            links[two].add(one)
    return tty, name, links


def resolve(rxcui: str, tty: dict[str, str],
            links: dict[str, set[str]]) -> tuple[list[str], str | None]:
    """Ingredient codes (IN) and dose-form rxcui of a product, following PARTS downwards."""
    ingredients: set[str] = set()
    form = None
    seen = {rxcui}
    todo = [rxcui]
    wanted_form = FORMS.get(tty.get(rxcui, ""))
    while todo:
        here = todo.pop()
        kind = tty.get(here, "")
        for other in links.get(here, ()):
            other_kind = tty.get(other, "")
            if here == rxcui and wanted_form and other_kind == wanted_form:
                form = other
            if other_kind == "IN" and kind in PARTS and "IN" in PARTS[kind]:
                ingredients.add(other)
            elif other_kind in PARTS.get(kind, ()) and other not in seen:
                seen.add(other)
                todo.append(other)
    return sorted(ingredients, key=int), form


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.name != "rxnorm-products.toml":
        raise UsageError(f"{out}: the file must be named rxnorm-products.toml (the loader reads "
                         "it by name)")
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent}: folder does not exist")
    tty, name, links = read_release(args.conso, args.rel)
    wanted = None if args.all else _class_ingredient_names()
    products: dict[str, tuple[list[str], str | None]] = {}
    for rxcui, kind in tty.items():
        if kind not in PRODUCTS:
            continue
        ingredients, form = resolve(rxcui, tty, links)
        if not ingredients:
            continue
        if wanted is not None and not any(_key(name.get(i, "")) in wanted for i in ingredients):
            continue
        products[rxcui] = (ingredients, name.get(form) if form else None)
    used = sorted({i for ins, _ in products.values() for i in ins}, key=int)
    lines = [
        "# rxnorm-products.toml — written by `cds-service rxnorm-import` from",
        f"# {Path(args.conso).name} and {Path(args.rel).name} (RxNorm, U.S. National Library of "
        "Medicine, public domain).",
        "# Do not edit: re-run the command with a new release. See mappings/README.md, "
        "\"Site RxNorm file\".",
        "",
        "[ingredients]",
        *(f"{json.dumps(i)} = {json.dumps(name.get(i, ''))}" for i in used),
        "",
        "[products]",
    ]
    for rxcui in sorted(products, key=int):
        ingredients, form = products[rxcui]
        entry = f"in = {json.dumps(ingredients)}, tty = {json.dumps(tty[rxcui])}"
        if form:
            entry += f", form = {json.dumps(form)}"
        entry += f", name = {json.dumps(name.get(rxcui, ''))}"
        lines.append(f"{json.dumps(rxcui)} = {{ {entry} }}")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{out}: {len(products)} products, {len(used)} ingredients", file=sys.stderr)  # noqa: T201
    return 0


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def _class_ingredient_names() -> set[str]:
    """Lower-case names of the class ingredients (the first word of a salt name counts too)."""
    from ..config import DEFAULT_MAPPINGS_DIR
    from ..mappings import load_mappings

    names: set[str] = set()
    for concept in load_mappings(DEFAULT_MAPPINGS_DIR).concepts.values():
        for _path, table in concept.ingredients:
            names.add(_key(str(table["name"])))
            names.update(_key(s) for s in table.get("synonyms", ()))
    return names

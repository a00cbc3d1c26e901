"""Code-system mappings: concept ids ↔ codes, phrases and modalities (``mappings/*.toml``).

The files are data (see ``mappings/README.md``). They are loaded once, in ``create_app``; a broken
file stops start-up with a message naming the file and the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MappingError

TEXT_FILE = "report-text.toml"
# report-text.toml: lists of cue phrases, and tables (see mappings/README.md "Report text")
TEXT_KEYS = ("negation", "post_negation", "uncertainty", "post_uncertainty",
             "bidirectional_uncertainty", "hypothetical", "post_hypothetical", "historical",
             "pseudo", "scope_breakers", "fillers", "abnormal_marrow", "exceptions")
TEXT_TABLES = ("sections", "diagnoses", "conclusion_codes", "result_sections")
# Medication data that is not concepts (mappings/README.md, "Medications"): routes and dose
# forms (project and site), and the site RxNorm file written by `cds-service rxnorm-import`.
FORMS_FILE = "medication-forms.toml"
PRODUCTS_FILE = "rxnorm-products.toml"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
_LIST_KEYS = ("codes", "unverified", "phrases", "includes", "modalities", "prefixes")
_ALLOWED_KEYS = {"label", "unit", "ingredients", *_LIST_KEYS}


@dataclass
class Concept:
    """One concept: its label, canonical unit and the codes, phrases and modalities that mean it."""

    id: str
    label: str
    unit: str | None = None
    codes: set[str] = field(default_factory=set)
    unverified: set[str] = field(default_factory=set)
    phrases: list[str] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    ingredients: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (file, table)
    file: str = ""
    origin: dict[str, str] = field(default_factory=dict)  # code or include -> file it came from


@dataclass
class ReportText:
    """How report text is read (``report-text.toml``): cue lists by kind, section headers by
    section kind, each finding's diagnosis words, the disorder concepts a report's
    ``conclusionCode`` stands for, and the section a result Observation's code implies."""

    cues: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in TEXT_KEYS})
    sections: dict[str, list[str]] = field(default_factory=dict)
    diagnoses: dict[str, list[str]] = field(default_factory=dict)
    conclusion_codes: dict[str, str] = field(default_factory=dict)
    result_sections: dict[str, str] = field(default_factory=dict)


PREFIX_MEMO_MAX = 20_000  # remembered prefix look-ups per table (keys come from requests)


class MappingTable:
    """Look-ups from codes to concept ids, built once; look-ups are memoised."""

    def __init__(self, concepts: dict[str, Concept], text: ReportText,
                 medication_files: Sequence[tuple[str, dict[str, Any]]] = ()) -> None:
        self.concepts = concepts
        self.text = text
        # (path, parsed TOML) of medication-forms.toml and rxnorm-products.toml files, in load
        # order; read by cds_service.clinical.medications
        self.medication_files = list(medication_files)
        self._by_code: dict[str, str] = {}
        for concept in concepts.values():
            for code in concept.codes:
                self._by_code[code] = concept.id
        self._prefixes: list[tuple[str, str]] = sorted(
            ((p, c.id) for c in concepts.values() for p in c.prefixes), key=lambda x: -len(x[0])
        )
        self._prefix_systems = {p.split("|", 1)[0] for p, _ in self._prefixes}
        # concepts a report's text can state (they have phrases), for the imaging reader
        self.text_findings = frozenset(c.id for c in concepts.values() if c.phrases)
        self._by_modality = {m: c.id for c in concepts.values() for m in c.modalities}
        self._members = {cid: self._expand(cid, ()) for cid in concepts}
        # the same look-up as _by_code, by system then code: no "system|code" string to build
        # per coding on the hot path (classifying every resource of a record)
        self._by_system: dict[str, dict[str, str]] = {}
        for key, cid in self._by_code.items():
            system, _, code = key.partition("|")
            if code == code.strip():  # a request's code is stripped: others never match
                self._by_system.setdefault(system, {})[code] = cid
        # prefix matches remembered per key; bounded, since the keys come from requests
        self._prefix_memo: dict[str, str | None] = {}

    def _expand(self, concept_id: str, seen: Sequence[str]) -> frozenset[str]:
        if concept_id in seen:
            raise MappingError(f"concept {concept_id!r} includes itself through {list(seen)}")
        out = {concept_id}
        for member in self.concepts[concept_id].includes:
            out |= self._expand(member, (*seen, concept_id))
        return frozenset(out)

    def concept_of_key(self, key: str) -> str | None:
        """Return the concept a ``system|code`` key maps to, if any: its code exactly, else the
        longest prefix of its system (``prefixes`` in the mapping files)."""
        found = self._by_code.get(key)
        if found is not None or key.split("|", 1)[0] not in self._prefix_systems:
            return found
        memo = self._prefix_memo
        if key in memo:
            return memo[key]
        found = next((cid for p, cid in self._prefixes if key.startswith(p)), None)
        if len(memo) < PREFIX_MEMO_MAX:
            memo[key] = found
        return found

    def concepts_of(self, codeable: Any) -> set[str]:
        """Return the concept ids a CodeableConcept (or list of them) maps to.

        The hot path of classifying a record: one loop over the codings and a look-up by system
        then code, with the same outcome as :meth:`concept_of_key` of the keys
        :func:`~cds_service.fhir.resources.coding_keys` builds (``system|code.strip()``).
        """
        by_system = self._by_system
        if type(codeable) is dict:  # the commonest shape first: one coding, its code mapped
            codings = codeable.get("coding")
            if type(codings) is list and len(codings) == 1:
                coding = codings[0]
                if type(coding) is dict:
                    system, code = coding.get("system"), coding.get("code")
                    if type(system) is str and type(code) is str and "|" not in system:
                        codes = by_system.get(system)
                        cid = codes.get(code) if codes is not None else None
                        if cid is not None:
                            return {cid}
        items = codeable if isinstance(codeable, list) else (codeable,)
        found: set[str] = set()
        prefix_systems = self._prefix_systems
        for item in items:
            if not isinstance(item, dict):
                continue
            codings = item.get("coding")
            if not isinstance(codings, list):
                continue
            for coding in codings:
                if not isinstance(coding, dict):
                    continue
                code = coding.get("code")
                if not isinstance(code, str):
                    continue
                system = coding.get("system")
                if not isinstance(system, str):
                    system = ""
                elif "|" in system:  # the key's first "|" is then not the system's end
                    if cid := self.concept_of_key(f"{system}|{code.strip()}"):
                        found.add(cid)
                    continue
                codes = by_system.get(system)
                cid = codes.get(code) if codes is not None else None
                if cid is None:
                    code = code.strip()
                    if codes is not None:
                        cid = codes.get(code)
                    if cid is None and system in prefix_systems:
                        cid = self.concept_of_key(f"{system}|{code}")
                if cid:
                    found.add(cid)
        return found

    def concept_of_modality(self, modality: str) -> str | None:
        return self._by_modality.get(modality)

    def members(self, concept_id: str) -> frozenset[str]:
        """A class concept's own id plus every concept it includes (transitively)."""
        return self._members[concept_id]

    def label(self, concept_id: str) -> str:
        return self.concepts[concept_id].label

    def codes_for_search(self, concept_ids: Iterable[str]) -> list[str]:
        """All ``system|code`` keys of the concepts and their members, sorted (for templates)."""
        keys: set[str] = set()
        for cid in concept_ids:
            for member in self.members(cid):
                keys |= self.concepts[member].codes
        return sorted(keys)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise MappingError(f"{path}: cannot be read: {exc.strerror}") from None


def _string_list(path: Path, key: str, name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise MappingError(f"{path}: [{key}] {name} must be a list of non-empty strings")
    return [v.strip() for v in value]


def _merge_text(text: ReportText, path: Path, data: dict[str, Any]) -> None:
    for key, value in data.items():
        if key in TEXT_KEYS:
            text.cues[key].extend(v.lower() for v in _string_list(path, key, key, value))
        elif key in ("sections", "diagnoses"):
            if not isinstance(value, dict):
                raise MappingError(f"{path}: [{key}] must be a table of lists")
            table = getattr(text, key)
            for name, items in value.items():
                table.setdefault(name, []).extend(
                    v.lower() for v in _string_list(path, f"{key}.{name}", name, items))
        elif key in ("conclusion_codes", "result_sections"):
            if not isinstance(value, dict) or not all(
                    isinstance(v, str) and v.strip() for v in value.values()):
                raise MappingError(f"{path}: [{key}] must be a table of strings")
            getattr(text, key).update({k: v.strip() for k, v in value.items()})
        else:
            raise MappingError(f"{path}: unknown key {key!r}; expected one of "
                               f"{', '.join(TEXT_KEYS + TEXT_TABLES)}")


def _validate_text(text: ReportText, concepts: dict[str, Concept]) -> None:
    """Concept ids named in report-text.toml must exist; sections must be known kinds."""
    named = [*text.diagnoses, *text.conclusion_codes, *text.conclusion_codes.values()]
    for cid in named:
        if cid not in concepts:
            raise MappingError(f"{TEXT_FILE}: unknown concept {cid!r}")
    kinds = set(text.sections)
    for key, kind in text.result_sections.items():
        _check_code(Path(TEXT_FILE), "result_sections", key)
        if kind not in kinds:
            raise MappingError(f"{TEXT_FILE}: [result_sections] {key}: unknown section {kind!r}")


def _check_code(path: Path, key: str, code: str) -> None:
    system, sep, value = code.partition("|")
    if not sep or not system or not value:
        raise MappingError(f"{path}: [{key}] code {code!r} must be written system|code")


def _add_ingredients(concept: Concept, path: Path, key: str, value: Any) -> None:
    """Ingredient tables of a medication class; their RxNorm codes become the class's codes."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise MappingError(f"{path}: [{key}] ingredients must be a list of tables")
    for number, item in enumerate(value):
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise MappingError(f"{path}: [{key}] ingredients[{number}] needs a name")
        codes = item.get("rxnorm", [])
        where = f"ingredients[{number}] ({name}) rxnorm"
        for code in _string_list(path, key, where, codes):
            full = f"{RXNORM}|{code}"
            concept.origin.setdefault(full, str(path))
            concept.codes.add(full)
        concept.ingredients.append((str(path), item))


def _add_concept_data(concept: Concept, path: Path, key: str, table: dict[str, Any]) -> None:
    unknown = set(table) - _ALLOWED_KEYS
    if unknown:
        raise MappingError(f"{path}: [{key}] unknown keys {', '.join(sorted(unknown))}")
    if "ingredients" in table:
        _add_ingredients(concept, path, key, table["ingredients"])
    for name in _LIST_KEYS:
        if name not in table:
            continue
        values = _string_list(path, key, name, table[name])
        if name in ("codes", "unverified", "prefixes"):
            for code in values:
                _check_code(path, key, code)
        if name in ("codes", "includes"):
            for value in values:
                concept.origin.setdefault(value, str(path))
        if name == "codes":
            concept.codes.update(values)
        elif name == "unverified":
            concept.unverified.update(values)
        elif name == "phrases":
            concept.phrases.extend(v.lower() for v in values)
        else:
            getattr(concept, name).extend(values)


def _load_folder(folder: Path, concepts: dict[str, Concept], text: ReportText, *,
                 site: bool, medication_files: list[tuple[str, dict[str, Any]]]) -> None:
    if not folder.is_dir():
        raise MappingError(f"{folder}: mapping folder does not exist")
    for path in sorted(folder.glob("*.toml")):
        data = _read_toml(path)
        if path.name == TEXT_FILE:
            _merge_text(text, path, data)
            continue
        if path.name in (FORMS_FILE, PRODUCTS_FILE):
            medication_files.append((str(path), data))
            continue
        for key, table in data.items():
            if not isinstance(table, dict):
                raise MappingError(f"{path}: [{key}] must be a table")
            if key in concepts:
                if not site:
                    raise MappingError(
                        f"{path}: [{key}] is already defined in {concepts[key].file}"
                    )
            elif site:
                raise MappingError(f"{path}: [{key}] is not a known concept id")
            else:
                label = table.get("label")
                if not isinstance(label, str) or not label:
                    raise MappingError(f"{path}: [{key}] label is required")
                unit = table.get("unit")
                if unit is not None and not isinstance(unit, str):
                    raise MappingError(f"{path}: [{key}] unit must be a string")
                concepts[key] = Concept(id=key, label=label, unit=unit, file=str(path))
            _add_concept_data(concepts[key], path, key, table)


def _validate(concepts: dict[str, Concept]) -> None:
    owner: dict[str, Concept] = {}
    for concept in concepts.values():
        for code in sorted(concept.codes):
            other = owner.get(code)
            if other is not None and other.id != concept.id:
                raise MappingError(
                    f"{concept.origin.get(code, concept.file)}: [{concept.id}] code {code} is "
                    f"also mapped to [{other.id}] in {other.origin.get(code, other.file)}; a code "
                    "may belong to one concept only"
                )
            owner[code] = concept
        for member in concept.includes:
            if member not in concepts:
                raise MappingError(f"{concept.origin.get(member, concept.file)}: "
                                   f"[{concept.id}] includes unknown concept {member!r}")
        stray = concept.unverified - concept.codes
        if stray:
            raise MappingError(f"{concept.file}: [{concept.id}] unverified lists codes not in "
                               f"codes: {', '.join(sorted(stray))}")


def load_mappings(base: Path, extra: Sequence[Path] = ()) -> MappingTable:
    """Load the project's mappings and merge site folders over them (codes and phrases added).

    :raises MappingError: naming the file and key that is wrong.
    """
    concepts: dict[str, Concept] = {}
    text = ReportText()
    medication_files: list[tuple[str, dict[str, Any]]] = []
    _load_folder(base, concepts, text, site=False, medication_files=medication_files)
    for folder in extra:
        _load_folder(folder, concepts, text, site=True, medication_files=medication_files)
    _validate(concepts)
    _validate_text(text, concepts)
    return MappingTable(concepts, text, medication_files)

"""Medication recognition (clinical-rules.md §2 "Medications"): which drug classes an order or a
MedicationRequest belongs to, however the EHR codes it, and whether the drug is used systemically.

One classifier serves the record (recent-antibiotics, the NSAID gates' active medications) and the
draft orders of the order hooks. Everything it knows is data in ``mappings/``:

- ``medications.toml``: per class, its codes (ATC prefixes, project codes, a few clinical drugs) and
  its **ingredients** (RxNorm ingredient codes, names, synonyms, brand names; non-absorbed oral
  agents);
- ``medication-forms.toml``: route groups (oral, intravenous, ophthalmic, topical, ...) with their
  route codes and words, and whether each is systemic;
- a site ``rxnorm-products.toml`` (``cds-service rxnorm-import``): RxNorm clinical and branded
  drugs, components, dose-form groups and packs → their ingredient codes and dose form.

A drug is recognised by any of: a code (ingredient, product in the site file, class code), its
name in ``coding.display``, ``CodeableConcept.text`` or the order text, read the way RxNorm builds
names ("<ingredient> <strength> <dose form> [<brand>]", combinations joined by " / "), a brand
name, and through a Medication's ``code``, ``ingredient[]`` and ``form``. Combination products
count for each ingredient. The route decides systemic use: ``dosageInstruction.route`` first
(an IV vial given by mouth is oral), else the dose form (of the name, the Medication, the site
file), else the order text; with none the drug is taken as systemic (the safe side for the gates).

A drug is *identified* when a class ingredient was recognised or the order names some drug;
an order with an unknown code and no name is not, and it is never counted as safe in a gate.
Pure: no I/O; the index is built once per mapping table (at start-up).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import MappingError
from ..fhir.resources import as_list, codings, resolve_reference
from ..mappings import FORMS_FILE, PRODUCTS_FILE, RXNORM, MappingTable

_DOT_IN_WORD = re.compile(r"(?<=[a-z])\.(?=[a-z])")
_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
_BRACKET = re.compile(r"\[([^\]]*)\]")
# Words that can follow a brand name without making it another brand ("Cipro 500 mg", "Keflex
# Pill", "Bactrim DS"); route and dose-form words are added from medication-forms.toml.
_BRAND_FOLLOWERS = frozenset({"hcl", "xr", "er", "sr", "dr", "ds", "xl", "cr", "la", "es"})
# Words that do not name a drug (an order text made only of these identifies nothing).
_NOT_A_DRUG = frozenset({
    "mg", "mcg", "ml", "unt", "meq", "gm", "hr", "hrs", "hour", "hours", "every", "daily", "twice",
    "once", "times", "day", "days", "week", "weeks", "dose", "doses", "medication", "medicine",
    "drug", "unknown", "other", "see", "order", "orders", "as", "directed", "per", "protocol",
    "and", "with", "the", "for", "take", "give", "then", "extended", "release", "delayed", "bid",
    "tid", "qid", "prn", "qhs", "stat", "now", "morning", "night", "bedtime", "units", "unit",
    "loading", "maintenance", "free", "text", "entry", "not", "listed", "misc", "miscellaneous",
})


def tokens(text: str) -> tuple[str, ...]:
    """Lower-case word tokens: "Ery-Tab 250 MG" -> ("ery", "tab", "250", "mg"); "p.o." -> "po"."""
    lowered = _DOT_IN_WORD.sub("", text.lower()).replace("'", "").replace("\u2019", "")
    return tuple(_TOKEN.findall(lowered))


@dataclass(frozen=True)
class Ingredient:
    """One class ingredient (mappings/medications.toml)."""

    name: str
    concept: str
    oral_absorbed: bool = True  # False: an oral form is not systemic (oral vancomycin)
    systemic: bool = True  # False: never systemic (fidaxomicin, rifaximin, neomycin)


@dataclass(frozen=True)
class RouteGroup:
    name: str
    systemic: bool
    systemic_for: frozenset[str] = frozenset()
    local_for: frozenset[str] = frozenset()

    def is_systemic_for(self, concept: str, members_of: Mapping[str, frozenset[str]]) -> bool:
        classes = members_of.get(concept, frozenset({concept}))
        if self.systemic:
            return not (classes & self.local_for)
        return bool(classes & self.systemic_for)


@dataclass(frozen=True)
class Product:
    """A site RxNorm product: its ingredient codes and dose form (rxnorm-import)."""

    ingredients: tuple[str, ...]
    form: str | None = None


@dataclass(frozen=True)
class Classification:
    """What a medication is, as the rules need it."""

    concepts: frozenset[str]  # classes of systemic use (what every rule means by the class)
    ingredients: tuple[str, ...] = ()  # recognised class ingredients, by name
    local: frozenset[str] = frozenset()  # classes recognised but not used systemically here
    route: str | None = None  # route group (oral, intravenous, ophthalmic, ...) when known
    identified: bool = False  # a class ingredient was recognised or the order names a drug
    name: str | None = None  # how the medication reads to people


@dataclass(frozen=True)
class RequestDrug:
    """What a medication order says its drug is: ``medicationCodeableConcept`` (R4, STU3, DSTU2)
    or R5 ``medication.concept``; the Medication that ``medicationReference`` (R5
    ``medication.reference``) points at, when it can be found (contained, prefetched, bundled);
    the reference's ``display``; and the routes of its dosage instructions."""

    concept: Any
    medication: Mapping[str, Any] | None
    display: str | None
    routes: tuple[Any, ...]

    def codes(self) -> tuple[str, ...]:
        """The drug's codes as given (the order's, then its Medication's), for people to look up
        when the drug could not be identified."""
        concepts = [self.concept, self.medication.get("code") if self.medication else None]
        found = [c["code"].strip() for concept in concepts for c in codings(concept)
                 if isinstance(c.get("code"), str) and c["code"].strip()]
        return tuple(dict.fromkeys(found))


def request_drug(request: Mapping[str, Any],
                 known: Mapping[str, Mapping[str, Any]]) -> RequestDrug:
    """The drug of a MedicationRequest / MedicationOrder (``known``: Medications by ``Type/id``
    and full URL). The one reading of an order's drug, for the record and the draft orders."""
    concept = request.get("medicationCodeableConcept")
    reference = request.get("medicationReference")
    r5 = request.get("medication")
    if isinstance(r5, dict):  # R5 CodeableReference
        concept = concept or r5.get("concept")
        reference = reference or r5.get("reference")
    medication = resolve_reference(request, reference, known, "Medication")
    display = reference.get("display") if isinstance(reference, dict) else None
    routes = tuple(d.get("route") for d in as_list(request.get("dosageInstruction"))
                   if isinstance(d, dict))
    return RequestDrug(concept, medication, display if isinstance(display, str) else None, routes)


@dataclass
class _Scan:
    ingredients: set[Ingredient] = field(default_factory=set)
    concepts: set[str] = field(default_factory=set)
    decisive: set[str] = field(default_factory=set)  # route groups named decisively
    weak: set[str] = field(default_factory=set)  # route groups named only by a dose form word
    names_drug: bool = False


class MedicationClassifier:
    """The medication index of one mapping table; ``classify`` is the one entry point."""

    def __init__(self, mappings: MappingTable) -> None:
        self.mappings = mappings
        self._by_code: dict[str, Ingredient] = {}
        self._phrases: dict[tuple[str, ...], Ingredient] = {}
        self._brands: dict[tuple[str, ...], set[Ingredient]] = {}
        self._single: dict[str, Ingredient] = {}  # concept -> its only ingredient
        self._members_of: dict[str, frozenset[str]] = {}  # concept -> classes containing it
        self._groups: dict[str, RouteGroup] = {}
        self._route_codes: dict[str, str] = {}
        self._route_words: dict[tuple[str, ...], tuple[str, bool]] = {}  # -> (group, decisive)
        self.products: dict[str, Product] = {}
        self._site_ingredient_names: dict[str, str] = {}  # rxcui -> ingredient name (site file)
        self._memo: dict[str, _Scan] = {}
        self._load_ingredients()
        self._load_files()
        self._max_phrase = max((len(p) for p in self._phrases), default=1)
        self._max_brand = max((len(p) for p in self._brands), default=1)
        self._max_route = max((len(p) for p in self._route_words), default=1)
        self._followers = _BRAND_FOLLOWERS | {w[0] for w in self._route_words if len(w) == 1}

    # ----------------------------------------------------------------- loading
    def _load_ingredients(self) -> None:
        concepts = self.mappings.concepts
        for cid in concepts:
            self._members_of[cid] = frozenset(c for c in concepts
                                              if cid in self.mappings.members(c))
        for concept in concepts.values():
            for path, table in concept.ingredients:
                ingredient = _ingredient(concept.id, path, table)
                for code in table.get("rxnorm", ()):
                    self._by_code[f"{RXNORM}|{code.strip()}"] = ingredient
                names = [ingredient.name, *_strings(path, concept.id, table, "synonyms")]
                for name in names:
                    key = tokens(name)
                    other = self._phrases.get(key)
                    if other is not None and other != ingredient:
                        raise MappingError(f"{path}: [{concept.id}] ingredient name {name!r} is "
                                           f"also the name of {other.name!r} ({other.concept})")
                    self._phrases[key] = ingredient
                for brand in _strings(path, concept.id, table, "brands"):
                    self._brands.setdefault(tokens(brand), set()).add(ingredient)
            if len(concept.ingredients) == 1:
                self._single[concept.id] = _ingredient(concept.id, *concept.ingredients[0])

    def _load_files(self) -> None:
        for path, data in self.mappings.medication_files:
            if path.endswith(FORMS_FILE):
                self._load_forms(path, data)
        if not self._groups:
            raise MappingError(f"{self.mappings_dir_hint()}: {FORMS_FILE} is missing")
        for path, data in self.mappings.medication_files:
            if path.endswith(PRODUCTS_FILE):
                self._load_products(path, data)

    def mappings_dir_hint(self) -> str:
        return next((c.file for c in self.mappings.concepts.values()), "mappings")

    def _load_forms(self, path: str, data: Mapping[str, Any]) -> None:
        allowed = {"systemic", "systemic_for", "local_for", "codes", "words", "form_words"}
        for name, table in data.items():
            if not isinstance(table, dict):
                raise MappingError(f"{path}: [{name}] must be a table")
            unknown = set(table) - allowed
            if unknown:
                raise MappingError(f"{path}: [{name}] unknown keys {', '.join(sorted(unknown))}")
            old = self._groups.get(name)
            systemic = table.get("systemic", old.systemic if old else None)
            if not isinstance(systemic, bool):
                raise MappingError(f"{path}: [{name}] systemic must be true or false")
            for_keys = {}
            for key in ("systemic_for", "local_for"):
                values = _strings(path, name, table, key)
                unknown_ids = [v for v in values if v not in self.mappings.concepts]
                if unknown_ids:
                    raise MappingError(f"{path}: [{name}] {key} names unknown concept "
                                       f"{unknown_ids[0]!r}")
                for_keys[key] = frozenset(values) | (getattr(old, key) if old else frozenset())
            self._groups[name] = RouteGroup(name, systemic, **for_keys)
            for code in _strings(path, name, table, "codes"):
                if "|" not in code:
                    raise MappingError(f"{path}: [{name}] code {code!r} must be written "
                                       "system|code")
                self._route_codes[code] = name
            for key, decisive in (("words", True), ("form_words", False)):
                for word in _strings(path, name, table, key):
                    self._route_words[tokens(word)] = (name, decisive)

    def _load_products(self, path: str, data: Mapping[str, Any]) -> None:
        products = data.get("products", {})
        names = data.get("ingredients", {})
        if not isinstance(products, dict) or not isinstance(names, dict):
            raise MappingError(f"{path}: [products] and [ingredients] must be tables")
        for rxcui, name in names.items():
            if not isinstance(name, str):
                raise MappingError(f"{path}: [ingredients] {rxcui} must be a name")
            self._site_ingredient_names[str(rxcui)] = name
        for rxcui, entry in products.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("in"), list) or not all(
                    isinstance(i, str) for i in entry["in"]):
                raise MappingError(f"{path}: [products] {rxcui} needs in = [ingredient codes]")
            form = entry.get("form")
            self.products[str(rxcui)] = Product(tuple(entry["in"]),
                                                form if isinstance(form, str) else None)

    # ----------------------------------------------------------------- classification
    def classify(self, concept: Any = None, *, medication: Mapping[str, Any] | None = None,
                 route: Any = None, text: Iterable[str] = ()) -> Classification:
        """Classify a medication: its CodeableConcept, the Medication resource it references (if
        any), the route(s) of its dosage instructions and any free order text."""
        scan = _Scan()
        names: list[str] = []
        codeables = [concept]
        if isinstance(medication, Mapping):
            codeables.append(medication.get("code"))
            for item in as_list(medication.get("ingredient")):
                if isinstance(item, dict):
                    codeables.append(item.get("itemCodeableConcept"))
                    if isinstance(item.get("item"), dict):  # R5 CodeableReference
                        codeables.append(item["item"].get("concept"))
        for codeable in codeables:
            if not isinstance(codeable, dict):
                continue
            if isinstance(codeable.get("text"), str):
                names.append(codeable["text"])
            for coding in as_list(codeable.get("coding")):
                if not isinstance(coding, dict):
                    continue
                if isinstance(coding.get("display"), str):
                    names.append(coding["display"])
                code = coding.get("code")
                if isinstance(code, str):
                    system = coding.get("system")
                    self._code(f"{system if isinstance(system, str) else ''}|{code.strip()}",
                               scan)
        if isinstance(medication, Mapping):
            self._route_of(medication.get("form"), scan.decisive, scan.weak)
        names.extend(t for t in text if isinstance(t, str))
        for name in names:
            self._merge(scan, self._name(name))
        explicit: set[str] = set()
        for item in route if isinstance(route, list) else [route]:
            self._route_of(item, explicit, set())
        group = _pick(explicit) or _pick(scan.decisive) or _pick(scan.weak)
        return self._result(scan, group, names)

    def classify_drug(self, drug: RequestDrug) -> Classification:
        """Classify the drug of an order (:func:`request_drug`); a reference's display counts as
        the drug's name only when the Medication itself is not at hand."""
        return self.classify(drug.concept, medication=drug.medication, route=list(drug.routes),
                             text=[drug.display] if drug.display and drug.medication is None
                             else ())

    def _result(self, scan: _Scan, group: str | None, names: list[str]) -> Classification:
        route = self._groups.get(group) if group else None
        systemic: set[str] = set()
        local: set[str] = set()
        found = [(i.concept, i) for i in scan.ingredients]
        found += [(c, self._single.get(c)) for c in scan.concepts
                  if not any(i.concept == c for i in scan.ingredients)]
        for concept, ingredient in found:
            ok = route is None or route.is_systemic_for(concept, self._members_of)
            if ingredient is not None:
                ok = ok and ingredient.systemic and not (
                    group == "oral" and not ingredient.oral_absorbed)
            (systemic if ok else local).add(concept)
        identified = bool(found) or scan.names_drug
        return Classification(frozenset(systemic), tuple(sorted(i.name for i in scan.ingredients)),
                              frozenset(local - systemic), group, identified,
                              names[0] if names else None)

    def _code(self, key: str, scan: _Scan) -> None:
        ingredient = self._by_code.get(key)
        if ingredient is not None:
            scan.ingredients.add(ingredient)
            return
        system, _, code = key.partition("|")
        product = self.products.get(code) if system == RXNORM else None
        if product is not None:
            for rxcui in product.ingredients:
                self._code(f"{RXNORM}|{rxcui}", scan)
                name = self._site_ingredient_names.get(rxcui)
                if name:
                    self._merge(scan, self._name(name))
            if product.form:
                self._route_words_of(tokens(product.form), scan.decisive, scan.weak)
            return
        cid = self.mappings.concept_of_key(key)
        if cid is not None and cid in self._members_of and self._is_medication(cid):
            scan.concepts.add(cid)

    def _is_medication(self, cid: str) -> bool:
        return bool(self.mappings.concepts[cid].ingredients) or any(
            self.mappings.concepts[c].ingredients for c in self.mappings.members(cid))

    def _route_of(self, codeable: Any, decisive: set[str], weak: set[str]) -> None:
        """Route groups named by a route or dose-form CodeableConcept (codes, else its words)."""
        if not isinstance(codeable, dict):
            return
        before = len(decisive)
        for coding in as_list(codeable.get("coding")):
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                system = coding.get("system")
                key = f"{system if isinstance(system, str) else ''}|{coding['code'].strip()}"
                if key in self._route_codes:
                    decisive.add(self._route_codes[key])
        if len(decisive) > before:
            return
        words: list[str] = []
        if isinstance(codeable.get("text"), str):
            words.append(codeable["text"])
        for coding in as_list(codeable.get("coding")):
            if isinstance(coding, dict):
                words += [v for k in ("display", "code") if isinstance(v := coding.get(k), str)]
        for word in words:
            self._route_words_of(tokens(word), decisive, weak)

    def _route_words_of(self, toks: tuple[str, ...], decisive: set[str], weak: set[str]) -> None:
        for start in range(len(toks)):
            for size in range(min(self._max_route, len(toks) - start), 0, -1):
                hit = self._route_words.get(toks[start:start + size])
                if hit is not None:
                    (decisive if hit[1] else weak).add(hit[0])
                    break

    def _name(self, name: str) -> _Scan:
        """What one name says (memoised: names repeat across requests)."""
        cached = self._memo.get(name)
        if cached is not None:
            return cached
        scan = _Scan()
        brand_part = None
        base = name
        match = _BRACKET.search(name)
        if match:
            brand_part = tokens(match.group(1))
            base = name[:match.start()] + " " + name[match.end():]
        toks = tokens(base)
        if brand_part:
            scan.ingredients |= self._brands.get(brand_part, set())
        for size in range(min(self._max_brand, len(toks)), 0, -1):
            if toks[:size] in self._brands and (size == len(toks) or _follows(toks[size],
                                                                               self._followers)):
                scan.ingredients |= self._brands[toks[:size]]
                break
        start = 0
        while start < len(toks):
            for size in range(min(self._max_phrase, len(toks) - start), 0, -1):
                ingredient = self._phrases.get(toks[start:start + size])
                if ingredient is not None and toks[start + size:start + size + 1] != ("free",):
                    scan.ingredients.add(ingredient)
                    start += size - 1
                    break
            start += 1
        self._route_words_of(toks, scan.decisive, scan.weak)
        scan.names_drug = bool(scan.ingredients) or bool(brand_part) or any(
            t.isalpha() and len(t) >= 3 and t not in _NOT_A_DRUG and (t,) not in self._route_words
            for t in toks)
        if len(self._memo) < 50_000:
            self._memo[name] = scan
        return scan

    @staticmethod
    def _merge(into: _Scan, other: _Scan) -> None:
        into.ingredients |= other.ingredients
        into.concepts |= other.concepts
        into.decisive |= other.decisive
        into.weak |= other.weak
        into.names_drug = into.names_drug or other.names_drug


# Among route groups named with the same strength, a local one wins ("Oral Paste", "Ophthalmic
# ... Injection"): the rank of a group is its position here (local groups first).
_LOCAL_FIRST = ("ophthalmic", "otic", "vaginal", "inhaled", "topical", "nasal", "rectal",
                "transdermal", "intravenous", "intramuscular", "subcutaneous", "injection",
                "oral")


def _pick(groups: set[str]) -> str | None:
    if not groups:
        return None
    return min(groups, key=lambda g: _LOCAL_FIRST.index(g) if g in _LOCAL_FIRST else -1)


def _follows(token: str, followers: frozenset[str]) -> bool:
    return token[0].isdigit() or token in followers


def _strings(path: str, key: str, table: Mapping[str, Any], name: str) -> list[str]:
    value = table.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise MappingError(f"{path}: [{key}] {name} must be a list of non-empty strings")
    return value


def _ingredient(concept: str, path: str, table: Mapping[str, Any]) -> Ingredient:
    allowed = {"name", "rxnorm", "synonyms", "brands", "oral", "systemic"}
    unknown = set(table) - allowed
    if unknown:
        raise MappingError(f"{path}: [{concept}] ingredient {table.get('name')!r} has unknown "
                           f"keys {', '.join(sorted(unknown))}")
    oral = table.get("oral")
    if oral not in (None, "not-absorbed"):
        raise MappingError(f"{path}: [{concept}] ingredient {table['name']!r}: oral must be "
                           "\"not-absorbed\"")
    systemic = table.get("systemic", True)
    if not isinstance(systemic, bool):
        raise MappingError(f"{path}: [{concept}] ingredient {table['name']!r}: systemic must be "
                           "true or false")
    return Ingredient(str(table["name"]).strip().lower(), concept, oral is None, systemic)


def classifier_for(mappings: MappingTable) -> MedicationClassifier:
    """The classifier of a mapping table, built once and kept on it (build it at start-up, so
    that broken medication data stops start-up)."""
    classifier = getattr(mappings, "_medication_classifier", None)
    if classifier is None:
        classifier = MedicationClassifier(mappings)
        mappings._medication_classifier = classifier  # type: ignore[attr-defined]
    return classifier

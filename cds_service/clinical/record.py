"""A patient's record read for the rulebook (clinical-rules.md §2): usable resources by concept,
the index amputation and its side, and findings with their source references.

Resources are classified by their codes first (a dict look-up per coding); only the resources a
rule actually uses are validated with ``fhir.resources`` R4B models (see ``validation``), and a
resource that fails is skipped with a note, never a crash.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from operator import itemgetter
from typing import Any

from .. import units
from ..fhir.resources import (
    code_text,
    coding_keys,
    codings,
    is_about_another_patient,
    parse_datetime,
    resource_date,
)
from ..mappings import MappingTable
from .finding import Finding
from .finding import ref as _ref
from .imaging import IMAGING_KINDS, ImagingMixin, ImagingReport
from .laterality import SNOMED, side_of
from .medications import classifier_for, request_drug
from .reportformats import Fetch
from .validation import Validator

__all__ = ["IMAGING_KINDS", "Amputation", "Finding", "ImagingReport", "Record",
           "UnidentifiedMedication", "side_of"]

USABLE_OBSERVATION = {"final", "amended", "corrected", "preliminary"}
USABLE_REPORT = {"final", "amended", "corrected", "preliminary"}
ACTIVE_CLINICAL = {"active", "recurrence", "relapse"}
EXCLUDED_VERIFICATION = {"refuted", "entered-in-error"}
POSITIVE_CODES = {"10828004", "52101004"}  # SNOMED Positive, Present (clinical-rules.md §2)
NEGATIVE_CODES = {"260385009", "2667000"}  # SNOMED Negative, Absent
POSITIVE_FLAGS = {"POS", "A", "H", "HH"}
NEGATIVE_FLAGS = {"NEG", "N"}
CULTURES = {"bone-culture", "blood-culture"}
DAY = timedelta(days=1)


@dataclass(frozen=True)
class UnidentifiedMedication:
    """An active MedicationRequest whose drug could not be identified: its code and name are not
    recognised, or it names its drug only through a Medication that is not at hand
    (clinical-rules.md §2 "Medications": never assumed safe in a gate)."""

    ref: str
    text: str | None  # what the order says, when it says anything (it names no known drug)
    codes: tuple[str, ...]  # the drug's codes as given, for people to look up


@dataclass(frozen=True)
class Amputation:
    ref: str
    label: str
    when: datetime | None
    side: str | None


def _status(resource: dict[str, Any]) -> str | None:
    """A resource's ``status`` when it is a string (anything else is no status)."""
    status = resource.get("status")
    return status if isinstance(status, str) else None


class Record(ImagingMixin):
    """The usable part of one patient's record, indexed by concept."""

    def __init__(self, resources: Iterable[dict[str, Any]], mappings: MappingTable,
                 now: datetime, patient_id: str | None = None,
                 fetch_attachment: Fetch | None = None) -> None:
        self.mappings = mappings
        self.fetch_attachment = fetch_attachment  # report attachments by url (same server only)
        self.now = now
        self.patient_id = patient_id
        self._validator = Validator()
        self.notes: list[str] = self._validator.notes
        self._check = self._validator.ok
        self._observations: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._conditions: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._procedures: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._medications: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._reports: list[dict[str, Any]] = []
        self._text_observations: dict[str, dict[str, Any]] = {}  # id -> unmapped, valueString
        self._studies: dict[str, dict[str, Any]] = {}
        self._medication_resources: dict[str, dict[str, Any]] = {}
        self._unidentified: list[UnidentifiedMedication] = []
        self._drug_names: dict[int, str] = {}  # id(MedicationRequest) -> its drug's name
        self._dates: dict[int, datetime | None] = {}  # id(resource) -> resource_date
        self._medication_classifier = classifier_for(mappings)
        self._classify(resources)
        self.amputation = self._find_amputation()
        self.imaging = self._read_imaging()

    # ----------------------------------------------------------------- classification
    def _classify(self, resources: Iterable[dict[str, Any]]) -> None:
        pending_meds = []
        foreign = 0
        patient_id = self.patient_id
        own_reference = f"Patient/{patient_id}"
        concepts_of = self.mappings.concepts_of
        observations = self._observations

        def mine(resource: dict[str, Any]) -> bool:
            # checked only for resources that are kept: a record may hold thousands of others
            nonlocal foreign
            subject = resource.get("subject")
            if patient_id is None or (isinstance(subject, dict)
                                      and subject.get("reference") == own_reference):
                return True  # the common case, without parsing the reference
            if is_about_another_patient(resource, patient_id):
                foreign += 1
                return False
            return True

        for resource in resources:
            kind = resource.get("resourceType")
            if kind == "Observation":
                status = resource.get("status")
                if isinstance(status, str) and status in USABLE_OBSERVATION:
                    concepts = concepts_of(resource.get("code"))
                    subject = resource.get("subject")
                    if concepts and ((type(subject) is dict  # mine(), its common case inline
                                      and subject.get("reference") == own_reference)
                                     or mine(resource)):
                        for cid in concepts:
                            observations[cid].append(resource)
                    elif not concepts and isinstance(resource.get("valueString"), str) \
                            and mine(resource):
                        # a report's result may carry the report text (§2 "Imaging findings")
                        self._text_observations[str(resource.get("id"))] = resource
                continue
            if not mine(resource):
                continue
            if kind == "Condition":
                verification = set(c.split("|", 1)[1] for c in coding_keys(
                    resource.get("verificationStatus")))
                if not verification & EXCLUDED_VERIFICATION:
                    for cid in self.mappings.concepts_of(resource.get("code")):
                        self._conditions[cid].append(resource)
            elif kind == "Procedure":
                if resource.get("status") == "completed":
                    for cid in self.mappings.concepts_of(resource.get("code")):
                        self._procedures[cid].append(resource)
            elif kind == "DiagnosticReport":
                if _status(resource) in USABLE_REPORT:
                    self._reports.append(resource)
            elif kind == "ImagingStudy":
                if resource.get("status") not in ("entered-in-error", "cancelled"):
                    self._studies[str(resource.get("id"))] = resource
            elif kind == "MedicationRequest":
                if resource.get("status") in ("active", "completed"):
                    pending_meds.append(resource)
            elif kind == "Medication":
                self._medication_resources[f"Medication/{resource.get('id')}"] = resource
        for request in pending_meds:
            drug = request_drug(request, self._medication_resources)
            found = self._medication_classifier.classify_drug(drug)
            for cid in found.concepts:
                self._medications[cid].append(request)
            if found.name:
                self._drug_names[id(request)] = found.name
            if not found.identified and request.get("status") == "active":
                self._unidentified.append(UnidentifiedMedication(_ref(request), found.name,
                                                                 drug.codes()))
        if foreign:
            self.notes.append(f"{foreign} resource(s) about another patient were ignored.")

    # ----------------------------------------------------------------- time helpers
    def _date(self, resource: dict[str, Any]) -> datetime | None:
        """``resource_date``, read once per resource (several rules ask for the same labs)."""
        key = id(resource)  # the record holds every resource it classified: ids stay unique
        if key not in self._dates:
            self._dates[key] = resource_date(resource)
        return self._dates[key]

    def days_ago(self, when: datetime | None) -> float | None:
        return None if when is None else (self.now - when) / DAY

    def within(self, when: datetime | None, days: float) -> bool:
        """True when ``when`` lies in the last ``days`` days (a day of clock skew tolerated)."""
        return when is not None and -1 <= (self.now - when) / DAY <= days

    def after_amputation(self, when: datetime | None, min_days: float = 0) -> bool:
        """True when ``when`` is at least ``min_days`` after the amputation (unknown date: True)."""
        amputation = self.amputation
        if amputation is None or amputation.when is None:
            return True
        if when is None:
            return False
        return (when - amputation.when) / DAY >= min_days

    @property
    def days_since_amputation(self) -> int | None:
        if self.amputation is None or self.amputation.when is None:
            return None
        return int((self.now - self.amputation.when) // timedelta(days=1))

    @property
    def side(self) -> str | None:
        return self.amputation.side if self.amputation else None

    def same_side(self, side: str | None) -> bool:
        """Unknown sides never exclude; a known opposite side does (clinical-rules.md §2)."""
        return side is None or self.side is None or side == self.side

    # ----------------------------------------------------------------- amputation
    def _find_amputation(self) -> Amputation | None:
        candidates = []
        for procedure in self._procedures.get("partial-foot-amputation", ()):
            when = resource_date(procedure)
            candidates.append((when or datetime.min.replace(tzinfo=self.now.tzinfo), procedure,
                               when))
        if candidates:
            candidates.sort(key=lambda c: c[0], reverse=True)
            for _, procedure, when in candidates:
                if self._check(procedure):
                    return Amputation(_ref(procedure), code_text(procedure.get("code"))
                                      or "partial-foot amputation", when, side_of(procedure))
        for condition in self._conditions.get("partial-foot-amputation-status", ()):
            if self._check(condition):
                return Amputation(_ref(condition), code_text(condition.get("code"))
                                  or "acquired absence of foot", resource_date(condition),
                                  side_of(condition))
        return None

    # ----------------------------------------------------------------- observations
    def _usable(self, resource: dict[str, Any]) -> bool:
        # an unknown amputation side excludes no side: then the resource's own is not read
        return (self.side is None or self.same_side(side_of(resource))) and self._check(resource)

    def _newest_first(self, concept: str) -> Iterator[tuple[datetime | None, dict[str, Any]]]:
        """The concept's Observations with their dates, newest first (undated last); dated once
        per record."""
        key = ("series", concept)
        answers = self._answers
        series = answers.get(key)
        if series is None:
            series = answers[key] = self._dated_series(concept)
        dates, observations = series
        return zip(dates, observations, strict=True)

    def _dated_series(self, concept: str) -> tuple[list[datetime | None], list[dict[str, Any]]]:
        """(dates, Observations) of a concept, sorted by date, newest first (undated last)."""
        observations = self._observations.get(concept)
        if not observations:
            return [], []
        instants = _effective_instants(observations)
        if instants is not None:  # every one dated
            if instants == sorted(instants, reverse=True):
                return instants, observations  # newest first already, as _sort=-date asks
            ordered = sorted(zip(instants, observations, strict=True), key=itemgetter(0),
                             reverse=True)
        else:
            oldest = datetime.min.replace(tzinfo=self.now.tzinfo)
            ordered = sorted(((self._date(obs), obs) for obs in observations),
                             key=lambda item: item[0] or oldest, reverse=True)
        return [when for when, _ in ordered], [obs for _, obs in ordered]

    @cached_property
    def _answers(self) -> dict[tuple[Any, ...], Any]:
        """Query results of this record by query (concept, window, scope), so the facts, rules
        and cards that ask the same question share one answer (never keyed by content)."""
        return {}

    def _quantity(self, concept: str, when: datetime | None,
                  obs: dict[str, Any]) -> Finding | None:
        """One Observation's value converted to the concept's unit, or None (noted when the
        unit cannot be converted); read once per Observation and concept."""
        key = ("quantity", concept, id(obs))  # the record holds the Observation: ids stay unique
        answers = self._answers
        if key not in answers:
            answers[key] = self._read_quantity(concept, when, obs)
        return answers[key]  # type: ignore[no-any-return]

    def _read_quantity(self, concept: str, when: datetime | None,
                       obs: dict[str, Any]) -> Finding | None:
        quantity = obs.get("valueQuantity")
        if not isinstance(quantity, dict):
            return None
        raw = quantity.get("value")
        if not isinstance(raw, (int, float)) or isinstance(raw, bool) or not self._usable(obs):
            return None
        target = self.mappings.concepts[concept].unit or ""
        unit = quantity.get("code") or quantity.get("unit")
        value = self._converted(concept, obs, float(raw), unit, target, "", "value")
        if value is None:
            return None
        return Finding(concept, self.mappings.label(concept), _ref(obs), when, value=value,
                       unit=target, high=self._reference_high(concept, obs, unit, target))

    def _reference_high(self, concept: str, obs: dict[str, Any], value_unit: Any,
                        target: str) -> float | None:
        """The reference range's upper limit converted to the concept's unit, as the value is
        (the ALP rule compares the two, clinical-rules.md §3 "ALP high"); the limit's own unit
        when it gives one, else the value's. None when there is none, or when its unit cannot be
        converted (noted: the rule then uses its default limit)."""
        ranges = obs.get("referenceRange")
        for item in ranges if isinstance(ranges, list) else ():
            high = item.get("high") if isinstance(item, dict) else None
            if not isinstance(high, dict):
                continue
            raw = high.get("value")
            if not isinstance(raw, (int, float)) or isinstance(raw, bool):
                continue
            unit = high.get("code") or high.get("unit") or value_unit
            return self._converted(concept, obs, float(raw), unit, target, "reference range ",
                                   "range")
        return None

    def _converted(self, concept: str, obs: dict[str, Any], raw: float, unit: Any, target: str,
                   what: str, unused: str) -> float | None:
        """``raw`` in ``unit`` converted to ``target``, or None with a note saying the ``what``
        unit cannot be converted and the ``unused`` part of the Observation is not used."""
        try:
            return units.convert(raw, unit, target, concept)
        except units.UnitError:
            note = (f"{_ref(obs)} ({self.mappings.label(concept)}): {what}unit "
                    f"{unit or 'missing'} cannot be converted to {target}; {unused} not used")
            if note not in self.notes:
                self.notes.append(note)
            return None

    def _in_window(self, concept: str, days: float | None):  # type: ignore[no-untyped-def]
        """Yield (date, Observation) of a concept within ``days``, newest first."""
        for when, obs in self._newest_first(concept):
            if days is None:
                yield when, obs
                continue
            ago = self.days_ago(when)
            if ago is None or ago > days:
                return  # sorted newest first: everything after is older or undated
            if ago >= -1:
                yield when, obs

    def quantities(self, concept: str, days: float | None = None) -> list[Finding]:
        """Converted quantity findings of a concept, newest first, optionally within ``days``."""
        return [f for when, obs in self._in_window(concept, days)
                if (f := self._quantity(concept, when, obs)) is not None]

    def latest(self, concept: str, days: float) -> Finding | None:
        """The most recent usable value of a concept within ``days`` (clinical-rules.md §2)."""
        now = self.now
        for when, obs in self._newest_first(concept):  # as _in_window walks, unrolled here
            if when is None:
                return None
            ago = (now - when) / DAY
            if ago > days:
                return None  # everything after is older or undated
            if ago >= -1 and (found := self._quantity(concept, when, obs)) is not None:
                return found
        return None

    def coded(self, concept: str, days: float | None = None) -> list[Finding]:
        """Coded results (positive / negative) of a concept, newest first."""
        key = ("coded", concept, days)
        answers = self._answers
        if key not in answers:
            answers[key] = self._read_coded(concept, days)
        return list(answers[key])

    def _read_coded(self, concept: str, days: float | None) -> list[Finding]:
        out = []
        for obs in self._observations.get(concept, ()):
            when = self._date(obs)
            if days is not None and not self.within(when, days):
                continue
            polarity = self._polarity(concept, obs)
            if polarity is None or not self._usable(obs):
                continue
            out.append(Finding(concept, self.mappings.label(concept), _ref(obs), when,
                               polarity=polarity, text=_coded_text(obs, polarity)))
        out.sort(key=lambda f: f.when or datetime.min.replace(tzinfo=self.now.tzinfo),
                 reverse=True)
        return out

    def _polarity(self, concept: str, obs: dict[str, Any]) -> str | None:
        value = obs.get("valueBoolean")
        if isinstance(value, bool):
            return "positive" if value else "negative"
        concept_value = obs.get("valueCodeableConcept")
        if concept_value is not None:
            codes = {c["code"] for c in codings(concept_value) if c.get("system") == SNOMED}
            if codes & NEGATIVE_CODES:
                return "negative"
            if codes & POSITIVE_CODES:
                return "positive"
            if concept in CULTURES and codes:
                return "positive"  # an organism code (clinical-rules.md §2)
            if concept == "bone-histopathology" and "osteomyelitis" in self.mappings.concepts_of(
                    concept_value):
                return "positive"  # histology "consistent with osteomyelitis"
        text = obs.get("valueString")
        if isinstance(text, str):
            lowered = text.strip().lower()
            if lowered.startswith("pos"):
                return "positive"
            if lowered.startswith(("neg", "no growth")):
                return "negative"
        for key in coding_keys(obs.get("interpretation")):
            flag = key.split("|", 1)[1].upper()
            if flag in POSITIVE_FLAGS:
                return "positive"
            if flag in NEGATIVE_FLAGS:
                return "negative"
        if concept in ("ulcer-area",) and isinstance(obs.get("valueQuantity"), dict):
            return "positive"
        return None

    # ----------------------------------------------------------------- conditions, procedures
    def conditions(self, concept: str, *, scope: str = "active") -> list[Finding]:
        """Conditions of a concept (class members included).

        ``scope``: ``active`` (clinicalStatus active/recurrence/relapse or missing) or
        ``on-record`` (any clinical status; for safety gates, clinical-rules.md §2).
        """
        key = ("conditions", concept, scope)
        answers = self._answers
        if key not in answers:
            answers[key] = self._read_conditions(concept, scope)
        return list(answers[key])

    def _read_conditions(self, concept: str, scope: str) -> list[Finding]:
        out = []
        for member in self.mappings.members(concept):
            for condition in self._conditions.get(member, ()):
                status = [k.split("|", 1)[1] for k in coding_keys(condition.get("clinicalStatus"))]
                if scope == "active" and status and not set(status) & ACTIVE_CLINICAL:
                    continue
                if not self._usable(condition):
                    continue
                verification = [k.split("|", 1)[1] for k in coding_keys(
                    condition.get("verificationStatus"))]
                out.append(Finding(member, self.mappings.label(member), _ref(condition),
                                   resource_date(condition), polarity="positive",
                                   text=(code_text(condition.get("code")) or "on record")
                                   + (f" ({verification[0]})" if verification else "")))
        return out

    def condition_is_recent_or_active(self, concept: str, days: float) -> list[Finding]:
        """Active conditions, or any with onset in the last ``days`` days (e.g. AKI)."""
        active = self.conditions(concept)
        recent = [f for f in self.conditions(concept, scope="on-record")
                  if self.within(f.when, days)]
        return active + [f for f in recent if f.ref not in {a.ref for a in active}]

    def verification_of(self, ref: str) -> str | None:
        for conditions in self._conditions.values():
            for condition in conditions:
                if _ref(condition) == ref:
                    keys = [k.split("|", 1)[1] for k in coding_keys(
                        condition.get("verificationStatus"))]
                    return keys[0] if keys else None
        return None

    def procedures(self, concept: str) -> list[Finding]:
        return [Finding(concept, self.mappings.label(concept), _ref(p), resource_date(p),
                        polarity="positive", text=code_text(p.get("code")) or "done")
                for p in self._procedures.get(concept, ()) if self._usable(p)]

    # ----------------------------------------------------------------- medications
    def medications(self, concept: str, *, active_only: bool = True,
                    authored_days: float | None = None,
                    keep_invalid: bool = False) -> list[Finding]:
        """MedicationRequests of a concept (class members included). ``keep_invalid``: also
        the ones that fail validation, for a safety gate, which uses only their drug and status
        and never reads an unread drug as absent (clinical-rules.md §2 "Medications")."""
        out = []
        seen = set()
        for member in self.mappings.members(concept):
            for request in self._medications.get(member, ()):
                ref = _ref(request)
                if ref in seen:
                    continue
                when = parse_datetime(request.get("authoredOn"))
                is_active = request.get("status") == "active"
                recent = authored_days is not None and self.within(when, authored_days)
                if (active_only and not is_active) or (not active_only and not (is_active
                                                                                or recent)):
                    continue
                if not keep_invalid and not self._check(request):
                    continue
                seen.add(ref)
                name = code_text(request.get("medicationCodeableConcept")) or \
                    self._drug_names.get(id(request)) or self.mappings.label(member)
                out.append(Finding(member, self.mappings.label(member), ref, when,
                                   polarity="positive", text=f"{name} ({request.get('status')})"))
        return out

    def unidentified_medications(self) -> list[UnidentifiedMedication]:
        """Active MedicationRequests whose drug could not be identified (classified once, with
        the drug classes, by :mod:`.medications`): a gate that depends on drug classes cannot be
        decided while one is on record. They are not validated: nothing of them is used but
        their reference, text and codes."""
        return list(self._unidentified)

    def medication_requests(self, concept: str) -> list[dict[str, Any]]:
        """The usable MedicationRequests of a concept (class members included), any status kept
        (active, completed): the timeline draws courses from their periods."""
        out: dict[str, dict[str, Any]] = {}
        for member in self.mappings.members(concept):
            for request in self._medications.get(member, ()):
                if _ref(request) not in out and self._check(request):
                    out[_ref(request)] = request
        return list(out.values())

    # ----------------------------------------------------------------- imaging
_EFFECTIVE = itemgetter("effectiveDateTime")


def _effective_instants(observations: Sequence[dict[str, Any]]) -> list[datetime] | None:
    """Each Observation's ``resource_date`` when every one has an ``effectiveDateTime`` of the
    form ``YYYY-MM-DDThh:mm:ssZ`` (what lab feeds send), else None (then date them one by one).

    The same dates as ``resource_date``: ``effectiveDateTime`` is an Observation's first date
    field, and for this shape (checked exactly as ``parse_datetime``'s direct path checks it:
    20 ASCII characters, ``-`` ``-`` ``T`` ``:`` ``:`` ``Z`` in their places) ``parse_datetime``
    is ``datetime.fromisoformat``; a value that does not parse leaves the series to the one-by-one
    path. Checked on the whole series in a few string operations, because a concept's series is
    dated in full to find its newest value and a call chain per Observation dominated the
    rules' time."""
    try:
        values = list(map(_EFFECTIVE, observations))  # KeyError: one has no effectiveDateTime
        text = "".join(values)  # TypeError: one is not a string
    except (KeyError, TypeError):
        return None
    count = len(values)
    dashes, colons = "-" * count, ":" * count
    if not (set(map(len, values)) == {20} and text.isascii()
            and text[19::20] == "Z" * count and text[10::20] == "T" * count
            and text[4::20] == dashes and text[7::20] == dashes
            and text[13::20] == colons and text[16::20] == colons):
        return None
    try:
        return list(map(datetime.fromisoformat, values))
    except ValueError:
        return None


def _coded_text(obs: dict[str, Any], polarity: str) -> str:
    concept = obs.get("valueCodeableConcept")
    text = code_text(concept) if concept is not None else None
    if text:
        return text
    if isinstance(obs.get("valueString"), str):
        return obs["valueString"][:60]
    return polarity

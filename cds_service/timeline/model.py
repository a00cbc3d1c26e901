"""What the evidence timeline shows, read from the same :class:`Evaluation` as the patient-view
card (issue 15): lab series with their rulebook thresholds, events (amputation, imaging with the
findings the report reader found, biopsy and culture results), antibiotic courses, and what was
ignored because it is about the other foot. No geometry and no HTML here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..clinical import facts as th
from ..clinical.sources import BUTALIA_2008, CRP_KINETICS, IWGDF_SEVERITY, ORZEL_1985, Source
from ..fhir.resources import as_list, code_text, parse_datetime, resource_date
from ..services import Evaluation

DAY = timedelta(days=1)
EARLY_DAYS = 14  # clinical-rules.md S-2: before day 14 ESR/CRP reflect the surgery
# How the report reader's polarity reads on the page (clinical-rules.md §2 "Imaging findings").
POLARITY_WORD = {"positive": "present", "uncertain": "possible", "negative": "negated"}


@dataclass(frozen=True)
class Threshold:
    value: float
    label: str
    source: Source


@dataclass(frozen=True)
class Point:
    when: datetime
    value: float
    ref: str
    shown: str  # "85 mm/h"


@dataclass
class Series:
    concept: str
    label: str
    unit: str
    threshold: Threshold
    points: list[Point]  # oldest first


@dataclass(frozen=True)
class FindingMark:
    label: str
    polarity: str  # positive | uncertain | negative
    sentence: str | None  # the report sentence it was read from; None for a coded finding

    @property
    def word(self) -> str:
        return POLARITY_WORD[self.polarity]


@dataclass
class Event:
    lane: str  # surgery | imaging | microbiology | ignored (about the other foot)
    when: datetime | None
    title: str
    ref: str
    result: str = ""  # "positive: Staphylococcus aureus", "done"
    polarity: str | None = None
    findings: list[FindingMark] = field(default_factory=list)
    side: str | None = None
    ignored: bool = False  # about the other foot: shown, never used
    anchor: str = ""  # its id in the page's event list (set by build)


@dataclass
class Course:
    label: str
    ref: str
    start: datetime | None
    end: datetime | None
    ongoing: bool
    end_known: bool


@dataclass
class Timeline:
    evaluation: Evaluation
    now: datetime
    origin: datetime | None  # the index amputation's date (day 0), None when unknown
    series: list[Series]
    events: list[Event]
    courses: list[Course]
    ignored: list[Event]

    def day(self, when: datetime) -> float:
        """Days since the index amputation (fractional), or since the record's time when the
        amputation date is unknown (then negative)."""
        return (when - (self.origin or self.now)) / DAY

    @property
    def days_now(self) -> int | None:
        return self.evaluation.record.days_since_amputation


LAB_SERIES = (  # concept, threshold (clinical-rules.md §3), source
    ("esr", th.ESR_HIGH, "ESR > 70 mm/h", BUTALIA_2008),
    ("crp", th.CRP_ELEVATED, "CRP > 10 mg/L", CRP_KINETICS),
    ("wbc", th.WBC_HIGH, "WBC > 12 ×10⁹/L", IWGDF_SEVERITY),
    ("alkaline-phosphatase", th.ALP_DEFAULT_HIGH, "ALP above reference high", ORZEL_1985),
)


def build(evaluation: Evaluation, resources: list[dict[str, Any]]) -> Timeline:
    record = evaluation.record
    origin = record.amputation.when if record.amputation else None
    series = [_series(evaluation, *spec) for spec in LAB_SERIES]
    events = _events(evaluation)
    ignored = _ignored(evaluation, resources)
    courses = _courses(evaluation)
    for number, event in enumerate(events + ignored, 1):
        event.anchor = f"ev-{number}"
    return Timeline(evaluation, record.now, origin, series, events, courses, ignored)


def _series(evaluation: Evaluation, concept: str, limit: float, label: str,
            source: Source) -> Series:
    record = evaluation.record
    found = [f for f in record.quantities(concept) if f.when is not None and f.value is not None]
    found.reverse()
    unit = record.mappings.concepts[concept].unit or ""
    if concept == "alkaline-phosphatase":
        highs = [f.high for f in reversed(found) if f.high is not None]
        if highs:
            limit, label = highs[0], f"ALP above reference high ({highs[0]:g} U/L)"
        else:
            label = f"ALP above {limit:g} U/L (default reference high)"
    points = [Point(f.when, float(f.value), f.ref, f.shown_value()) for f in found
              if f.when is not None and f.value is not None]
    return Series(concept, record.mappings.label(concept), unit, Threshold(limit, label, source),
                  points)


def _imaging_event(evaluation: Evaluation, report: Any, ignored: bool) -> Event:
    mappings = evaluation.record.mappings
    marks = []
    rank = {"positive": 0, "uncertain": 1, "negative": 2}
    for concept, polarity in sorted(report.findings.items(), key=lambda i: (rank[i[1]], i[0])):
        # the statement the report reader decided the finding on (None: coded, not text)
        marks.append(FindingMark(mappings.label(concept), polarity, report.evidence.get(concept)))
    title = mappings.label(report.kind)
    result = "" if report.has_report else "study done, no report"
    return Event("ignored" if ignored else "imaging", report.when, title, report.ref, result,
                 None, marks, report.side, ignored)


def _events(evaluation: Evaluation) -> list[Event]:
    record = evaluation.record
    events = []
    amp = record.amputation
    if amp is not None:
        events.append(Event("surgery", amp.when, f"Index amputation: {amp.label}", amp.ref,
                            amp.side or "side unknown", side=amp.side))
    for report in record.imaging:
        events.append(_imaging_event(evaluation, report, ignored=False))
    for biopsy in record.procedures("bone-biopsy"):
        events.append(Event("surgery", biopsy.when, biopsy.label, biopsy.ref, "done"))
    for concept in ("bone-culture", "bone-histopathology", "blood-culture"):
        for result in record.coded(concept):
            value = result.shown_value()
            shown = result.polarity if value == result.polarity else f"{result.polarity}: {value}"
            events.append(Event("microbiology", result.when, result.label, result.ref,
                                shown or "", result.polarity))
    return _by_time(events)


def _by_time(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (e.when is None, e.when.timestamp() if e.when else 0))


def _ignored(evaluation: Evaluation, resources: list[dict[str, Any]]) -> list[Event]:
    """Imaging, conditions, procedures and observations about the other foot."""
    from ..clinical.laterality import side_of

    record = evaluation.record
    out = [_imaging_event(evaluation, r, ignored=True) for r in record.imaging_other_side]
    seen = {e.ref for e in out}
    for resource in resources:
        kind = resource.get("resourceType")
        if kind not in ("Condition", "Procedure", "Observation"):
            continue
        side = side_of(resource)
        if side is None or record.same_side(side):
            continue
        ref = f"{kind}/{resource.get('id', '?')}"
        concepts = record.mappings.concepts_of(resource.get("code"))
        if not concepts or ref in seen:
            continue
        seen.add(ref)
        label = code_text(resource.get("code")) or record.mappings.label(sorted(concepts)[0])
        out.append(Event("ignored", resource_date(resource), label, ref, f"{side} side",
                         side=side, ignored=True))
    return _by_time(out)


def _course_period(request: dict[str, Any], now: datetime) -> tuple[datetime | None,
                                                                    datetime | None, bool]:
    """(start, end, end_known) of a MedicationRequest: boundsPeriod, else authoredOn plus
    boundsDuration or the expected supply duration; an active order with no end runs to now."""
    start = end = None
    duration = None
    for dosage in as_list(request.get("dosageInstruction")):
        repeat = ((dosage or {}).get("timing") or {}).get("repeat") or {}
        period = repeat.get("boundsPeriod") or {}
        start = start or parse_datetime(period.get("start"))
        end = end or parse_datetime(period.get("end"))
        duration = duration or repeat.get("boundsDuration")
    duration = duration or (request.get("dispenseRequest") or {}).get("expectedSupplyDuration")
    start = start or parse_datetime(request.get("authoredOn"))
    if end is None and start is not None and isinstance(duration, dict):
        days = _duration_days(duration)
        if days is not None:
            end = start + days * DAY
    return start, end, end is not None


def _duration_days(duration: dict[str, Any]) -> float | None:
    value = duration.get("value")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    per_day = {"d": 1, "day": 1, "days": 1, "wk": 7, "week": 7, "weeks": 7, "h": 1 / 24,
               "mo": 30}.get(str(duration.get("code") or duration.get("unit") or "").lower())
    return None if per_day is None else float(value) * per_day


def _courses(evaluation: Evaluation) -> list[Course]:
    record = evaluation.record
    out = []
    for request in record.medication_requests("antibacterial"):
        start, end, end_known = _course_period(request, record.now)
        ongoing = request.get("status") == "active" and (end is None or end > record.now)
        if ongoing and end is None:
            end = record.now
        name = code_text(request.get("medicationCodeableConcept")) or "antibiotic"
        out.append(Course(name, f"MedicationRequest/{request.get('id', '?')}", start, end,
                          ongoing, end_known))
    out.sort(key=lambda c: (c.start is None, c.start.timestamp() if c.start else 0))
    return out

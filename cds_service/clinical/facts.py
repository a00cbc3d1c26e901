"""Derived inputs the rules share, computed once per request (clinical-rules.md §2–3).

Every threshold lives here, with its source. Rules read these facts; they never look at FHIR.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .record import Finding, Record

# Thresholds (clinical-rules.md §3).
ESR_HIGH = 70.0  # mm/h, strictly above; Butalia 2008 LR+ 11
CRP_ELEVATED = 10.0  # mg/L, strictly above, sample >= 7 days after amputation; CRP kinetics
CRP_MIN_DAYS_AFTER_AMPUTATION = 7
ALP_DEFAULT_HIGH = 120.0  # U/L when the Observation has no referenceRange.high; Orzel 1985 (weak)
ULCER_LARGE = 2.0  # cm2, strictly above; Butalia 2008 LR+ 7.2
TEMP_HIGH, TEMP_LOW = 38.0, 36.0  # Cel; IWGDF/IDSA severity (SIRS-type)
HEART_RATE_HIGH = 90.0  # /min
RESP_RATE_HIGH = 20.0  # /min
WBC_HIGH, WBC_LOW = 12.0, 4.0  # 10*9/L
EGFR_RENAL_IMPAIRMENT = 30.0  # mL/min/1.73m2, strictly below; NSAID label, gadolinium practice
EGFR_FIXED_DOSING_CAUTION = 60.0  # Rybak 2020: fixed q12h dosing inappropriate below this
RELEVANCE_ESR = 30.0  # mm/h (relevance gate, clinical-rules.md §4)

# Windows in days (clinical-rules.md §3).
LABS = 30
VITALS = 2  # 48 hours
IMAGING = 90
WOUND = 30
WEIGHT = 30
RENAL_FOR_DOSING = 7
RECENT_ANTIBIOTICS = 14
AKI_ONSET = 90

XR_CT_MRI = ("foot-radiograph", "foot-ct", "foot-mri")


@dataclass
class Facts:
    """Everything the rules need, with the findings that support each value."""

    record: Record
    days: int | None
    wound: list[Finding] = field(default_factory=list)
    ptb: Finding | None = None  # latest probe-to-bone result in 30 days
    exposed_bone: Finding | None = None
    ulcer_area: Finding | None = None
    esr: Finding | None = None
    crp: Finding | None = None
    alp: Finding | None = None
    sirs: list[Finding] = field(default_factory=list)
    egfr: Finding | None = None
    weight: Finding | None = None
    renal_recent: Finding | None = None  # creatinine or eGFR within 7 days

    @property
    def ptb_positive(self) -> bool:
        return self.ptb is not None and self.ptb.polarity == "positive"

    @property
    def exposed_bone_positive(self) -> bool:
        return self.exposed_bone is not None and self.exposed_bone.polarity == "positive"

    @property
    def ulcer_large(self) -> bool:
        return self.ulcer_area is not None and (self.ulcer_area.value or 0) > ULCER_LARGE

    @property
    def esr_high(self) -> bool:
        return self.esr is not None and (self.esr.value or 0) > ESR_HIGH

    @property
    def crp_elevated(self) -> bool:
        return (self.crp is not None and (self.crp.value or 0) > CRP_ELEVATED
                and self.record.after_amputation(self.crp.when, CRP_MIN_DAYS_AFTER_AMPUTATION))

    @property
    def alp_high(self) -> bool:
        if self.alp is None or self.alp.value is None:
            return False
        return self.alp.value > (self.alp.high if self.alp.high is not None else ALP_DEFAULT_HIGH)

    @property
    def has_wound(self) -> bool:
        return bool(self.wound)


def _latest_coded(record: Record, concept: str, days: int) -> Finding | None:
    found = record.coded(concept, days)
    return found[0] if found else None


def sirs_signs(record: Record) -> list[Finding]:
    """SIRS-type signs, each judged on its latest value in the last 48 h (IWGDF/IDSA severity)."""
    signs = []
    checks = (
        ("body-temperature", lambda v: v > TEMP_HIGH or v < TEMP_LOW),
        ("heart-rate", lambda v: v > HEART_RATE_HIGH),
        ("respiratory-rate", lambda v: v > RESP_RATE_HIGH),
        ("wbc", lambda v: v > WBC_HIGH or v < WBC_LOW),
    )
    for concept, abnormal in checks:
        latest = record.latest(concept, VITALS)
        if latest is not None and latest.value is not None and abnormal(latest.value):
            signs.append(latest)
    return signs


def gather(record: Record) -> Facts:
    """Compute the shared facts once."""
    facts = Facts(record=record, days=record.days_since_amputation)
    facts.ptb = _latest_coded(record, "probe-to-bone", WOUND)
    facts.exposed_bone = _latest_coded(record, "exposed-bone", WOUND)
    facts.ulcer_area = record.latest("ulcer-area", WOUND)
    facts.esr = record.latest("esr", LABS)
    facts.crp = record.latest("crp", LABS)
    facts.alp = record.latest("alkaline-phosphatase", LABS)
    facts.sirs = sirs_signs(record)
    facts.egfr = record.latest("egfr", LABS)
    facts.weight = record.latest("body-weight", WEIGHT)
    facts.renal_recent = record.latest("egfr", RENAL_FOR_DOSING) or record.latest(
        "creatinine", RENAL_FOR_DOSING)
    wound = record.conditions("foot-ulcer") + record.conditions("surgical-wound-complication")
    if facts.ptb_positive and facts.ptb:
        wound.append(facts.ptb)
    if facts.exposed_bone_positive and facts.exposed_bone:
        wound.append(facts.exposed_bone)
    if facts.ulcer_area is not None and (facts.ulcer_area.value or 0) > 0:
        wound.append(facts.ulcer_area)
    facts.wound = wound
    return facts

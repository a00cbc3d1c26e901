"""The rulebook (clinical-rules.md §4–7): small named rules, each citing its source.

Every rule returns a :class:`RuleResult` with its evidence (findings with source references) and
one sentence that the card shows. :func:`assess` evaluates all rules and decides the OM tier and
the HO status in the rulebook's order; "both" (OM and HO) is a possible answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import facts as th
from .facts import XR_CT_MRI, Facts
from .record import Finding
from .sources import (
    BUTALIA_2008,
    CRP_KINETICS,
    DINH_2008,
    EANM_2024,
    IWGDF_2023,
    IWGDF_SEVERITY,
    JFAS_2016,
    ORZEL_1985,
    SCIRE,
    SHEHAB_2002,
    TIEGS_HEIDEN_2023,
    XU_2020,
    Source,
)


@dataclass(frozen=True)
class RuleResult:
    id: str
    fired: bool
    explanation: str = ""
    evidence: tuple[Finding, ...] = ()
    source: Source | None = None
    effect: str | None = None  # tier or status this rule argues for


@dataclass
class Assessment:
    osteomyelitis: str
    heterotopic_ossification: str
    flags: list[str]
    results: list[RuleResult]  # fired rules, in rulebook order
    facts: Facts
    deciding_om: str | None = None  # rule id that set the OM tier
    deciding_ho: str | None = None
    flag_evidence: dict[str, tuple[Finding, ...]] = field(default_factory=dict)

    @property
    def rule_ids(self) -> list[str]:
        return [r.id for r in self.results]

    def fired(self, rule_id: str) -> bool:
        return rule_id in self.rule_ids

    def extension(self) -> dict[str, object]:
        """The ``tma-bone-assessment`` extension object (product-contract.md)."""
        value: dict[str, object] = {
            "osteomyelitis": self.osteomyelitis,
            "heterotopicOssification": self.heterotopic_ossification,
            "flags": list(self.flags),
            "rules": self.rule_ids,
            "side": self.facts.record.side or "unknown",
        }
        if self.facts.days is not None:
            value["daysSinceAmputation"] = self.facts.days
        return value


def _no(rule_id: str) -> RuleResult:
    return RuleResult(rule_id, False)


def _days(facts: Facts) -> str:
    return f"day {facts.days}" if facts.days is not None else "date unknown"


#####################################################################
# Safety rules (clinical-rules.md §5)


def s_1(facts: Facts) -> RuleResult:
    """S-1 severe infection: >= 2 SIRS signs (48 h) or an active abscess. IWGDF/IDSA severity."""
    abscess = facts.record.conditions("abscess")
    if len(facts.sirs) >= 2 or abscess:
        parts = []
        if len(facts.sirs) >= 2:
            parts.append(f"{len(facts.sirs)} SIRS signs in the last 48 h")
        if abscess:
            parts.append("an active abscess")
        return RuleResult("S-1", True, f"Severe infection: {' and '.join(parts)}; urgent "
                          "surgical evaluation, blood cultures and empiric IV antibiotics per "
                          "local protocol. Do not delay antibiotics for a biopsy.",
                          tuple(facts.sirs) + tuple(abscess), IWGDF_SEVERITY)
    return _no("S-1")


def s_2(facts: Facts) -> RuleResult:
    """S-2 too early: < 14 days after amputation; markers and radiographs are not interpretable.

    Orzel 1985 (HO begins about day 17); post-operative CRP kinetics.
    """
    if facts.days is not None and facts.days < 14:
        return RuleResult("S-2", True, f"Day {facts.days} after amputation: inflammatory markers "
                          "and radiographs are not interpretable before day 14; follow the wound "
                          "and the trajectory of the markers.", (), CRP_KINETICS, "indeterminate")
    return _no("S-2")


#####################################################################
# Osteomyelitis rules (clinical-rules.md §6)


def om_1(facts: Facts) -> RuleResult:
    """OM-1 confirmed: positive bone culture or histopathology after the amputation. IWGDF 2023."""
    record = facts.record
    positive = [f for concept in ("bone-culture", "bone-histopathology")
                for f in record.coded(concept)
                if f.polarity == "positive" and record.after_amputation(f.when)]
    if positive:
        return RuleResult("OM-1", True, "Bone culture or histopathology after the amputation is "
                          "positive: osteomyelitis confirmed.", tuple(positive), IWGDF_2023,
                          "confirmed")
    return _no("OM-1")


def _latest_mri(facts: Facts):  # type: ignore[no-untyped-def]
    reports = facts.record.imaging_reports(["foot-mri"], th.IMAGING, reported_only=True)
    return reports[0] if reports else None


def om_5(facts: Facts) -> RuleResult:
    """OM-5 normal MRI: the latest foot MRI (90 days) reports normal marrow and nothing contrary
    came later. A negative MRI has LR- 0.14 (Butalia 2008)."""
    mri = _latest_mri(facts)
    if mri is None or mri.findings.get("normal-marrow") != "positive":
        return _no("OM-5")
    later = [f for concept in ("om-imaging-pattern", "confluent-marrow-replacement")
             for f in facts.record.imaging_findings(concept, XR_CT_MRI, th.IMAGING)
             if f.when and mri.when and f.when > mri.when]
    if later or mri.findings.get("confluent-marrow-replacement") in ("positive", "uncertain"):
        return _no("OM-5")
    finding = Finding("normal-marrow", "Normal marrow on MRI", mri.ref, mri.when,
                      polarity="positive", modality="foot-mri", text="foot MRI: normal marrow")
    return RuleResult("OM-5", True, "The latest foot MRI shows normal marrow, which argues "
                      "strongly against osteomyelitis (LR- 0.14).", (finding,), BUTALIA_2008,
                      "unlikely")


def om_2(facts: Facts) -> RuleResult:
    """OM-2 probable: positive probe-to-bone or exposed bone (30 days) and an OM pattern on a
    radiograph (90 days) or ESR > 70 mm/h. IWGDF 2023; EANM 2024; Xu 2020 (specificity 0.98)."""
    contact = [f for f in (facts.ptb, facts.exposed_bone) if f and f.polarity == "positive"]
    xr = facts.record.imaging_findings("om-imaging-pattern", ["foot-radiograph"], th.IMAGING)
    if not contact or not (xr or facts.esr_high):
        return _no("OM-2")
    support = tuple(xr) + ((facts.esr,) if facts.esr_high and facts.esr else ())
    return RuleResult("OM-2", True, "Probe-to-bone or exposed bone together with "
                      + ("an osteomyelitis pattern on radiograph" if xr else "ESR > 70 mm/h")
                      + ": treat as presumptive osteomyelitis (further imaging not needed for "
                      "the diagnosis; consider it for surgical planning).",
                      tuple(contact) + support, XU_2020, "probable")


def om_3(facts: Facts) -> RuleResult:
    """OM-3 probable: confluent marrow replacement on a foot MRI (90 days). Tiegs-Heiden 2023."""
    found = facts.record.imaging_findings("confluent-marrow-replacement", ["foot-mri"],
                                          th.IMAGING)
    if found:
        return RuleResult("OM-3", True, "Confluent marrow replacement on foot MRI: osteomyelitis "
                          "in 73% of such patients at 2 months.", tuple(found), TIEGS_HEIDEN_2023,
                          "probable")
    return _no("OM-3")


def om_7(facts: Facts) -> RuleResult:
    """OM-7: an active coded osteomyelitis Condition on this foot (or side unknown): probable when
    confirmed or unverified, possible when provisional or differential. IWGDF 2023."""
    conditions = facts.record.conditions("osteomyelitis")
    if not conditions:
        return _no("OM-7")
    statuses = {facts.record.verification_of(c.ref) for c in conditions}
    probable = bool(statuses & {None, "confirmed"})
    tier = "probable" if probable else "possible"
    return RuleResult("OM-7", True, f"Osteomyelitis is coded as an active condition "
                      f"({'confirmed or unqualified' if probable else 'provisional'}).",
                      tuple(conditions), IWGDF_2023, tier)


def om_4(facts: Facts) -> RuleResult:
    """OM-4 possible: a wound with any one supporting sign, or an OM imaging pattern with a high
    ESR or elevated CRP. Butalia 2008 (LR+ 6.4 / 7.2 / 11); Dinh 2008; CRP kinetics."""
    record = facts.record
    pattern = record.imaging_findings("om-imaging-pattern", XR_CT_MRI, th.IMAGING)
    nuclear = (record.imaging_findings("leukocyte-scan-positive", ["leukocyte-scan"], th.IMAGING)
               + record.imaging_findings("pet-positive", ["fdg-pet"], th.IMAGING))
    signs: list[Finding] = []
    for present, item in ((facts.ptb_positive, facts.ptb),
                          (facts.exposed_bone_positive, facts.exposed_bone),
                          (facts.ulcer_large, facts.ulcer_area), (facts.esr_high, facts.esr),
                          (facts.crp_elevated, facts.crp)):
        if present and item is not None:
            signs.append(item)
    signs += pattern + nuclear
    if facts.has_wound and signs:
        return RuleResult("OM-4", True, "A stump wound with "
                          + ", ".join(_sign_name(s) for s in signs)
                          + ": osteomyelitis possible; test further.",
                          tuple(facts.wound[:1]) + tuple(signs), BUTALIA_2008, "possible")
    markers = [m for ok, m in ((facts.esr_high, facts.esr), (facts.crp_elevated, facts.crp))
               if ok and m]
    if not facts.has_wound and pattern and markers:
        return RuleResult("OM-4", True, "An osteomyelitis pattern on imaging with raised "
                          "markers, without a wound: osteomyelitis possible; test further.",
                          tuple(pattern) + tuple(markers), BUTALIA_2008, "possible")
    return _no("OM-4")


def _sign_name(finding: Finding) -> str:
    names = {"esr": "ESR > 70 mm/h", "crp": "CRP > 10 mg/L", "ulcer-area": "ulcer > 2 cm2",
             "probe-to-bone": "positive probe-to-bone", "exposed-bone": "exposed bone"}
    return names.get(finding.concept, f"{finding.label.lower()} on "
                     f"{(finding.modality or 'imaging').replace('foot-', '')}")


def om_6(facts: Facts, others_fired: bool) -> RuleResult:
    """OM-6 not supported: nothing above fired, no wound, no high ESR/elevated CRP in 30 days,
    and some negative evidence (a normal ESR or CRP in 30 days, or a same-side radiograph in 90
    days without an OM pattern). Reasoning from base rates (B); Butalia 2008.

    "Normal" uses the rulebook thresholds: ESR <= 70 mm/h, CRP <= 10 mg/L.
    """
    if others_fired or facts.has_wound or facts.esr_high or facts.crp_elevated:
        return _no("OM-6")
    negative: list[Finding] = []
    if facts.esr is not None:
        negative.append(facts.esr)
    if facts.crp is not None and (facts.crp.value or 0) <= th.CRP_ELEVATED:
        negative.append(facts.crp)
    for report in facts.record.imaging_reports(["foot-radiograph"], th.IMAGING,
                                               reported_only=True):
        if report.findings.get("om-imaging-pattern") not in ("positive", "uncertain"):
            negative.append(Finding("foot-radiograph", "Foot radiograph", report.ref, report.when,
                                    modality="foot-radiograph",
                                    text="no osteomyelitis pattern reported"))
            break
    if not negative:
        return _no("OM-6")
    return RuleResult("OM-6", True, "No stump wound, no raised ESR or CRP and no osteomyelitis "
                      "pattern: contiguous osteomyelitis is not supported.", tuple(negative),
                      BUTALIA_2008, "not-supported")


def om_8(facts: Facts) -> RuleResult:
    """OM-8 note: data that never moves the tier (fever or WBC alone, CRP without a wound or OM
    pattern, ALP, any three-phase bone scan). Butalia 2008 (WBC sens 14-54%, fever 19%); Dinh
    2008 (bone scan specificity 0.28)."""
    record = facts.record
    noted: list[Finding] = []
    scans = record.imaging_reports(["three-phase-bone-scan"], th.IMAGING)
    for scan in scans[:1]:
        noted.append(Finding("three-phase-bone-scan", "Three-phase bone scan", scan.ref,
                             scan.when, modality=scan.kind, text="done"))
    noted += [s for s in facts.sirs if s.concept in ("body-temperature", "wbc")]
    pattern = record.imaging_findings("om-imaging-pattern", XR_CT_MRI, th.IMAGING)
    if facts.crp_elevated and facts.crp and not facts.has_wound and not pattern:
        noted.append(facts.crp)
    if facts.alp_high and facts.alp:
        noted.append(facts.alp)
    if not noted:
        return _no("OM-8")
    return RuleResult("OM-8", True, "Not discriminating, so not used for the tier: "
                      + ", ".join(sorted({_note_name(n) for n in noted})) + ".",
                      tuple(noted), DINH_2008)


def _note_name(finding: Finding) -> str:
    return {"three-phase-bone-scan": "a three-phase bone scan (specificity about 0.28)",
            "body-temperature": "fever", "wbc": "white cell count",
            "crp": "CRP without a wound or imaging pattern",
            "alkaline-phosphatase": "alkaline phosphatase"}.get(finding.concept, finding.label)


#####################################################################
# Heterotopic ossification rules (clinical-rules.md §7)


def ho_1(facts: Facts) -> RuleResult:
    """HO-1 present: soft-tissue ossification on a same-side radiograph, CT or MRI >= 21 days after
    amputation (no look-back limit), or an active coded HO Condition. JFAS 2016; Orzel 1985."""
    imaging = facts.record.imaging_findings("soft-tissue-ossification", XR_CT_MRI,
                                            min_days_after_amputation=21)
    coded = facts.record.conditions("heterotopic-ossification")
    if imaging or coded:
        possible = " (reported as possible)" if imaging and all(
            f.polarity == "uncertain" for f in imaging) and not coded else ""
        return RuleResult("HO-1", True, "Ossification in the soft tissue of the stump"
                          + possible + ": heterotopic ossification present; this says nothing "
                          "about infection.", tuple(imaging) + tuple(coded), JFAS_2016, "present")
    return _no("HO-1")


def ho_5(facts: Facts, ho1: RuleResult) -> RuleResult:
    """HO-5 mature: HO-1 and a maturity feature (well-corticated, mature bone). Classic maturity
    criteria (B, clinical-evidence.md A4); Shehab 2002."""
    if not ho1.fired:
        return _no("HO-5")
    mature = facts.record.imaging_findings("mature-ho-pattern", XR_CT_MRI,
                                           min_days_after_amputation=21)
    if mature:
        return RuleResult("HO-5", True, "The heterotopic bone has maturity features "
                          "(corticated, mature bone): excision can be considered if symptomatic.",
                          tuple(mature), SHEHAB_2002, "mature")
    return _no("HO-5")


def _bone_scan_phases(facts: Facts, days: float | None):  # type: ignore[no-untyped-def]
    for scan in facts.record.imaging_reports(["three-phase-bone-scan"], days,
                                             reported_only=True):
        phases = tuple(scan.findings.get(f"bone-scan-phase{i}-increased") in ("positive",
                                                                             "uncertain")
                       for i in (1, 2, 3))
        yield scan, phases


def ho_4(facts: Facts, ho1: RuleResult) -> RuleResult:
    """HO-4 suspected (indirect signs only): ALP high with CRP <= 10 mg/L on days 14-84; or a bone
    scan with phases 2 and 3 but not 1 increased (weak); or a plantar prominence or decreased range
    of motion (90 days). Orzel 1985; SCIRE (ALP not validated)."""
    if ho1.fired:
        return _no("HO-4")
    evidence: list[Finding] = []
    reasons = []
    if (facts.days is not None and 14 <= facts.days <= 84 and facts.alp_high
            and facts.crp is not None and (facts.crp.value or 0) <= th.CRP_ELEVATED
            and facts.alp is not None):
        evidence += [facts.alp, facts.crp]
        reasons.append("raised alkaline phosphatase with a normal CRP")
    for scan, (p1, p2, p3) in _bone_scan_phases(facts, th.IMAGING):
        if p2 and p3 and not p1:
            evidence.append(Finding("three-phase-bone-scan", "Three-phase bone scan", scan.ref,
                                    scan.when, modality=scan.kind,
                                    text="phases 2 and 3 increased, phase 1 not"))
            reasons.append("a bone scan increased in phases 2 and 3 only (weak)")
            break
    for concept in ("plantar-prominence", "decreased-range-of-motion"):
        found = [f for f in facts.record.coded(concept, th.IMAGING) if f.polarity == "positive"]
        if found:
            evidence.append(found[0])
            reasons.append(found[0].label.lower())
    if not evidence:
        return _no("HO-4")
    return RuleResult("HO-4", True, "Indirect signs of heterotopic ossification: "
                      + "; ".join(reasons) + ".", tuple(evidence), ORZEL_1985, "suspected")


def ho_not_detected(facts: Facts) -> list[Finding]:
    """Radiographs, CT or MRI >= 21 days after amputation that do not report ossification."""
    out = []
    for report in facts.record.imaging_reports(XR_CT_MRI, min_days_after_amputation=21,
                                               reported_only=True):
        if report.findings.get("soft-tissue-ossification") not in ("positive", "uncertain"):
            out.append(Finding(report.kind, facts.record.mappings.label(report.kind), report.ref,
                               report.when, modality=report.kind,
                               text="no soft-tissue ossification reported"))
    return out


def ho_6(facts: Facts, charcot: bool) -> RuleResult:
    """HO-6: a three-phase bone scan cannot separate OM from early HO, remodelling or Charcot when
    all three phases are increased within 180 days of amputation, or with Charcot at any time.
    Orzel 1985; Shehab 2002; Dinh 2008."""
    for scan, phases in _bone_scan_phases(facts, None):
        recent = facts.record.amputation is None or facts.record.amputation.when is None or (
            scan.when is not None and (scan.when - facts.record.amputation.when).days <= 180)
        if (all(phases) and recent) or charcot:
            finding = Finding("three-phase-bone-scan", "Three-phase bone scan", scan.ref,
                              scan.when, modality=scan.kind,
                              text="all three phases increased" if all(phases) else "done")
            return RuleResult("HO-6", True, "A three-phase bone scan is positive in early HO, "
                              "post-surgical remodelling, Charcot and OM alike; it cannot decide "
                              "here.", (finding,), ORZEL_1985)
    return _no("HO-6")


#####################################################################
# The assessment


def _flag_findings(facts: Facts) -> dict[str, tuple[Finding, ...]]:
    record = facts.record
    flags: dict[str, tuple[Finding, ...]] = {}
    charcot = record.conditions("charcot-neuroarthropathy")
    if charcot:
        flags["charcot"] = tuple(charcot)
    pad = record.conditions("peripheral-arterial-disease")
    if pad:
        flags["pad"] = tuple(pad)
    antibiotics = record.medications("antibacterial", active_only=False,
                                     authored_days=th.RECENT_ANTIBIOTICS)
    if antibiotics:
        flags["recent-antibiotics"] = tuple(antibiotics)
    renal = list(record.conditions("chronic-kidney-disease-advanced"))
    if facts.egfr is not None and (facts.egfr.value or 0) < th.EGFR_RENAL_IMPAIRMENT:
        renal.insert(0, facts.egfr)
    if renal:
        flags["renal-impairment"] = tuple(renal)
    return flags


OM_ORDER = ("OM-1", "OM-2", "OM-3", "OM-4", "OM-5", "OM-6", "OM-7", "OM-8")
FLAG_ORDER = ("severe-infection", "early-postoperative", "charcot", "pad", "recent-antibiotics",
              "renal-impairment", "ho-favored", "ho-ulcer-coexistence",
              "bone-scan-nondiscriminating")


def assess(facts: Facts) -> Assessment:
    """Evaluate every rule and decide the OM tier and HO status (clinical-rules.md §5–7)."""
    s1, s2 = s_1(facts), s_2(facts)
    om = {r.id: r for r in (om_1(facts), om_2(facts), om_3(facts), om_4(facts), om_5(facts),
                            om_7(facts), om_8(facts))}
    others = any(om[i].fired for i in ("OM-1", "OM-2", "OM-3", "OM-4", "OM-5", "OM-7"))
    om["OM-6"] = om_6(facts, others)

    tier, deciding = "indeterminate", None
    if om["OM-1"].fired:
        tier, deciding = "confirmed", "OM-1"
    elif s2.fired:
        tier, deciding = "indeterminate", "S-2"
    elif om["OM-5"].fired:
        tier, deciding = ("possible", "OM-5") if om["OM-2"].fired else ("unlikely", "OM-5")
    elif om["OM-2"].fired:
        tier, deciding = "probable", "OM-2"
    elif om["OM-3"].fired:
        tier, deciding = "probable", "OM-3"
    elif om["OM-7"].fired:
        tier, deciding = om["OM-7"].effect or "probable", "OM-7"
    elif om["OM-4"].fired:
        tier, deciding = "possible", "OM-4"
    elif om["OM-6"].fired:
        tier, deciding = "not-supported", "OM-6"

    flag_evidence = _flag_findings(facts)
    ho1 = ho_1(facts)
    ho5 = ho_5(facts, ho1)
    ho4 = ho_4(facts, ho1)
    if ho5.fired:
        ho, ho_deciding = "mature", "HO-5"
    elif ho1.fired:
        ho, ho_deciding = "present", "HO-1"
    elif ho4.fired:
        ho, ho_deciding = "suspected", "HO-4"
    elif ho_not_detected(facts):
        ho, ho_deciding = "not-detected", None
    else:
        ho, ho_deciding = "indeterminate", None
    ho6 = ho_6(facts, "charcot" in flag_evidence)

    derived: list[RuleResult] = []
    if ho in ("present", "mature") and tier in ("not-supported", "unlikely"):
        derived.append(RuleResult("HO-2", True, "Heterotopic bone with osteomyelitis "
                                  f"{tier.replace('-', ' ')}: the findings favor heterotopic "
                                  "ossification over osteomyelitis.", ho1.evidence, JFAS_2016))
        flag_evidence["ho-favored"] = ho1.evidence
    if ho in ("present", "mature") and facts.has_wound:
        derived.append(RuleResult("HO-7", True, "A stump wound with heterotopic bone: ulcer over "
                                  "heterotopic bone, evaluate for osteomyelitis (HO ulcerates in "
                                  "about 1 in 5 patients).", tuple(facts.wound), JFAS_2016))
        flag_evidence["ho-ulcer-coexistence"] = tuple(facts.wound)
    if ho6.fired:
        flag_evidence["bone-scan-nondiscriminating"] = ho6.evidence
    if s1.fired:
        flag_evidence["severe-infection"] = s1.evidence
    if s2.fired:
        flag_evidence["early-postoperative"] = ()

    fired = [r for r in (s1, s2) if r.fired]
    fired += [om[i] for i in OM_ORDER if om[i].fired]
    ho_rules = {r.id: r for r in (ho1, ho4, ho5, ho6, *derived) if r.fired}
    fired += [ho_rules[i] for i in sorted(ho_rules, key=lambda x: int(x.split("-")[1]))]
    flags = [f for f in FLAG_ORDER if f in flag_evidence]
    return Assessment(tier, ho, flags, fired, facts, deciding, ho_deciding, flag_evidence)


def is_relevant(facts: Facts) -> bool:
    """Relevance gate (clinical-rules.md §4): an index amputation and one sign of active trouble."""
    record = facts.record
    if record.amputation is None:
        return False
    if record.conditions("osteomyelitis") or record.conditions("heterotopic-ossification"):
        return True
    if facts.has_wound:
        return True
    if record.imaging_reports(("foot-radiograph", "foot-mri", "foot-ct", "three-phase-bone-scan",
                               "leukocyte-scan", "fdg-pet"), th.IMAGING):
        return True
    if facts.esr is not None and (facts.esr.value or 0) > th.RELEVANCE_ESR:
        return True
    if facts.crp is not None and (facts.crp.value or 0) > th.CRP_ELEVATED:
        return True
    if record.coded("bone-culture", th.IMAGING) or record.coded("bone-histopathology",
                                                                  th.IMAGING):
        return True
    return any(record.within(p.when, th.IMAGING) for p in record.procedures("bone-biopsy"))


__all__ = ["Assessment", "RuleResult", "assess", "is_relevant"]
_ = (EANM_2024, SCIRE)  # cited in docstrings of the rules above

"""Heterotopic ossification rules HO-1, HO-4, HO-5, HO-6 (clinical-rules.md §7).

HO-2 and HO-7 are derived flags, decided in :func:`~cds_service.clinical.rules.assess`.
"""

from __future__ import annotations

from . import facts as th
from .facts import XR_CT_MRI, Facts
from .finding import Finding
from .result import RuleResult
from .result import not_fired as _no
from .sources import JFAS_2016, ORZEL_1985, SHEHAB_2002

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

"""Safety rules S-1, S-2 and osteomyelitis rules OM-1 … OM-8 (clinical-rules.md §5–6).

Each rule is one function that cites its source in its docstring and returns a
:class:`~cds_service.clinical.result.RuleResult`; :func:`~cds_service.clinical.rules.assess`
decides the tier from them in the rulebook's order.
"""

from __future__ import annotations

from . import facts as th
from .facts import XR_CT_MRI, Facts
from .finding import Finding
from .result import RuleResult
from .result import not_fired as _no
from .sources import (
    BUTALIA_2008,
    CRP_KINETICS,
    DINH_2008,
    IWGDF_2023,
    IWGDF_SEVERITY,
    TIEGS_HEIDEN_2023,
    XU_2020,
)
from .vocabulary import not_discriminating

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

# OM-6: foot imaging whose OM pattern (present or uncertain) keeps the tier from not-supported
OM6_IMAGING = (*XR_CT_MRI, "leukocyte-scan", "fdg-pet")


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
    """The most recent foot MRI report (90 days), read or not: an unread latest MRI is no
    evidence either way, and an older one does not stand in for it."""
    reports = [r for r in facts.record.imaging_reports(["foot-mri"], th.IMAGING)
               if r.has_report]
    return reports[0] if reports else None


def om_5(facts: Facts) -> RuleResult:
    """OM-5 normal MRI: the latest foot MRI (90 days) reports normal marrow at the stump and
    nothing contrary came later. A negative MRI has LR- 0.14 (Butalia 2008).

    Normal marrow at the stump (clinical-rules.md §6 item 3): the report reader cancels
    ``normal-marrow`` when the same MRI states a marrow abnormality anywhere (oedema, low T1
    signal, replacement; ``mappings/report-text.toml`` ``abnormal_marrow``) or qualifies the
    normal statement ("normal except ..."). Also contrary on the same MRI: confluent marrow
    replacement or an osteomyelitis pattern (present or uncertain). An MRI whose report could
    not be read in full is no evidence of normal marrow.
    """
    mri = _latest_mri(facts)
    if mri is None or not mri.read or mri.findings.get("normal-marrow") != "positive":
        return _no("OM-5")
    later = [f for concept in ("om-imaging-pattern", "confluent-marrow-replacement")
             for f in facts.record.imaging_findings(concept, XR_CT_MRI, th.IMAGING)
             if f.when and mri.when and f.when > mri.when]
    contrary = [c for c in ("confluent-marrow-replacement", "om-imaging-pattern")
                if mri.findings.get(c) in ("positive", "uncertain")]
    if later or contrary:
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
    no same-side foot imaging in 90 days showing an OM pattern (present or uncertain), and some
    negative evidence (a normal ESR or CRP in 30 days, or a same-side radiograph in 90 days, read
    in full, without an OM pattern). Reasoning from base rates (B); Butalia 2008.

    "Normal" uses the rulebook thresholds: ESR <= 70 mm/h, CRP <= 10 mg/L. "Foot imaging" for the
    OM-pattern condition is radiograph, CT, MRI, leukocyte scan and FDG-PET; a three-phase bone
    scan is left out because no bone-scan report may move the tier (OM-8 note).
    """
    if others_fired or facts.has_wound or facts.esr_high or facts.crp_elevated:
        return _no("OM-6")
    if facts.record.imaging_findings("om-imaging-pattern", OM6_IMAGING, th.IMAGING):
        return _no("OM-6")  # an OM pattern on imaging leaves the tier indeterminate
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
    return RuleResult("OM-8", True, not_discriminating(noted), tuple(noted), DINH_2008)

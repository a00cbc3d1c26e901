"""Patient-view cards (clinical-rules.md §8, §9, §11): assessment, next tests, management."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..cards import Action, CardSpec, Suggestion, table
from . import facts as th
from .gates import (
    fixed_dosing_inappropriate,
    nsaid_gate_failures,
    vancomycin_missing,
    vancomycin_range_text,
)
from .nexttests import probe_to_bone_advice, t_bc, t_bx, t_lab, t_mri_alt, t_scan_ho, t_xr
from .orders import indomethacin_request
from .record import Finding
from .rules import Assessment
from .sources import (
    BUTALIA_2008,
    CRP_KINETICS,
    GADOLINIUM,
    GENTILI_REVIEW,
    HIP_HO_REVIEW,
    IWGDF_2023,
    IWGDF_SEVERITY,
    JFAS_2015,
    JFAS_2016,
    KAVANAGH,
    OPENFDA_NSAID,
    ORZEL_1985,
    PRIOR_ANTIBIOTICS,
    RYBAK_2020,
    Source,
)

DISCLAIMER = ("*Decision support, not a diagnosis: weigh it against the examination and local "
              "protocols.*")

FLAG_TEXT: dict[str, tuple[str, Source]] = {
    "severe-infection": ("severe infection: urgent surgical evaluation, blood cultures, empiric "
                         "IV antibiotics per local protocol; never delay antibiotics for a "
                         "biopsy", IWGDF_SEVERITY),
    "early-postoperative": ("before day 14 ESR, CRP, ALP and radiographs reflect the surgery; "
                            "follow the trajectory", CRP_KINETICS),
    "charcot": ("Charcot gives all-phase bone-scan uptake and marrow oedema on MRI; prefer "
                "leukocyte SPECT/CT with marrow imaging", GENTILI_REVIEW),
    "pad": ("peripheral arterial disease: bone scans can be falsely negative and healing is "
            "impaired; arrange a vascular assessment", GENTILI_REVIEW),
    "recent-antibiotics": ("antibiotics in the last 14 days lower bone-culture yield; in a "
                           "stable patient consider an antibiotic-free window before biopsy",
                           PRIOR_ANTIBIOTICS),
    "renal-impairment": ("eGFR < 30 or advanced CKD: MRI without gadolinium, no NSAID, "
                         "vancomycin dosed with pharmacy", GADOLINIUM),
    "ho-favored": ("the findings favor heterotopic ossification over osteomyelitis", JFAS_2016),
    "ho-ulcer-coexistence": ("ulcer over heterotopic bone: evaluate for osteomyelitis (about 1 "
                             "in 5 HO prominences ulcerate)", JFAS_2016),
    "bone-scan-nondiscriminating": ("the bone scan is positive in early HO, remodelling, Charcot "
                                    "and OM alike: it cannot decide here", ORZEL_1985),
}
WARNING_TIERS = ("probable", "confirmed")


def _date(when: datetime | None) -> str:
    return when.date().isoformat() if when else "—"


def side_word(a: Assessment) -> str:
    side = a.facts.record.side
    return side.capitalize() if side else "Side unknown"


def amputation_kind(a: Assessment) -> str:
    """A short name for the index amputation: TMA, ray amputation, Chopart amputation, ..."""
    amp = a.facts.record.amputation
    label = (amp.label if amp else "").lower()
    if "transmetatarsal" in label:
        return "TMA"
    if "ray" in label or "metatarsal, with toe" in label:
        return "ray amputation"
    if "midtarsal" in label or "chopart" in label:
        return "Chopart amputation"
    if "lisfranc" in label:
        return "Lisfranc amputation"
    return "partial-foot amputation"


def summary(a: Assessment) -> str:
    """E.g. "Left TMA day 42: osteomyelitis probable; heterotopic ossification present"."""
    days = a.facts.days
    when = f"day {days}" if days is not None else "date unknown"
    om = a.osteomyelitis.replace("-", " ")
    ho = a.heterotopic_ossification.replace("-", " ")
    prefix = "SEVERE INFECTION. " if "severe-infection" in a.flags else ""
    return (f"{prefix}{side_word(a)} {amputation_kind(a)} {when}: osteomyelitis {om}; "
            f"heterotopic ossification {ho}")


def indicator(a: Assessment) -> str:
    if "severe-infection" in a.flags:
        return "critical"
    return "warning" if a.osteomyelitis in WARNING_TIERS else "info"


def _finding_rows(a: Assessment) -> list[list[str]]:
    f = a.facts
    record = f.record
    rows: list[list[str]] = []
    seen: set[tuple[str, str]] = set()

    def add(item: Finding | None) -> None:
        if item is None or (item.ref, item.concept) in seen:
            return
        seen.add((item.ref, item.concept))
        rows.append([item.label, item.shown_value(), _date(item.when), item.ref])

    amp = record.amputation
    if amp is not None:
        rows.append([f"Index amputation: {amp.label}",
                     (f"day {f.days}" if f.days is not None else "date unknown")
                     + f", {amp.side or 'side unknown'}", _date(amp.when), amp.ref])
    for item in (f.ptb, f.exposed_bone, f.ulcer_area, f.esr, f.crp, f.alp, *f.sirs):
        add(item)
    for item in f.wound:
        add(item)
    for result in a.results:
        for item in result.evidence:
            add(item)
    for flag in a.flags:
        for item in a.flag_evidence.get(flag, ()):
            add(item)
    return rows


def missing_data(a: Assessment, unavailable: Mapping[str, str], notes: list[str]) -> list[str]:
    """What data was missing or unusable, in plain words (the card never guesses)."""
    f = a.facts
    record = f.record
    out = [f"{key}: {why}" for key, why in unavailable.items()]
    if record.amputation is not None and record.amputation.when is None:
        out.append("Amputation date unknown: treated as long established.")
    if record.side is None:
        out.append("Amputation side unknown: findings from either side were used.")
    if f.esr is None:
        out.append("No ESR in the last 30 days.")
    if f.crp is None:
        out.append("No CRP in the last 30 days.")
    if not record.imaging_reports(("foot-radiograph",), th.IMAGING):
        out.append("No foot radiograph in the last 90 days.")
    if f.has_wound and f.ptb is None:
        out.append("No probe-to-bone result in the last 30 days.")
    out += notes
    return out


def assessment_card(a: Assessment, unavailable: Mapping[str, str], notes: list[str]) -> CardSpec:
    om_rule = f" ({a.deciding_om})" if a.deciding_om else ""
    ho_rule = f" ({a.deciding_ho})" if a.deciding_ho else ""
    parts = [f"**Osteomyelitis: {a.osteomyelitis}**{om_rule} · "
             f"**Heterotopic ossification: {a.heterotopic_ossification}**{ho_rule}"]
    rows = _finding_rows(a)
    if rows:
        parts.append(table(("Finding", "Value", "Date", "Source"), rows))
    if a.results:
        parts.append("**Why**\n" + "\n".join(
            f"- **{r.id}** {r.explanation} *({r.source.cite() if r.source else 'rulebook'})*"
            for r in a.results))
    if a.flags:
        parts.append("**Flags**\n" + "\n".join(
            f"- **{flag}**: {FLAG_TEXT[flag][0]} *({FLAG_TEXT[flag][1].cite()})*"
            for flag in a.flags))
    missing = missing_data(a, unavailable, notes)
    if missing:
        parts.append("**Missing or unusable data**\n" + "\n".join(f"- {m}" for m in missing))
    parts.append(DISCLAIMER)
    return CardSpec(summary(a), indicator(a), "\n\n".join(parts), "assessment", a.rule_ids,
                    assessment=a.extension())


def _companion_indicator(a: Assessment) -> str:
    return "info" if indicator(a) == "info" else "warning"


def next_test_cards(a: Assessment, patient_id: str) -> list[CardSpec]:
    cards = []
    imaging = t_mri_alt(a, patient_id)
    if imaging:
        text = ["MRI of the residual foot is the next test: a normal marrow signal argues "
                "strongly against osteomyelitis (LR- 0.14) *(Butalia 2008; IWGDF/IDSA 2023; ACR "
                "2019)*."]
        if "renal-impairment" in a.flags:
            text.append("Renal impairment: MRI **without** gadolinium *(gadolinium practice, B)*.")
        if any(s.rule == "T-ALT" for s in imaging):
            alt = ("With Charcot, prefer leukocyte SPECT/CT over the bone scan." if "charcot" in
                   a.flags else "If MRI is contraindicated or non-diagnostic: leukocyte SPECT/CT "
                   "or FDG-PET/CT; a three-phase bone scan is the least specific (0.28).")
            text.append(alt + " *(EANM 2024; Llewellyn 2020; Dinh 2008)*")
        rules = sorted({s.rule for s in imaging if s.rule})
        cards.append(CardSpec("Next imaging: MRI of the residual foot to separate osteomyelitis "
                              "from HO or post-surgical change", _companion_indicator(a),
                              "\n\n".join(text), "next-tests", rules, imaging, "at-most-one"))
    others = t_bc(a, patient_id) + t_xr(a, patient_id) + t_lab(a, patient_id) + \
        t_bx(a, patient_id) + t_scan_ho(a, patient_id)
    advice = probe_to_bone_advice(a)
    if others or advice:
        lines = []
        reasons = {
            "T-XR": "Foot radiograph (3 views): first imaging, compare with the post-operative "
                    "baseline *(IWGDF/IDSA 2023; ACR 2019, rating 9)*.",
            "T-LAB": "ESR and CRP: with probe-to-bone and radiographs, the initial work-up "
                     "*(IWGDF/IDSA 2023)*.",
            "T-BX": "Bone biopsy through intact skin away from the ulcer, for culture **and** "
                    "histology: the only test that settles it *(IWGDF/IDSA 2023; SVS 2016)*."
                    + (" Severe infection: do not delay antibiotics for the biopsy."
                       if "severe-infection" in a.flags else ""),
            "T-BC": "Blood cultures (two sets) for severe infection, before antibiotics but "
                    "without delaying them *(IWGDF/IDSA severity classification, B)*.",
            "T-SCAN-HO": "Three-phase bone scan to judge HO maturity before excision, not to "
                         "diagnose infection *(Shehab 2002)*.",
        }
        for rule in dict.fromkeys(s.rule for s in others if s.rule):
            lines.append(f"- {reasons[rule]}")
        if advice:
            lines.append(f"- {advice} *(Lavery 2007; SVS 2016)*")
        labels = [s.label.replace("Order ", "") for s in others]
        head = "Next tests: " + ", ".join(labels) if labels else "Next step: probe-to-bone test"
        rules = list(dict.fromkeys(s.rule for s in others if s.rule))
        cards.append(CardSpec(head, _companion_indicator(a), "\n".join(lines), "next-tests",
                              rules, others, "any"))
    return cards


def om_management(a: Assessment) -> CardSpec | None:
    """Management when OM is probable or confirmed (clinical-rules.md §9). IWGDF 2023; Rybak
    2020. No antibiotic order is suggested."""
    if a.osteomyelitis not in WARNING_TIERS:
        return None
    f = a.facts
    urgent = "severe-infection" in a.flags or f.record.conditions("abscess")
    lines = [
        ("**Urgent** surgical evaluation." if urgent else "Surgical evaluation.")
        + " *(IWGDF/IDSA 2023)*",
        "Antibiotic duration by surgical context: no bone resection **6 weeks**; resection with "
        "a positive residual-bone margin **about 3 weeks**; all infected bone removed with clean "
        "margins **a short course (days)**. Tailor to the bone culture; oral step-down is "
        "acceptable. *(IWGDF/IDSA 2023, B)*",
    ]
    dose = vancomycin_range_text(f)
    missing = vancomycin_missing(f)
    empiric = "Empiric regimen if needed: vancomycin 15–20 mg/kg IV every 12 h plus ceftriaxone " \
              "2 g IV daily"
    if dose and not missing:
        lines.append(f"{empiric}: {dose} of vancomycin. Use AUC-guided dosing (target AUC "
                     "400–600 mg·h/L) with pharmacy. *(Rybak 2020)*")
    else:
        lines.append(f"{empiric}. No vancomycin dose shown: " + "; ".join(missing)
                     + ". *(Rybak 2020)*")
    if fixed_dosing_inappropriate(f, "renal-impairment" in a.flags):
        lines.append("Renal function is reduced: fixed 12-hourly vancomycin dosing is "
                     "inappropriate; dose by AUC with pharmacy. *(Rybak 2020)*")
    if "recent-antibiotics" in a.flags:
        lines.append("Recent antibiotics lower culture yield. *(IWGDF/IDSA 2023 rationale, B)*")
    return CardSpec("Osteomyelitis management: surgical evaluation; antibiotic duration depends "
                    "on resection", _companion_indicator(a), "\n".join(f"- {x}" for x in lines),
                    "management", ["M-OM"])


def ho_management(a: Assessment, patient_id: str) -> CardSpec | None:
    """Management when HO is present or mature and favored (clinical-rules.md §9). JFAS 2015/2016;
    Kavanagh; PMC6500709 (indomethacin: prophylaxis-level); openFDA labels (NSAID gates)."""
    if a.heterotopic_ossification not in ("present", "mature") or "ho-favored" not in a.flags:
        return None
    lines = [
        "Offloading and footwear for prominences; physical therapy for range of motion; "
        "surveillance radiographs. *(JFAS 2016)*",
        "Excision of mature, symptomatic or ulcerating HO, with single-fraction radiation "
        "(7–8 Gy) within about 48 h after excision to prevent recurrence. *(JFAS 2015; Kavanagh)*",
    ]
    failures = nsaid_gate_failures(a.facts, "renal-impairment" in a.flags)
    suggestions: list[Suggestion] = []
    if failures:
        lines.append("NSAID not advised: " + "; ".join(failures) + ". Prefer radiation after "
                     "excision. *(indomethacin label, openFDA)*")
        head = "HO favored over OM: offloading, therapy; excision with radiation if needed"
    else:
        lines.append("Every NSAID gate passes: indomethacin 25 mg by mouth three times daily for "
                     "3–6 weeks may be considered; the evidence is prophylaxis-level "
                     "*(PMC6500709; indomethacin label, openFDA)*.")
        resource = indomethacin_request(patient_id)
        suggestions.append(Suggestion("Draft indomethacin 25 mg PO TID for 3–6 weeks",
                                      (Action("create", "Draft medication request: indomethacin "
                                              "25 mg three times daily", resource),),
                                      None, "M-HO", ("http://www.nlm.nih.gov/research/umls/"
                                                     "rxnorm|197817",)))
        head = "HO favored over OM: offloading, therapy; indomethacin may be considered"
    return CardSpec(head, _companion_indicator(a), "\n".join(f"- {x}" for x in lines),
                    "management", ["M-HO"], suggestions, "at-most-one")


def patient_view_cards(a: Assessment, patient_id: str, unavailable: Mapping[str, str],
                       notes: list[str]) -> list[CardSpec]:
    cards = [assessment_card(a, unavailable, notes)]
    cards += next_test_cards(a, patient_id)
    for card in (om_management(a), ho_management(a, patient_id)):
        if card is not None:
            cards.append(card)
    return cards


_ = (BUTALIA_2008, HIP_HO_REVIEW, IWGDF_2023, JFAS_2015, KAVANAGH, OPENFDA_NSAID, RYBAK_2020,
     Any)  # cited in the card texts above

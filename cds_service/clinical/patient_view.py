"""Patient-view cards (clinical-rules.md §8, §9, §11): assessment, next tests, management."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..cards import Action, CardSpec, Suggestion, md
from . import facts as th
from .finding import Finding
from .gates import (
    fixed_dosing_inappropriate,
    nsaid_gate_failures,
    vancomycin_missing,
    vancomycin_range_text,
)
from .ho_rules import ho_not_detected
from .nexttests import probe_to_bone_advice, t_bc, t_bx, t_lab, t_mri_alt, t_scan_ho, t_xr
from .orders import indomethacin_request
from .result import RuleResult
from .rules import Assessment
from .sources import (
    BUTALIA_2008,
    HIP_HO_REVIEW,
    IWGDF_2023,
    JFAS_2015,
    KAVANAGH,
    OPENFDA_NSAID,
    RYBAK_2020,
    Source,
)
from .vocabulary import (
    CONDITIONS,
    FLAG_SENTENCES,
    IMAGING_FINDING_WORDS,
    IMAGING_WORDS,
    day_month,
    describe,
    ho_phrase,
    imaging_text,
    join_words,
    note_refs,
    note_text,
    om_phrase,
    value_text,
    word,
)

WARNING_TIERS = ("probable", "confirmed")
# Finding lines the assessment card shows at most; the rest stay in the extension's evidence.
MAX_FINDING_LINES = 8


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
    prefix = "SEVERE INFECTION. " if "severe-infection" in a.flags else ""
    return (f"{prefix}{side_word(a)} {amputation_kind(a)} {when}: "
            f"{om_phrase(a.osteomyelitis)}; {ho_phrase(a.heterotopic_ossification)}")


def indicator(a: Assessment) -> str:
    if "severe-infection" in a.flags:
        return "critical"
    return "warning" if a.osteomyelitis in WARNING_TIERS else "info"


#####################################################################
# The assessment card (clinical-rules.md §11)


def _result(a: Assessment, rule_id: str | None) -> RuleResult | None:
    return next((r for r in a.results if r.id == rule_id), None)


def _on_the(item: Finding, now: datetime) -> str:
    """"on the 10 Nov radiograph"."""
    kind = IMAGING_WORDS.get(item.modality or "", "imaging")
    return f"on the {day_month(item.when, now)} {kind}"


def _sign(item: Finding, now: datetime) -> str:
    """A supporting sign in a reason: "ESR 85 mm/h", "positive probe-to-bone"."""
    if item.value is not None:
        return f"{word(item.concept, item.label)} {value_text(item)}"
    if item.modality:
        shown = IMAGING_FINDING_WORDS.get(item.concept, word(item.concept, item.label))
        prefix = "possible " if item.polarity == "uncertain" else ""
        return f"{prefix}{shown} {_on_the(item, now)}"
    if item.concept == "exposed-bone":
        return "exposed bone"
    return f"positive {word(item.concept, item.label)}"


def om_reason(a: Assessment) -> str:
    """The one deciding reason for the OM tier, in words with its evidence."""
    now = a.facts.record.now
    result = _result(a, a.deciding_om)
    if result is None:
        return "no rule decides with the data available"
    evidence = result.evidence
    if result.id == "OM-1":
        return f"{_sign(evidence[0], now)} after the amputation, {day_month(evidence[0].when, now)}"
    if result.id == "OM-2":
        contact = [e for e in evidence if e.concept in ("probe-to-bone", "exposed-bone")]
        support = [e for e in evidence if e not in contact]
        return f"{_sign(contact[0], now)} with " + " and ".join(_sign(e, now) for e in support[:2])
    if result.id in ("OM-3", "OM-5"):
        item = evidence[0]
        text = (f"confluent marrow replacement {_on_the(item, now)} (osteomyelitis in 73% at "
                "2 months)" if result.id == "OM-3" else
                f"normal marrow {_on_the(item, now)} (LR− 0.14)")
        other = _result(a, "OM-2")
        if result.id == "OM-5" and other is not None:
            text += "; but " + om_reason_of(a, other)
        return text
    if result.id == "OM-4":
        signs = [e for e in evidence if e.concept not in CONDITIONS]
        if a.facts.has_wound:
            return "a stump wound with " + join_words([_sign(e, now) for e in signs], 160)
        return "an osteomyelitis pattern on imaging with raised markers, without a wound"
    if result.id == "OM-6":
        return "no stump wound, no raised ESR or CRP and no osteomyelitis pattern"
    if result.id == "OM-7":
        return "coded as an active condition" + (" (provisional)" if result.effect == "possible"
                                                 else "")
    if result.id == "S-2":
        return (f"day {a.facts.days} after the amputation: markers and radiographs cannot be "
                "read before day 14")
    return result.explanation


def om_reason_of(a: Assessment, result: RuleResult) -> str:
    now = a.facts.record.now
    contact = [e for e in result.evidence if e.concept in ("probe-to-bone", "exposed-bone")]
    support = [e for e in result.evidence if e not in contact]
    return f"{_sign(contact[0], now)} with " + " and ".join(_sign(e, now) for e in support[:2])


def ho_reason(a: Assessment) -> str:
    """The one deciding reason for the HO status."""
    now = a.facts.record.now
    result = _result(a, a.deciding_ho)
    status = a.heterotopic_ossification
    if result is not None and result.id in ("HO-1", "HO-5"):
        imaging = [e for e in result.evidence if e.modality]
        if not imaging:
            return "coded as an active condition"
        text = _sign(imaging[0], now)
        return text + ("" if result.id == "HO-5" else "; says nothing about infection")
    if result is not None and result.id == "HO-4":
        return "indirect signs only: " + result.explanation.split(": ", 1)[-1].rstrip(".")
    if status == "not-detected":
        negative = ho_not_detected(a.facts)
        if negative:
            return f"none {_on_the(negative[0], now)}"
        return "none on imaging from day 21 on"
    return "no radiograph, CT or MRI from day 21 after the amputation to judge it"


def _verdict(phrase: str, reason: str, source: Source | None) -> str:
    cite = f" *({source.cite()})*" if source else ""
    return f"**{phrase[0].upper()}{phrase[1:]}**: {reason}{cite}"


def _imaging_lines(a: Assessment, refs: list[str]) -> list[tuple[str, str]]:
    """(ref, words) for each imaging report the card names, newest first: those the rules used
    and every report of the last 90 days."""
    record = a.facts.record
    negatives = []
    if a.osteomyelitis in ("not-supported", "unlikely"):
        negatives.append("om-imaging-pattern")
    if a.heterotopic_ossification == "not-detected":
        negatives.append("soft-tissue-ossification")
    recent = [r for r in record.imaging_reports(IMAGING_WORDS, th.IMAGING) if r.has_report]
    wanted = set(refs) | {r.ref for r in recent}
    reports = [r for r in record.imaging_reports(IMAGING_WORDS) if r.ref in wanted]
    # a report not fully read is never negative evidence (clinical-rules.md §2)
    return [(r.ref, imaging_text(r.kind, r.when, r.findings, record.now,
                                 negatives if r.read else (), not r.read)) for r in reports]


def _findings(a: Assessment) -> tuple[list[str], list[str], set[str]]:
    """The key findings as lines of words, their references, and the references already shown
    (so a flag does not repeat them)."""
    f = a.facts
    record = f.record
    now = record.now
    evidence = [item for result in a.results for item in result.evidence]
    lines: list[str] = []
    refs: list[str] = []
    amp = record.amputation
    if amp is not None:
        refs.append(amp.ref)
        if amp.when is not None:
            lines.append(f"{(record.side or 'side unknown')} {amputation_kind(a)}, "
                         f"{day_month(amp.when, now)}")
    seen: set[tuple[str, str]] = {(amp.ref, "")} if amp else set()

    def add(group: list[Finding], label: str = "") -> None:
        fresh = [i for i in group if (i.ref, i.concept) not in seen]
        if not fresh:
            return
        seen.update((i.ref, i.concept) for i in fresh)
        refs.extend(i.ref for i in fresh)
        if label:  # one line for signs of one kind: "SIRS signs: temperature 38.9 °C, ..."
            lines.append(label + "; ".join(describe(i, now) for i in fresh))
        else:
            lines.extend(describe(i, now) for i in fresh)

    add([i for i in (f.ptb, f.exposed_bone) if i is not None])
    for ref, text in _imaging_lines(a, [i.ref for i in evidence if i.modality]):
        lines.append(text)
        refs.append(ref)
    add([i for i in (f.ulcer_area, f.esr, f.crp, f.alp) if i is not None])
    add(list(f.sirs), "SIRS signs: ")
    add(list(f.wound))
    add([i for i in evidence if not i.modality])
    return lines, refs, {r for r, _ in seen} | set(refs)


def _flag_line(a: Assessment, flag: str, shown: set[str]) -> tuple[str, list[str]]:
    sentence, source = FLAG_SENTENCES[flag]
    now = a.facts.record.now
    extra = [e for e in a.flag_evidence.get(flag, ()) if e.ref not in shown]
    # a condition that raises its own flag (Charcot, PAD) adds only its date
    words = [f"on record {day_month(e.when, now)}" if flag in ("charcot", "pad")
             else describe(e, now) for e in extra]
    seen = " (" + "; ".join(dict.fromkeys(words)) + ")" if words else ""
    return f"- {sentence}{seen} *({source.cite()})*", [e.ref for e in extra]


def missing_data(a: Assessment, unavailable: Mapping[str, str], notes: list[str]) -> list[str]:
    """What data was missing or unusable, in plain words (the card never guesses); plain text,
    escaped where it is shown."""
    f = a.facts
    record = f.record
    out = [f"{key}: {why}" for key, why in unavailable.items()]
    if record.amputation is not None and record.amputation.when is None:
        out.append("amputation date unknown (treated as long established)")
    if record.side is None:
        out.append("amputation side unknown (findings from either side used)")
    if f.esr is None:
        out.append("no ESR in 30 days")
    if f.crp is None:
        out.append("no CRP in 30 days")
    if not record.imaging_reports(("foot-radiograph",), th.IMAGING):
        out.append("no foot radiograph in 90 days")
    if f.has_wound and f.ptb is None:
        out.append("no probe-to-bone result in 30 days")
    out += notes
    return out


def assessment_card(a: Assessment, unavailable: Mapping[str, str], notes: list[str]) -> CardSpec:
    om = _result(a, a.deciding_om)
    ho = _result(a, a.deciding_ho)
    parts = [_verdict(om_phrase(a.osteomyelitis), om_reason(a), om.source if om else None)
             + "  \n"
             + _verdict(ho_phrase(a.heterotopic_ossification), ho_reason(a),
                        ho.source if ho else None)]
    lines, refs, shown = _findings(a)
    if lines:
        kept = lines[:MAX_FINDING_LINES]
        more = len(lines) - len(kept)
        parts.append("\n".join(f"- {line}" for line in kept)
                     + (f"\n- and {more} more in the record" if more else ""))
    flag_lines = []
    for flag in a.flags:
        line, extra = _flag_line(a, flag, shown)
        flag_lines.append(line)
        refs += extra
    if flag_lines:
        parts.append("\n".join(flag_lines))
    ignored = _result(a, "OM-8")
    if ignored is not None:
        parts.append(f"{ignored.explanation} *({ignored.source.cite() if ignored.source else ''})*"
                     .replace(" *()*", ""))
    fetched = [f"{key}: {why}" for key, why in unavailable.items()]
    missing = [note_text(m) for m in fetched] + missing_data(a, {}, []) + [note_text(n)
                                                                            for n in notes]
    if missing:
        parts.append("**Missing or not read:** " + "; ".join(missing) + ".")
    if a.rule_ids:
        parts.append("Rules: " + ", ".join(a.rule_ids))
    extension = a.extension()
    evidence = list(dict.fromkeys(refs + note_refs(notes)))
    if evidence:
        extension["evidence"] = evidence
    return CardSpec(summary(a), indicator(a), "\n\n".join(parts), "assessment", a.rule_ids,
                    assessment=extension)


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
        lines.append("NSAID not advised: " + "; ".join(md(f, 200) for f in failures)
                     + ". Prefer radiation after "
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

"""Patient-view cards (clinical-rules.md §8, §9, §11): assessment, next tests, management."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache

from ..cards import Action, CardSpec, Suggestion, md
from . import facts as th
from . import vocabulary as v
from .facts import XR_CT_MRI
from .finding import Finding
from .gates import (
    fixed_dosing_inappropriate,
    nsaid_gate_failures,
    vancomycin_missing,
    vancomycin_range_text,
)
from .ho_rules import ho_not_detected
from .nexttests import (
    probe_to_bone_advice,
    short_name,
    t_bc,
    t_bx,
    t_lab,
    t_mri_alt,
    t_scan_ho,
    t_xr,
)
from .orders import indomethacin_request
from .result import RuleResult
from .rules import Assessment
from .sources import Source, cited
from .vocabulary import (
    CONDITIONS,
    IMAGING_FINDING_WORDS,
    IMAGING_WORDS,
    day_month,
    describe,
    flag_sentence,
    ho_phrase,
    imaging_text,
    join_words,
    not_discriminating,
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
    for result in a.results:  # the first result of the rule
        if result.id == rule_id:
            return result
    return None


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
    unread = [r for r in a.facts.record.imaging_reports(XR_CT_MRI, min_days_after_amputation=21)
              if r.has_report and not r.read]
    return v.HO_UNREAD_IMAGING if unread else v.HO_NO_IMAGING


# The citation of a few sources, built once per distinct tuple of the rulebook's Source constants
# (a Source holds no record content).
_citation = lru_cache(maxsize=256)(cited)


def _verdict(phrase: str, reason: str, sources: tuple[Source, ...]) -> str:
    cite = _citation(*sources) if sources else ""
    return f"**{phrase[0].upper()}{phrase[1:]}**: {reason}{cite}"


def _ho_sources(a: Assessment, result: RuleResult | None) -> tuple[Source, ...]:
    """The deciding HO rule's source; without one ("no heterotopic ossification seen",
    indeterminate), the timing of radiographic HO that the 21-day window rests on."""
    if result is not None and result.source is not None:
        return (result.source,)
    return v.HO_NOT_SEEN_SOURCES


def _imaging_lines(a: Assessment, refs: list[str]) -> list[tuple[str, str]]:
    """(ref, words) for each imaging report the card names, newest first: those the rules used
    and every report of the last 90 days."""
    record = a.facts.record
    negatives = []
    if a.osteomyelitis in ("not-supported", "unlikely"):
        negatives.append("om-imaging-pattern")
    if a.heterotopic_ossification == "not-detected":
        negatives.append("soft-tissue-ossification")
    every = record.imaging_reports(IMAGING_WORDS)  # newest first, and so is any part of it
    wanted = set(refs) | {r.ref for r in every
                          if r.has_report and record.within(r.when, th.IMAGING)}
    reports = [r for r in every if r.ref in wanted]
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
        if label:  # one line for signs of one kind: "SIRS signs, 20 Nov: temperature 38.9 °C; ..."
            dates = {day_month(i.when, now) for i in fresh}
            if len(dates) == 1:
                lines.append(f"{label}, {dates.pop()}: "
                             + "; ".join(f"{word(i.concept, i.label)} {value_text(i)}"
                                         if i.value is not None else describe(i, now)
                                         for i in fresh))
            else:
                lines.append(f"{label}: " + "; ".join(describe(i, now) for i in fresh))
        else:
            lines.extend(describe(i, now) for i in fresh)

    add([i for i in (f.ptb, f.exposed_bone) if i is not None])
    for ref, text in _imaging_lines(a, [i.ref for i in evidence if i.modality]):
        lines.append(text)
        refs.append(ref)
    add([i for i in (f.ulcer_area, f.esr, f.crp, f.alp) if i is not None])
    add(list(f.sirs), "SIRS signs")
    add(list(f.wound))
    add([i for i in evidence if not i.modality])
    return lines, refs, {r for r, _ in seen} | set(refs)


def _flag_line(a: Assessment, flag: str, shown: set[str]) -> tuple[str, list[str]]:
    now = a.facts.record.now
    extra = [e for e in a.flag_evidence.get(flag, ()) if e.ref not in shown]
    # a condition that raises its own flag (Charcot, PAD) adds only its date
    words = [f"on record {day_month(e.when, now)}" if flag in ("charcot", "pad")
             else describe(e, now) for e in extra]
    return flag_sentence(flag, "; ".join(dict.fromkeys(words))), [e.ref for e in extra]


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
    parts = [_verdict(om_phrase(a.osteomyelitis), om_reason(a),
                      (om.source,) if om and om.source else ())
             + "  \n"
             + _verdict(ho_phrase(a.heterotopic_ossification), ho_reason(a), _ho_sources(a, ho))]
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
    parts += flag_lines  # one paragraph each, apart from the findings list
    ignored = _result(a, "OM-8")
    # a bone scan the HO-6 flag line already calls non-discriminating is not named twice
    noted = [e for e in ignored.evidence if not (e.concept == "three-phase-bone-scan" and
                                                 "bone-scan-nondiscriminating" in a.flags)] \
        if ignored is not None else []
    if ignored is not None and noted:
        parts.append(not_discriminating(noted).rstrip(".")
                     + (cited(ignored.source) if ignored.source else "") + ".")
    fetched = [f"{key}: {why}" for key, why in unavailable.items()]
    missing = [note_text(m) for m in fetched] + missing_data(a, {}, []) + [note_text(n)
                                                                            for n in notes]
    if missing:
        parts.append("**Missing or not read:** " + "; ".join(missing) + ".")
    rule_ids = a.rule_ids
    if rule_ids:
        parts.append(v.RULES_LINE.format(rules=", ".join(rule_ids)))
    extension = a.extension()
    evidence = list(dict.fromkeys(refs + note_refs(notes)))
    if evidence:
        extension["evidence"] = evidence
    return CardSpec(summary(a), indicator(a), "\n\n".join(parts), "assessment", rule_ids,
                    assessment=extension)


def _companion_indicator(a: Assessment) -> str:
    return "info" if indicator(a) == "info" else "warning"


def next_test_cards(a: Assessment, patient_id: str) -> list[CardSpec]:
    cards = []
    others = t_bc(a, patient_id) + t_xr(a, patient_id) + t_lab(a, patient_id) + \
        t_bx(a, patient_id) + t_scan_ho(a, patient_id)
    # one button per order: a bone scan suggested for HO maturity is not offered again as an
    # alternative to MRI (its T-ALT button would create the same ServiceRequest)
    ordered = {s.codes for s in others}
    imaging = [s for s in t_mri_alt(a, patient_id) if s.rule != "T-ALT" or s.codes not in ordered]
    if imaging:
        text = [v.NEXT_IMAGING_MRI]
        if "renal-impairment" in a.flags:
            text.append(v.NO_GADOLINIUM)
        if any(s.rule == "T-ALT" for s in imaging):
            text.append(v.NEXT_IMAGING_CHARCOT if "charcot" in a.flags
                        else v.NEXT_IMAGING_ALTERNATIVES)
        rules = sorted({s.rule for s in imaging if s.rule})
        cards.append(CardSpec(v.NEXT_IMAGING_SUMMARY, _companion_indicator(a),
                              "\n\n".join(text), "next-tests", rules, imaging, "at-most-one"))
    advice = probe_to_bone_advice(a)
    if others or advice:
        lines = []
        for rule in dict.fromkeys(s.rule for s in others if s.rule):
            reason = v.NEXT_TEST_REASONS[rule]
            if rule == "T-BX" and "severe-infection" in a.flags:
                reason += v.BIOPSY_SEVERE
            lines.append(f"- {reason}")
        if advice:
            lines.append(f"- {advice}")
        rules = list(dict.fromkeys(s.rule for s in others if s.rule))
        cards.append(CardSpec(next_tests_summary(others, advice is not None),
                              _companion_indicator(a), "\n".join(lines), "next-tests", rules,
                              others, "any"))
    return cards


def next_tests_summary(suggestions: list[Suggestion], probe_to_bone: bool) -> str:
    """"Next tests: foot radiograph, CRP and bone biopsy; a bedside probe-to-bone test": the
    tests by their short names, the first ones and "and N more" when they do not fit (never a
    list cut in the middle, clinical-rules.md §11)."""
    names = [short_name(s) for s in suggestions]
    if not names:
        return f"Next step: {v.PROBE_TO_BONE_WORDS}"
    head = "Next tests: " if len(names) > 1 else "Next test: "
    tail = f"; {v.PROBE_TO_BONE_WORDS}" if probe_to_bone else ""
    return head + join_words(names, SUMMARY_BUDGET - len(head) - len(tail)) + tail


SUMMARY_BUDGET = 139  # a summary is under 140 characters (CDS Hooks 2.0)


def om_management(a: Assessment) -> CardSpec | None:
    """Management when OM is probable or confirmed (clinical-rules.md §9). IWGDF 2023; Rybak
    2020. No antibiotic order is suggested."""
    if a.osteomyelitis not in WARNING_TIERS:
        return None
    f = a.facts
    urgent = "severe-infection" in a.flags or f.record.conditions("abscess")
    lines = [v.OM_DURATION.format(surgery=v.OM_SURGERY[bool(urgent)])]
    dose = vancomycin_range_text(f)
    missing = vancomycin_missing(f)
    if dose and not missing:
        lines.append(v.OM_EMPIRIC_DOSE.format(dose=dose))
    else:
        lines.append(v.OM_EMPIRIC_NO_DOSE.format(missing="; ".join(missing)))
    if fixed_dosing_inappropriate(f, "renal-impairment" in a.flags):
        lines.append(v.FIXED_DOSING)
    if "recent-antibiotics" in a.flags:
        lines.append(v.RECENT_ANTIBIOTICS_YIELD)
    return CardSpec(v.OM_MANAGEMENT_SUMMARY[bool(urgent)], _companion_indicator(a),
                    "\n".join(f"- {x}" for x in lines), "management", ["M-OM"])


def ho_management(a: Assessment, patient_id: str) -> CardSpec | None:
    """Management when HO is present or mature and favored (clinical-rules.md §9). JFAS 2015/2016;
    Kavanagh; PMC6500709 (indomethacin: prophylaxis-level); openFDA labels (NSAID gates)."""
    if a.heterotopic_ossification not in ("present", "mature") or "ho-favored" not in a.flags:
        return None
    lines = [v.HO_CARE, v.HO_EXCISION]
    failures = nsaid_gate_failures(a.facts, "renal-impairment" in a.flags)
    suggestions: list[Suggestion] = []
    if failures:
        lines.append(v.NSAID_NOT_ADVISED.format(gates="; ".join(md(f.text, 200) for f in failures)))
        head = v.HO_MANAGEMENT_SUMMARY
    else:
        lines.append(v.INDOMETHACIN_MAY_BE_CONSIDERED)
        resource = indomethacin_request(patient_id)
        suggestions.append(Suggestion(v.INDOMETHACIN_LABEL,
                                      (Action("create", v.INDOMETHACIN_ACTION, resource),),
                                      None, "M-HO", ("http://www.nlm.nih.gov/research/umls/"
                                                     "rxnorm|197817",)))
        head = v.HO_MANAGEMENT_SUMMARY_NSAID
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


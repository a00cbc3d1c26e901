"""The assessment (clinical-rules.md §4–7): the relevance gate, the OM tier, the HO status,
the derived HO flags (HO-2, HO-7) and the confounder flags.

The rules themselves are small named functions in :mod:`om_rules` (S-*, OM-*) and
:mod:`ho_rules` (HO-*), each citing its source and returning a :class:`RuleResult` with its
evidence and one sentence for the card. :func:`assess` evaluates them all and decides in the
rulebook's order; "both" (OM and HO) is a possible answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import facts as th
from .facts import Facts
from .finding import Finding
from .ho_rules import ho_1, ho_4, ho_5, ho_6, ho_not_detected
from .om_rules import om_1, om_2, om_3, om_4, om_5, om_6, om_7, om_8, s_1, s_2
from .result import RuleResult
from .sources import EANM_2024, JFAS_2016, SCIRE


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
        """The ``tma-bone-assessment`` extension object (product-contract.md); ``flags`` and
        ``rules`` are omitted when empty."""
        value: dict[str, object] = {
            "osteomyelitis": self.osteomyelitis,
            "heterotopicOssification": self.heterotopic_ossification,
        }
        if self.flags:  # CDS Hooks 2.0: JSON elements SHALL NOT be empty (omitted instead)
            value["flags"] = list(self.flags)
        if self.rule_ids:
            value["rules"] = self.rule_ids
        value["side"] = self.facts.record.side or "unknown"
        if self.facts.days is not None:
            value["daysSinceAmputation"] = self.facts.days
        return value


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
HO_ORDER = ("HO-1", "HO-2", "HO-4", "HO-5", "HO-6", "HO-7")  # the rulebook has no HO-3
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
    fired += [ho_rules[i] for i in HO_ORDER if i in ho_rules]
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

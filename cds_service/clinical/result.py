"""What a rule returns: whether it fired, its evidence, one sentence and its source."""

from __future__ import annotations

from dataclasses import dataclass

from .finding import Finding
from .sources import Source


@dataclass(frozen=True, init=False)
class RuleResult:
    """``evidence`` are the findings (with their source references) the card shows."""

    id: str
    fired: bool
    explanation: str = ""
    evidence: tuple[Finding, ...] = ()
    source: Source | None = None
    effect: str | None = None  # tier or status this rule argues for

    def __init__(self, id: str, fired: bool, explanation: str = "",
                 evidence: tuple[Finding, ...] = (), source: Source | None = None,
                 effect: str | None = None) -> None:
        # The fields above, set once into the instance's dict (as Finding does; issue 17).
        self.__dict__.update(id=id, fired=fired, explanation=explanation, evidence=evidence,
                             source=source, effect=effect)


def not_fired(rule_id: str) -> RuleResult:
    """The result of a rule whose conditions do not hold (one shared, immutable instance per
    rule: most rules do not fire on a chart)."""
    result = _NOT_FIRED.get(rule_id)
    if result is None:
        result = _NOT_FIRED[rule_id] = RuleResult(rule_id, False)
    return result


_NOT_FIRED: dict[str, RuleResult] = {}

"""The foot-report corpus (tests/data/foot_reports.toml) and how the reader is held to it."""

from __future__ import annotations

import base64
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parent / "data" / "foot_reports.toml"
CONCEPTS = {
    "om": "om-imaging-pattern", "ho": "soft-tissue-ossification", "mature": "mature-ho-pattern",
    "confluent": "confluent-marrow-replacement", "normal_marrow": "normal-marrow",
    "phase1": "bone-scan-phase1-increased", "phase2": "bone-scan-phase2-increased",
    "phase3": "bone-scan-phase3-increased", "wbc": "leukocyte-scan-positive",
    "pet": "pet-positive",
}
MEDIA = {"plain": "text/plain", "html": "text/html", "rtf": "text/rtf"}


@dataclass(frozen=True)
class Excerpt:
    id: str
    modality: str
    layout: str
    format: str
    text: str
    expect: dict[str, str]  # concept id -> present / uncertain / negated

    def attachment(self) -> dict[str, Any]:
        """The excerpt as a FHIR Attachment in its format (UTF-8, base64)."""
        return {"contentType": f"{MEDIA[self.format]}; charset=utf-8",
                "data": base64.b64encode(self.text.encode("utf-8")).decode("ascii")}


def load() -> list[Excerpt]:
    with CORPUS.open("rb") as handle:
        items = tomllib.load(handle)["report"]
    return [Excerpt(i["id"], i["modality"], i["layout"], i.get("format", "plain"), i["text"],
                    {CONCEPTS[k]: v for k, v in i.get("expect", {}).items()}) for i in items]


def agrees(expected: str | None, read: str | None) -> bool:
    """An unlisted concept (expected None) may be read as absent or negated, nothing else."""
    if expected is None:
        return read in (None, "negated")
    return expected == read

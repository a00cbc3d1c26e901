"""Foot imaging in a record: reports and studies with their kind, date, side and findings
(clinical-rules.md §2 "Imaging findings").

Findings come from report conclusion codes, from finding Observations (linked to their report,
or standing alone with the modality their concept implies) and from report text read with
negation and uncertainty handling (:mod:`reporttext`). An ImagingStudy without a report says the
study was done but contributes no finding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..fhir.resources import as_list, reference_id, resource_date
from .finding import Finding
from .finding import ref as _ref
from .laterality import side_from_codes, side_from_text, side_of

MODALITY_KIND = {"DX": "foot-radiograph", "CR": "foot-radiograph", "MR": "foot-mri",
                 "CT": "foot-ct", "NM": "three-phase-bone-scan", "PT": "fdg-pet"}
IMAGING_KINDS = ("foot-radiograph", "foot-mri", "foot-ct", "three-phase-bone-scan",
                 "leukocyte-scan", "fdg-pet")
# A structured imaging finding charted without a link to its report implies its modality.
IMPLIED_MODALITY = {
    "confluent-marrow-replacement": "foot-mri", "normal-marrow": "foot-mri",
    "bone-scan-phase1-increased": "three-phase-bone-scan",
    "bone-scan-phase2-increased": "three-phase-bone-scan",
    "bone-scan-phase3-increased": "three-phase-bone-scan",
    "leukocyte-scan-positive": "leukocyte-scan", "pet-positive": "fdg-pet",
}


@dataclass
class ImagingReport:
    """A foot imaging report or study: kind, date, side, and the findings it reports."""

    ref: str
    kind: str
    when: datetime | None
    side: str | None
    has_report: bool
    findings: dict[str, str] = field(default_factory=dict)  # concept -> polarity
    text: str = ""  # the report's conclusion and plain-text forms (shown by the timeline)


class ImagingMixin:
    """The imaging part of :class:`~cds_service.clinical.record.Record`.

    It reads the Record's own indexes (``_reports``, ``_studies``, ``_observations``) and its
    helpers (``_check``, ``_usable``, ``_polarity``, ``_date``, ``same_side``, ``within``).
    """

    def _kind_of_report(self, report: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
        kinds = self.mappings.concepts_of(report.get("code")) & set(IMAGING_KINDS)
        study = None
        for ref in as_list(report.get("imagingStudy")):
            _, ident = reference_id(ref)
            if ident in self._studies:
                study = self._studies[ident]
        if not kinds and study is not None:
            kinds = self._kinds_of_study(study)
        return (sorted(kinds)[0] if kinds else None), study

    def _kinds_of_study(self, study: dict[str, Any]) -> set[str]:
        kinds = self.mappings.concepts_of(study.get("procedureCode")) & set(IMAGING_KINDS)
        if not kinds:
            modalities = [m.get("code") for m in as_list(study.get("modality"))
                          if isinstance(m, dict)]
            for series in as_list(study.get("series")):
                if isinstance(series, dict) and isinstance(series.get("modality"), dict):
                    modalities.append(series["modality"].get("code"))
            for modality in modalities:
                kind = self.mappings.concept_of_modality(str(modality)) or MODALITY_KIND.get(
                    str(modality))
                if kind:
                    kinds.add(kind)
        return kinds

    @staticmethod
    def _study_side(study: dict[str, Any]) -> str | None:
        for series in as_list(study.get("series")):
            if not isinstance(series, dict):
                continue
            laterality = series.get("laterality")
            if isinstance(laterality, dict):
                code = str(laterality.get("code", "")).upper()
                side = {"L": "left", "R": "right"}.get(code) or side_from_codes(
                    {"coding": [laterality]})
                if side:
                    return side
            side = side_from_codes({"coding": [series.get("bodySite")]}) if isinstance(
                series.get("bodySite"), dict) else None
            if side:
                return side
        return None

    def _read_imaging(self) -> list[ImagingReport]:
        from .reporttext import CuePhrases, Mention, read_mentions

        cues = CuePhrases.build(self.mappings.text.negation, self.mappings.text.post_negation,
                                self.mappings.text.uncertainty, self.mappings.text.scope_breakers)
        phrases = {cid: c.phrases for cid, c in self.mappings.concepts.items() if c.phrases}
        reports: list[ImagingReport] = []
        other_side: list[ImagingReport] = []
        self.imaging_other_side = other_side
        reported_studies = set()
        other_studies = set()  # studies of other-side reports (drawn with their report)
        results_of: dict[str, ImagingReport] = {}
        for report in self._reports:
            kind, study = self._kind_of_report(report)
            if kind is None or not self._check(report):
                continue
            texts = [report.get("conclusion")]
            for form in as_list(report.get("presentedForm")):
                if isinstance(form, dict) and str(form.get("contentType", "")).startswith(
                        "text/plain"):
                    texts.append(_decode_attachment(form))
            side = (self._study_side(study) if study else None) or side_of(report) or \
                side_from_text((report.get("code") or {}).get("text"))
            item = ImagingReport(_ref(report), kind, resource_date(report), side, True)
            item.text = "\n\n".join(t for t in texts if isinstance(t, str) and t)
            for cid in self.mappings.concepts_of(report.get("conclusionCode")):
                item.findings[cid] = "positive"
            for text in texts:
                if not isinstance(text, str) or not text:
                    continue
                for cid, mention in read_mentions(text, phrases, cues).items():
                    polarity = {Mention.PRESENT: "positive", Mention.UNCERTAIN: "uncertain",
                                Mention.NEGATED: "negative"}[mention]
                    if _stronger(polarity, item.findings.get(cid)):
                        item.findings[cid] = polarity
            if not self.same_side(side):
                other_side.append(item)  # shown as ignored (timeline), never used by a rule
                if study is not None:
                    other_studies.add(str(study.get("id")))
                continue
            if study is not None:
                reported_studies.add(str(study.get("id")))
            for ref in as_list(report.get("result")):
                _, ident = reference_id(ref)
                if ident:
                    results_of[f"Observation/{ident}"] = item
            reports.append(item)
        for ident, study in self._studies.items():
            if ident in reported_studies:
                continue
            side = self._study_side(study)
            kinds = self._kinds_of_study(study)
            if not kinds:
                continue
            if self.same_side(side):
                if not self._check(study):
                    continue
                reports.append(ImagingReport(_ref(study), sorted(kinds)[0], resource_date(study),
                                             side, False))
            elif ident not in other_studies:
                other_side.append(ImagingReport(_ref(study), sorted(kinds)[0],
                                                resource_date(study), side, False))
        self._add_finding_observations(reports, results_of)
        return reports

    def _add_finding_observations(self, reports: list[ImagingReport],
                                  results_of: dict[str, ImagingReport]) -> None:
        finding_ids = {cid for cid, c in self.mappings.concepts.items() if c.phrases}
        for cid in finding_ids:
            for obs in self._observations.get(cid, ()):
                polarity = self._polarity(cid, obs)
                if polarity is None or not self._usable(obs):
                    continue
                ref = _ref(obs)
                parent = results_of.get(ref)
                if parent is not None:
                    if _stronger(polarity, parent.findings.get(cid)):
                        parent.findings[cid] = polarity
                    continue
                kind = IMPLIED_MODALITY.get(cid, "foot-radiograph")
                for derived in as_list(obs.get("derivedFrom")):
                    dkind, dident = reference_id(derived)
                    if dkind == "ImagingStudy" and dident in self._studies:
                        kind = sorted(self._kinds_of_study(self._studies[dident]) or {kind})[0]
                reports.append(ImagingReport(ref, kind, resource_date(obs), side_of(obs), True,
                                             {cid: polarity}))

    def imaging_reports(self, kinds: Iterable[str], days: float | None = None,
                        min_days_after_amputation: float | None = None,
                        reported_only: bool = False) -> list[ImagingReport]:
        """Same-side imaging of the given kinds, newest first."""
        wanted = set(kinds)
        out = [r for r in self.imaging if r.kind in wanted
               and (days is None or self.within(r.when, days))
               and (min_days_after_amputation is None
                    or self.after_amputation(r.when, min_days_after_amputation))
               and (r.has_report or not reported_only)]
        out.sort(key=lambda r: r.when or datetime.min.replace(tzinfo=self.now.tzinfo),
                 reverse=True)
        return out

    def imaging_findings(self, concept: str, kinds: Iterable[str], days: float | None = None,
                         min_days_after_amputation: float | None = None) -> list[Finding]:
        """Positive or uncertain imaging findings of ``concept`` on the given kinds of imaging."""
        out = []
        for report in self.imaging_reports(kinds, days, min_days_after_amputation):
            polarity = report.findings.get(concept)
            if polarity in ("positive", "uncertain"):
                out.append(Finding(concept, self.mappings.label(concept), report.ref,
                                   report.when, polarity=polarity, modality=report.kind,
                                   text=f"{self.mappings.label(report.kind)}: "
                                   + ("reported as possible" if polarity == "uncertain"
                                      else "reported")))
        return out


def _stronger(new: str, old: str | None) -> bool:
    rank = {"positive": 3, "uncertain": 2, "negative": 1}
    return rank[new] > rank.get(old or "", 0)


def _decode_attachment(form: dict[str, Any]) -> str | None:
    import base64
    import binascii

    data = form.get("data")
    if not isinstance(data, str):
        return None
    try:
        return base64.b64decode(data, validate=False).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None

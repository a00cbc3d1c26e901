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

from ..fhir.resources import as_list, coding_keys, reference_id, resource_date
from .finding import Finding
from .finding import ref as _ref
from .laterality import side_from_codes, side_from_text, side_of
from .reportformats import report_texts
from .reporttext import Mention, Reader

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
_IMAGING_KIND_SET = frozenset(IMAGING_KINDS)
_SERIES_SIDE = {"L": "left", "R": "right"}
_POLARITY = {Mention.PRESENT: "positive", Mention.UNCERTAIN: "uncertain",
             Mention.NEGATED: "negative"}


@dataclass
class ImagingReport:
    """A foot imaging report or study: kind, date, side, and the findings it reports."""

    ref: str
    kind: str
    when: datetime | None
    side: str | None
    has_report: bool
    findings: dict[str, str] = field(default_factory=dict)  # concept -> polarity
    text: str = ""  # the report's text as read, every format (shown by the timeline)
    # concept -> the statement that decided its reading (report text: shown escaped, never logged)
    evidence: dict[str, str] = field(default_factory=dict)
    # why parts of the report could not be read (no text quoted); a report with any unread part
    # is never negative evidence (clinical-rules.md §2: unread never counts as negative)
    unread: tuple[str, ...] = ()

    @property
    def read(self) -> bool:
        """A report whose every part was read (its silence about a finding is a negative)."""
        return self.has_report and not self.unread


class ImagingMixin:
    """The imaging part of :class:`~cds_service.clinical.record.Record`.

    It reads the Record's own indexes (``_reports``, ``_studies``, ``_observations``,
    ``_text_observations``), its helpers (``_check``, ``_usable``, ``_polarity``, ``_date``,
    ``same_side``, ``within``), ``fetch_attachment`` (None, or a function that fetches an
    attachment ``url`` on the same FHIR server within the hook's budget) and ``notes``.
    """

    def _kind_of_report(self, report: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
        kinds = self.mappings.concepts_of(report.get("code")) & _IMAGING_KIND_SET
        study = None
        for ref in as_list(report.get("imagingStudy")):
            _, ident = reference_id(ref)
            if ident in self._studies:
                study = self._studies[ident]
        if not kinds and study is not None:
            kinds = self._kinds_of_study(study)
        return (min(kinds) if kinds else None), study

    def _kinds_of_study(self, study: dict[str, Any]) -> set[str]:
        kinds = self.mappings.concepts_of(study.get("procedureCode")) & _IMAGING_KIND_SET
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
                side = _SERIES_SIDE.get(code) or side_from_codes(
                    {"coding": [laterality]})
                if side:
                    return side
            side = side_from_codes({"coding": [series.get("bodySite")]}) if isinstance(
                series.get("bodySite"), dict) else None
            if side:
                return side
        return None

    def _read_imaging(self) -> list[ImagingReport]:
        reader = Reader.from_mappings(self.mappings)
        text_map = self.mappings.text
        findings = self.mappings.text_findings
        observations = self._observations
        finding_observations = {str(o.get("id")) for cid in findings
                                for o in observations.get(cid, ())}
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
            side = (self._study_side(study) if study else None) or side_of(report) or \
                side_from_text((report.get("code") or {}).get("text"))
            item = ImagingReport(_ref(report), kind, resource_date(report), side, True)
            coded = False
            conclusion_codes = report.get("conclusionCode")
            for cid in self.mappings.concepts_of(conclusion_codes) if conclusion_codes else ():
                cid = text_map.conclusion_codes.get(cid, cid)
                if cid in findings:
                    item.findings[cid] = "positive"
                    coded = True
            extracted = report_texts(report, self.fetch_attachment)
            texts = extracted.texts
            linked = False
            own_side = self.same_side(side)
            for ref in as_list(report.get("result")):
                _, ident = reference_id(ref)
                if not ident:
                    continue
                if own_side:
                    results_of[f"Observation/{ident}"] = item
                narrative = self._text_observations.get(ident)
                if narrative is not None and self._check(narrative):
                    texts.append((self._result_section(narrative), narrative["valueString"]))
                elif ident in finding_observations:
                    linked = True
            reading = reader.read(texts)
            for cid, mention in reading.mentions.items():
                polarity = _POLARITY[mention]
                if _stronger(polarity, item.findings.get(cid)):
                    item.findings[cid] = polarity
                    item.evidence[cid] = reading.evidence[cid]
            item.text = texts[0][1] if len(texts) == 1 else "\n\n".join(t for _, t in texts)
            item.unread = tuple(extracted.unread)
            if not (texts or coded or linked or item.unread):
                item.unread = ("the report carries no text",)
            if not own_side:
                other_side.append(item)  # shown as ignored (timeline), never used by a rule
                if study is not None:
                    other_studies.add(str(study.get("id")))
                continue
            if study is not None:
                reported_studies.add(str(study.get("id")))
            for reason in item.unread:
                self.notes.append(f"{item.ref} ({self.mappings.label(kind)}): {reason}; "
                                  "findings unknown, not counted as negative")
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
        if finding_observations:
            self._add_finding_observations(reports, results_of)
        return reports

    def _result_section(self, observation: dict[str, Any]) -> str:
        """The section a result Observation's code implies (report-text.toml result_sections)."""
        sections = self.mappings.text.result_sections
        for key in coding_keys(observation.get("code")):
            if key in sections:
                return sections[key]
        return "findings"

    def _add_finding_observations(self, reports: list[ImagingReport],
                                  results_of: dict[str, ImagingReport]) -> None:
        for cid in self.mappings.text_findings:
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
        """Same-side imaging of the given kinds, newest first; ``reported_only``: only reports
        that were read in full (the ones whose silence about a finding means it is absent)."""
        wanted = set(kinds)
        out = [r for r in self.imaging if r.kind in wanted
               and (days is None or self.within(r.when, days))
               and (min_days_after_amputation is None
                    or self.after_amputation(r.when, min_days_after_amputation))
               and (r.read or not reported_only)]
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
    return _RANK[new] > _RANK.get(old or "", 0)


_RANK = {"positive": 3, "uncertain": 2, "negative": 1}

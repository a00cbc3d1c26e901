"""The benchmark's two requests, generated deterministically (seeded) from a fixed moment.

TYPICAL: a patient-view call for a diabetic patient with a left transmetatarsal amputation 50
days ago, about 120 lab Observations over 2 years (ESR, CRP, WBC, creatinine, eGFR, HbA1c, ALP),
4 radiology DiagnosticReports with conclusions, 2 ImagingStudies, 6 MedicationRequests and
conditions (diabetes, a foot ulcer, ...), sent with every prefetch key answered.

HEAVY: the same plus 5,000 unrelated lab Observations over 5 years (sodium, potassium, glucose,
...). The service's observations template filters by code, but a real EHR's prefetch may not, so
the 5,000 go into the ``observations`` Bundle anyway: the service must classify them cheaply.

The prefetch is built with :func:`cds_service.replay.build_request` against the service's own
discovery document, so it answers exactly the service's templates.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from cds_service.replay import build_request

SEED = 20261124
SERVICE_ID = "tma-bone-assessment"
HOOK = "patient-view"
PATIENT_ID = "bench-patient-1"
UNRELATED_COUNT = 5000

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
LEFT_FOOT = {"system": SNOMED, "code": "22335008", "display": "Left foot structure"}

# code, display, unit, reference low, reference high
ESR = ("4537-7", "Erythrocyte sedimentation rate by Westergren method", "mm/h", 0, 20)
CRP = ("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", "mg/L", 0, 5)
WBC = ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 4.0, 11.0)
CREATININE = ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.7, 1.3)
EGFR = ("98979-8", "Glomerular filtration rate/1.73 sq M.predicted (CKD-EPI 2021)",
        "mL/min/{1.73_m2}", 60, None)
HBA1C = ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.0, 5.6)
ALP = ("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma", "U/L",
       40, 129)

# Unrelated chemistry and haematology (not mapped by the service).
UNRELATED = (
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 136, 145, 139, 2.5),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.5, 5.1, 4.3, 0.4),
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70, 99, 165, 45),
    ("2075-0", "Chloride [Moles/volume] in Serum or Plasma", "mmol/L", 98, 107, 102, 2.5),
    ("1963-8", "Bicarbonate [Moles/volume] in Serum or Plasma", "mmol/L", 22, 29, 25, 2),
    ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", 7, 20, 19, 5),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 13.5, 17.5, 12.8, 1.1),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 150, 400, 265, 50),
    ("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "mg/dL", 8.6, 10.3, 9.3, 0.4),
    ("2885-2", "Protein [Mass/volume] in Serum or Plasma", "g/dL", 6.0, 8.3, 7.0, 0.5),
)


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


class _Builder:
    def __init__(self, now: datetime, seed: int, patient_id: str = PATIENT_ID,
                 tag: str = "") -> None:
        self.now = now.astimezone(UTC).replace(microsecond=0)
        self.rng = random.Random(seed)
        self.n = 0
        self.tag = tag  # distinct per generated record, so no resource id repeats
        self.subject = {"reference": f"Patient/{patient_id}"}
        self.resources: list[dict[str, Any]] = []

    def ago(self, days: float) -> str:
        if self.tag:  # a cold variant: every time a few minutes off, so no two charts match
            days += self.rng.uniform(0, 0.01)
        return (self.now - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def ident(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.tag}{self.n}"

    def lab(self, spec: tuple[Any, ...], value: float, days: float,
            prefix: str = "obs") -> dict[str, Any]:
        code, display, unit, low, high = spec[:5]
        value = round(value, 2 if value < 10 else 1 if value < 100 else 0)
        if high is not None and value > high:
            flag = ("H", "High")
        elif low is not None and value < low:
            flag = ("L", "Low")
        else:
            flag = ("N", "Normal")
        reference: dict[str, Any] = {}
        if low is not None:
            reference["low"] = {"value": low, "unit": unit, "system": UCUM, "code": unit}
        if high is not None:
            reference["high"] = {"value": high, "unit": unit, "system": UCUM, "code": unit}
        minutes = self.rng.randint(0, 600)
        return {
            "resourceType": "Observation",
            "id": self.ident(prefix),
            "meta": {"lastUpdated": self.ago(days - minutes / 1440 - 0.05)},
            "status": "final",
            "category": [_cc(CATEGORY, "laboratory", "Laboratory")],
            "code": _cc(LOINC, code, display),
            "subject": self.subject,
            "effectiveDateTime": self.ago(days),
            "issued": self.ago(days - minutes / 1440 - 0.04),
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
            "interpretation": [{"coding": [{"system": INTERPRETATION, "code": flag[0],
                                            "display": flag[1]}]}],
            "referenceRange": [reference],
        }

    def condition(self, system: str, code: str, display: str, days: float,
                  body_site: bool = False) -> None:
        resource: dict[str, Any] = {
            "resourceType": "Condition", "id": self.ident("cond"),
            "clinicalStatus": _cc(COND_CLINICAL, "active", "Active"),
            "verificationStatus": _cc(COND_VERIFICATION, "confirmed", "Confirmed"),
            "category": [_cc(COND_CATEGORY, "problem-list-item", "Problem List Item")],
            "code": _cc(system, code, display), "subject": self.subject,
            "onsetDateTime": self.ago(days), "recordedDate": self.ago(days - 1),
        }
        if body_site:
            resource["bodySite"] = [{"coding": [LEFT_FOOT], "text": "Left foot"}]
        self.resources.append(resource)

    def medication(self, code: str, display: str, status: str, days: float,
                   dosage: str) -> None:
        self.resources.append({
            "resourceType": "MedicationRequest", "id": self.ident("med"), "status": status,
            "intent": "order", "medicationCodeableConcept": _cc(RXNORM, code, display),
            "subject": self.subject, "authoredOn": self.ago(days),
            "dosageInstruction": [{"text": dosage}],
        })

    def report(self, cpt: tuple[str, str], days: float, conclusion: str,
               modality: str | None, body_site: bool = True) -> None:
        study_refs = None
        if modality is not None:
            sid = self.ident("img")
            series: dict[str, Any] = {
                "uid": f"1.2.826.0.1.3680043.8.498.{self.n}", "number": 1,
                "modality": {"system": DCM, "code": modality}, "numberOfInstances": 3,
            }
            if body_site:
                series["bodySite"] = LEFT_FOOT
            self.resources.append({
                "resourceType": "ImagingStudy", "id": sid, "status": "available",
                "subject": self.subject, "started": self.ago(days),
                "modality": [{"system": DCM, "code": modality}],
                "procedureCode": [_cc(CPT, *cpt)], "numberOfSeries": 1, "series": [series],
            })
            study_refs = [{"reference": f"ImagingStudy/{sid}"}]
        report: dict[str, Any] = {
            "resourceType": "DiagnosticReport", "id": self.ident("rep"), "status": "final",
            "category": [_cc("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD",
                             "Radiology")],
            "code": _cc(CPT, *cpt), "subject": self.subject,
            "effectiveDateTime": self.ago(days), "issued": self.ago(days - 0.3),
            "conclusion": conclusion,
        }
        if study_refs:
            report["imagingStudy"] = study_refs
        self.resources.append(report)


REPORT_TEXTS = [
    "No acute cardiopulmonary process.",
    "Postoperative changes of transmetatarsal amputation. Sharp osteotomy margins. No soft "
    "tissue gas.",
    "Stable transmetatarsal amputation. Mild soft tissue swelling plantar to the stump. No "
    "periosteal reaction.",
    "Periosteal reaction and cortical erosion at the second metatarsal stump. Heterotopic "
    "ossification plantar to the stump.",
]
# Wording a radiologist adds around the same findings (the cold benchmark varies reports).
_OPENERS = ("", "Three views of the left foot. ", "Comparison with prior study. ",
            "Weight-bearing views. ", "Left foot, AP, oblique and lateral. ")
_CLOSERS = ("", " Vascular calcifications.", " Diffuse osteopenia.",
            " Degenerative change at the midfoot.", " Skin staples removed since prior.")


def _reworded(rng: random.Random, text: str) -> str:
    """The same findings with other framing sentences and a study number (no text repeats)."""
    return (f"{rng.choice(_OPENERS)}{text}{rng.choice(_CLOSERS)} "
            f"Accession {rng.randint(10**7, 10**8 - 1)}.")


XR = ("73630", "Radiologic examination, foot; complete, minimum of 3 views")
MRI = ("73720", "MRI lower extremity other than joint; without contrast, followed by contrast")
CHEST = ("71046", "Radiologic examination, chest; 2 views")


def _series(b: _Builder, spec: tuple[Any, ...], count: int, span_days: float,
            value: Any) -> list[dict[str, Any]]:
    """``count`` results over ``span_days``: denser after the amputation, like a real chart."""
    out = []
    recent = max(2, count // 3)
    for i in range(count):
        if i < recent:  # post-operative follow-up: the last 50 days
            days = 1.5 + i * (48.0 / recent) + b.rng.uniform(0, 2)
        else:
            days = 50 + (i - recent + 1) * ((span_days - 50) / (count - recent))
            days += b.rng.uniform(-5, 5)
        out.append(b.lab(spec, value(days), days))
    return out


def typical_resources(now: datetime, seed: int = SEED, variant: int | None = None,
                      ) -> list[dict[str, Any]]:
    """The TYPICAL record as a list of resources (dates counted back from ``now``).

    ``variant`` None is the fixed TYPICAL record of the warm benchmark. A variant number makes a
    different chart of the same shape (cold benchmark): another patient and resource ids, other
    seeded values and times, other report wording and birth date.
    """
    patient_id = PATIENT_ID if variant is None else f"bench-cold-{variant}"
    tag = "" if variant is None else f"c{variant}-"
    b = _Builder(now, seed if variant is None else SEED + 1000 + variant, patient_id, tag)
    rng = b.rng
    birth = "1957-06-14"
    if variant is not None:
        birth = f"19{rng.randint(40, 69)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    b.resources.append({
        "resourceType": "Patient", "id": patient_id, "gender": "male", "birthDate": birth,
        "name": [{"family": "Benchmark", "given": ["Synthetic"]}],
        "address": [{"city": "Springfield", "state": "IL", "country": "US"}],
    })
    b.resources.append({
        "resourceType": "Procedure", "id": b.ident("proc"), "status": "completed",
        "code": _cc(CPT, "28805", "Amputation, foot; transmetatarsal"), "subject": b.subject,
        "performedDateTime": b.ago(50), "bodySite": [{"coding": [LEFT_FOOT],
                                                      "text": "Left foot"}],
    })
    b.condition(ICD10, "E11.9", "Type 2 diabetes mellitus without complications", 3650)
    b.condition(ICD10, "E11.621", "Type 2 diabetes mellitus with foot ulcer", 18, body_site=True)
    b.condition(ICD10, "L97.422", "Non-pressure chronic ulcer of left heel and midfoot with fat "
                "layer exposed", 18, body_site=True)
    b.condition(ICD10, "I10", "Essential (primary) hypertension", 2900)
    b.condition(ICD10, "E78.5", "Hyperlipidemia, unspecified", 2500)
    b.condition(SNOMED, "433144002", "Chronic kidney disease stage 3", 700)

    def inflamed(base: float, peak: float, spread: float):  # type: ignore[no-untyped-def]
        def value(days: float) -> float:
            level = peak if days < 20 else base * 1.8 if days < 50 else base
            return max(0.1, rng.gauss(level, spread * (2 if days < 50 else 1)))
        return value

    labs: list[dict[str, Any]] = []
    labs += _series(b, ESR, 20, 730, inflamed(22, 78, 5))
    labs += _series(b, CRP, 20, 730, inflamed(4, 32, 1.5))
    labs += _series(b, WBC, 20, 730, inflamed(7.8, 10.9, 0.9))
    labs += _series(b, CREATININE, 18, 730, lambda d: rng.gauss(1.25, 0.08))
    labs += _series(b, EGFR, 18, 730, lambda d: rng.gauss(58, 4))
    labs += _series(b, HBA1C, 8, 730, lambda d: rng.gauss(7.9, 0.4))
    labs += _series(b, ALP, 16, 730, lambda d: rng.gauss(112 if d > 50 else 146, 9))
    b.resources += labs

    texts = REPORT_TEXTS if variant is None else [_reworded(rng, t) for t in REPORT_TEXTS]
    b.report(CHEST, 400, texts[0], None)
    b.report(XR, 47, texts[1], "DX")
    b.report(XR, 21, texts[2], None)
    b.report(XR, 4, texts[3], "DX")

    b.medication("6809", "metformin", "active", 400, "1000 mg by mouth twice daily")
    b.medication("274783", "insulin glargine", "active", 300, "22 units subcutaneously nightly")
    b.medication("83367", "atorvastatin", "active", 900, "40 mg by mouth daily")
    b.medication("29046", "lisinopril", "active", 1200, "10 mg by mouth daily")
    b.medication("1191", "aspirin", "active", 1500, "81 mg by mouth daily")
    b.medication("2231", "cephalexin", "completed", 40, "500 mg by mouth four times daily")
    return b.resources


def unrelated_observations(now: datetime, count: int = UNRELATED_COUNT,
                           seed: int = SEED + 1, variant: int | None = None,
                           ) -> list[dict[str, Any]]:
    """``count`` unrelated lab Observations over 5 years (no code the service maps)."""
    if variant is None:
        b = _Builder(now, seed)
    else:
        b = _Builder(now, SEED + 500_000 + variant, f"bench-cold-{variant}", f"c{variant}-")
    out = []
    for i in range(count):
        spec = UNRELATED[i % len(UNRELATED)]
        days = b.rng.uniform(0.5, 5 * 365)
        out.append(b.lab(spec[:5], b.rng.gauss(spec[5], spec[6]), days, prefix="chem"))
    return out


def _request(discovery: dict[str, Any], resources: list[dict[str, Any]],
             patient_id: str = PATIENT_ID, variant: int | None = None) -> dict[str, Any]:
    body = build_request(discovery, SERVICE_ID, HOOK, resources, patient_id)
    # deterministic; a distinct (still valid) UUID per cold variant
    body["hookInstance"] = ("6e1a3c5e-2f0b-4f7e-9d55-5f0c2b6b1a10" if variant is None
                            else str(uuid.UUID(int=SEED * 10**6 + variant, version=4)))
    body["context"]["userId"] = "Practitioner/bench-1"
    return body


def _date_key(entry: dict[str, Any]) -> str:
    return str(entry["resource"].get("effectiveDateTime", ""))


def typical_request(discovery: dict[str, Any], now: datetime, variant: int | None = None,
                    ) -> dict[str, Any]:
    patient_id = PATIENT_ID if variant is None else f"bench-cold-{variant}"
    return _request(discovery, typical_resources(now, variant=variant), patient_id, variant)


def cold_requests(discovery: dict[str, Any], now: datetime, count: int, case: str = "TYPICAL",
                  first: int = 0) -> list[bytes]:
    """``count`` distinct requests of the case's shape (variants ``first`` … ``first+count-1``).

    Every resource of every request is different from every other (ids, values, times, report
    wording), which :func:`assert_no_repeats` checks: a per-content cache cannot answer any of
    them from memory.
    """
    make = typical_request if case == "TYPICAL" else heavy_request
    return [encode(make(discovery, now, first + i)) for i in range(count)]


def derive(body: bytes, variant: int, copy: int) -> bytes:
    """Variant ``variant``'s request under new patient, resource and hook ids (copy ``copy``).

    Generating a chart takes milliseconds (a HEAVY one, half a second), too slow for the
    thousands of requests a throughput round sends; a copy renames every id of a generated
    chart, so every resource's content is still new, in microseconds.
    """
    hook = str(uuid.UUID(int=SEED * 10**6 + variant, version=4)).encode()
    new_hook = str(uuid.UUID(int=(SEED + 7) * 10**9 + variant * 10**5 + copy,
                             version=4)).encode()
    return (body.replace(f"bench-cold-{variant}".encode(), f"bench-cold-{variant}x{copy}".encode())
            .replace(f"c{variant}-".encode(), f"c{variant}x{copy}-".encode())
            .replace(hook, new_hook))


def assert_no_repeats(bodies: list[bytes]) -> int:
    """Check that no resource's content occurs twice across the requests; the number checked."""
    seen: set[bytes] = set()
    total = 0
    for body in bodies:
        for value in orjson.loads(body)["prefetch"].values():
            resources = ([e["resource"] for e in value.get("entry", [])]
                         if value.get("resourceType") == "Bundle" else [value])
            for resource in resources:
                digest = hashlib.blake2b(orjson.dumps(resource), digest_size=16).digest()
                if digest in seen:
                    raise AssertionError(f"resource {resource.get('resourceType')}/"
                                         f"{resource.get('id')} repeats across cold requests")
                seen.add(digest)
                total += 1
    return total


def heavy_request(discovery: dict[str, Any], now: datetime, variant: int | None = None,
                  unrelated: int = UNRELATED_COUNT) -> dict[str, Any]:
    """TYPICAL plus 5,000 unrelated Observations put into the observations prefetch Bundle,
    newest first as ``_sort=-date`` asks (the EHR did not filter by code)."""
    body = typical_request(discovery, now, variant)
    bundle = body["prefetch"]["observations"]
    extra = [{"fullUrl": f"Observation/{r['id']}", "resource": r, "search": {"mode": "match"}}
             for r in unrelated_observations(now, unrelated, variant=variant)]
    entries = bundle["entry"] + extra
    entries.sort(key=_date_key, reverse=True)  # ISO-8601 Z strings sort in time order
    bundle["entry"] = entries
    bundle["total"] = len(entries)
    return body


def encode(body: dict[str, Any]) -> bytes:
    """The request bytes as an EHR sends them (compact JSON, UTF-8)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def local_discovery() -> dict[str, Any]:
    """The discovery document built in-process (for profiling without a server)."""
    from cds_service.config import load_settings
    from cds_service.services import build_registry

    settings = load_settings({"auth_required": False, "database_url": "sqlite://",
                              "log_format": "json"}, environ={})
    return build_registry(settings).discovery()


def bench_now() -> datetime:
    """The moment the records describe: now, to the second (the service reads the real clock)."""
    return datetime.now(UTC).replace(microsecond=0)

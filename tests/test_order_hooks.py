"""Order hooks (clinical-rules.md §10): draft-order parsing, each O-* check firing and staying
quiet, the HTTP edge (400s, a CDS Hooks sandbox-shaped request) and golden replays.

Golden files (tests/golden/orders/<case>.json) hold a digest of each response: per card the
summary, indicator, kind and rule, override reason codes, suggestion actions (type, resourceId,
resource codes) and the assessment extension. Regenerate with ``UPDATE_GOLDEN=1`` and read the
diff against the rulebook before committing.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cds_service import create_app
from cds_service.cards import CardSpec, render
from cds_service.clinical.draft_orders import DraftOrders, read_draft_orders
from cds_service.clinical.facts import gather
from cds_service.clinical.nexttests import t_bx, t_mri_alt, t_scan_ho
from cds_service.clinical.order_checks import order_cards
from cds_service.clinical.record import Record
from cds_service.clinical.rules import Assessment, assess
from cds_service.config import DEFAULT_MAPPINGS_DIR
from cds_service.errors import RequestInvalid
from cds_service.fhir.resources import bundle_resources
from cds_service.mappings import load_mappings
from cds_service.preview import markdown_text, visible_text
from cds_service.replay import build_request, record_time
from tests.support.golden import check_golden

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "fixtures" / "records"
ORDERS = ROOT / "fixtures" / "orders"
GOLDEN = Path(__file__).resolve().parent / "golden" / "orders"
MAPPINGS = load_mappings(DEFAULT_MAPPINGS_DIR)

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CPT = "http://www.ama-assn.org/go/cpt"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"


#####################################################################
# Builders


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def record(name: str) -> tuple[list[dict[str, Any]], datetime, str]:
    """(resources, now, patient id) of a fixture record."""
    bundle = load(RECORDS / f"{name}.json")
    resources = bundle_resources(bundle)
    now = record_time(bundle)
    assert now is not None
    patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    return resources, now, patient


def med(ident: str, code: str, display: str, dose: float | None = None, unit: str = "mg",
        kind: str = "MedicationRequest", route: str | None = None) -> dict[str, Any]:
    """A draft medication order (R4 shape; DSTU2 MedicationOrder when ``kind`` says so)."""
    dosage: dict[str, Any] = {"text": display}
    if dose is not None:
        quantity = {"value": dose, "unit": unit, "system": UCUM, "code": unit}
        if kind == "MedicationRequest":
            dosage["doseAndRate"] = [{"doseQuantity": quantity}]
        else:
            dosage["doseQuantity"] = quantity
    if route:
        dosage["route"] = {"text": route}
    return {"resourceType": kind, "id": ident, "status": "draft", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code,
                                                      "display": display}]},
            "dosageInstruction": [dosage]}


def bone_scan(ident: str = "scan-1", kind: str = "ServiceRequest") -> dict[str, Any]:
    return {"resourceType": kind, "id": ident, "status": "draft", "intent": "order",
            "code": {"coding": [{"system": CPT, "code": "78315",
                                 "display": "Bone and/or joint imaging; 3 phase study"}]}}


def bundle(*resources: dict[str, Any], with_type: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Bundle"}
    if with_type:
        out["type"] = "collection"
    out["entry"] = [{"resource": r} for r in resources]
    return out


CEFTRIAXONE = ("2193", "ceftriaxone")
VANCOMYCIN = ("11124", "vancomycin")
INDOMETHACIN = ("197817", "indomethacin 25 MG Oral Capsule")


def assessed(name: str, change: Callable[[list[dict[str, Any]]], None] | None = None
             ) -> tuple[Assessment, str]:
    resources, now, patient = record(name)
    resources = copy.deepcopy(resources)
    if change is not None:
        change(resources)
    return assess(gather(Record(resources, MAPPINGS, now))), patient


def check(name: str, draft: dict[str, Any], hook: str = "order-sign",
          selections: list[str] | None = None,
          change: Callable[[list[dict[str, Any]]], None] | None = None) -> list[CardSpec]:
    """The O-* card specs for a fixture record (optionally changed) and a draft Bundle."""
    a, patient = assessed(name, change)
    context: dict[str, Any] = {"draftOrders": draft}
    if hook == "order-select":
        context["selections"] = selections if selections is not None else [
            f"{r['resourceType']}/{r['id']}" for r in bundle_resources(draft)]
    drafts = read_draft_orders(context, hook, MAPPINGS, patient)
    return order_cards(a, drafts, hook, patient)


def rules_of(specs: list[CardSpec]) -> list[str]:
    return [rule for spec in specs for rule in spec.rules]


def add(resource: dict[str, Any]) -> Callable[[list[dict[str, Any]]], None]:
    return lambda resources: resources.append(resource)


def drop(kind: str, code: str) -> Callable[[list[dict[str, Any]]], None]:
    def change(resources: list[dict[str, Any]]) -> None:
        resources[:] = [r for r in resources if not (
            r["resourceType"] == kind and code in json.dumps(r.get("code")))]
    return change


def parse(draft: Any, hook: str = "order-sign", selections: Any = None,
          patient: str | None = None) -> DraftOrders:
    context = {"draftOrders": draft, "selections": selections}
    return read_draft_orders(context, hook, MAPPINGS, patient)


#####################################################################
# Reading draft orders


def test_reads_r4_stu3_and_dstu2_orders_with_dose_in_mg() -> None:
    stu3 = med("stu3", *VANCOMYCIN, 1.2, "g", kind="MedicationRequest")
    stu3["dosageInstruction"][0]["doseQuantity"] = stu3["dosageInstruction"][0].pop(
        "doseAndRate")[0]["doseQuantity"]
    drafts = parse(bundle(
        med("r4", *CEFTRIAXONE, 2, "g"),
        stu3,
        med("dstu2", *VANCOMYCIN, 1, "g", kind="MedicationOrder"),
        bone_scan("pr", "ProcedureRequest"),
        bone_scan("sr"),
    ))
    got = {o.ref: (o.concepts, o.dose_mg, o.status) for o in drafts.orders}
    assert got == {
        "MedicationRequest/r4": ({"ceftriaxone"}, 2000.0, "draft"),
        "MedicationRequest/stu3": ({"vancomycin"}, 1200.0, "draft"),
        "MedicationOrder/dstu2": ({"vancomycin"}, 1000.0, "draft"),
        "ProcedureRequest/pr": ({"three-phase-bone-scan"}, None, "draft"),
        "ServiceRequest/sr": ({"three-phase-bone-scan"}, None, "draft"),
    }
    assert drafts.checked == drafts.orders  # order-sign checks every draft
    assert drafts.notes == []


def test_medication_identity_from_contained_and_bundled_medication() -> None:
    contained = {"resourceType": "MedicationRequest", "id": "a", "status": "draft",
                 "contained": [{"resourceType": "Medication", "id": "m",
                                "code": {"coding": [{"system": RXNORM, "code": "5781"}]}}],
                 "medicationReference": {"reference": "#m"}}
    bundled = {"resourceType": "MedicationRequest", "id": "b", "status": "draft",
               "medicationReference": {"reference": "Medication/vanc"}}
    by_url = {"resourceType": "MedicationRequest", "id": "c", "status": "draft",
              "medicationReference": {"reference": "urn:uuid:1234"}}
    draft = bundle(contained, bundled, by_url)
    draft["entry"] += [
        {"resource": {"resourceType": "Medication", "id": "vanc",
                      "code": {"coding": [{"system": RXNORM, "code": "66955"}]}}},
        {"fullUrl": "urn:uuid:1234",
         "resource": {"resourceType": "Medication",
                      "code": {"coding": [{"system": RXNORM, "code": "2193"}]}}},
    ]
    drafts = parse(draft)
    assert [(o.id, set(o.concepts)) for o in drafts.orders] == [
        ("a", {"indomethacin"}), ("b", {"vancomycin"}), ("c", {"ceftriaxone"})]


@pytest.mark.parametrize("entries", [
    [42, "text", None, {"resource": "not a resource"}, {"resource": {"no": "type"}}],
    [{"resource": {"resourceType": "NutritionOrder", "id": "n"}}],
    [{"resource": {"resourceType": "MedicationRequest", "id": "x", "dosageInstruction": "oops",
                   "medicationCodeableConcept": [1, 2], "medicationReference": "Medication/1",
                   "contained": "no", "status": 7}}],
    [{"resource": {"resourceType": "MedicationRequest", "dosageInstruction": [
        None, {"doseAndRate": "x"}, {"doseAndRate": [{"doseQuantity": {"value": "1"}}]},
        {"doseQuantity": {"value": True, "unit": "mg"}}, {"doseQuantity": {"value": 1}}]}}],
    [{"resource": {"resourceType": "ServiceRequest", "id": "s", "code": "78315"}}],
])
def test_bad_shapes_are_skipped_never_raised(entries: list[Any]) -> None:
    drafts = parse({"resourceType": "Bundle", "entry": entries})
    for order in drafts.orders:
        assert order.dose_mg is None and not order.concepts
    assert len(drafts.orders) + len(drafts.notes) >= 1


@pytest.mark.parametrize("draft", [
    {"resourceType": "Bundle"},
    {"resourceType": "Bundle", "entry": "not a list"},
    {"resourceType": "Patient", "id": "p"},
    {},
])
def test_odd_draft_orders_objects_give_no_orders(draft: dict[str, Any]) -> None:
    assert parse(draft).orders == []


def test_bundle_without_type_and_a_bare_order_are_read() -> None:
    assert [o.ref for o in parse(bundle(med("1", *VANCOMYCIN), with_type=False)).orders] == [
        "MedicationRequest/1"]
    drafts = parse(med("2", *VANCOMYCIN))
    assert [o.ref for o in drafts.orders] == ["MedicationRequest/2"]
    assert "single resource" in drafts.notes[0]


def test_dose_units_route_and_per_kg() -> None:
    drafts = parse(bundle(
        med("grams", *VANCOMYCIN, 1.5, "G"),  # upper-case G is grams here, never gauss
        med("perkg", *VANCOMYCIN, 15, "mg/kg"),
        med("caps", *INDOMETHACIN, 1, "{capsule}"),
        med("oral", *VANCOMYCIN, 125, "mg", route="by mouth"),
    ))
    by_id = {o.id: o for o in drafts.orders}
    assert by_id["grams"].dose_mg == 1500.0
    assert (by_id["perkg"].dose_mg, by_id["perkg"].dose_mg_per_kg) == (None, 15.0)
    assert by_id["caps"].dose_mg is None
    assert "cannot be converted to mg" in (by_id["caps"].dose_problem or "")
    assert by_id["oral"].route == "oral" and by_id["grams"].route is None


def test_orders_not_being_placed_or_for_another_patient_are_skipped() -> None:
    cancelled = dict(med("c", *VANCOMYCIN), status="cancelled")
    other = dict(med("o", *VANCOMYCIN), subject={"reference": "Patient/someone-else"})
    mine = dict(med("m", *VANCOMYCIN), subject={"reference": "Patient/me"})
    drafts = parse(bundle(cancelled, other, mine), patient="me")
    assert [o.id for o in drafts.orders] == ["m"]
    assert any("cancelled" in n for n in drafts.notes)
    assert any("another patient" in n for n in drafts.notes)


def test_order_select_checks_the_selected_orders_only() -> None:
    draft = bundle(med("1", *VANCOMYCIN), med("2", *CEFTRIAXONE))
    drafts = parse(draft, "order-select",
                   ["http://ehr/fhir/MedicationRequest/2/_history/1", "MedicationRequest/9"])
    assert [o.id for o in drafts.orders] == ["1", "2"]
    assert [o.id for o in drafts.checked] == ["2"]
    assert drafts.notes == ["selection 'MedicationRequest/9' names no draft order; ignored"]
    assert parse(draft, "order-select", []).checked == []  # nothing selected yet: no error


@pytest.mark.parametrize(("draft", "selections", "where"), [
    ("MedicationRequest/1", [], "context.draftOrders"),
    ([{"resourceType": "MedicationRequest"}], [], "context.draftOrders"),
    (bundle(), "MedicationRequest/1", "context.selections"),
    (bundle(), [1], "context.selections"),
    (bundle(), {"MedicationRequest/1": True}, "context.selections"),
])
def test_wrong_context_types_are_request_invalid(draft: Any, selections: Any,
                                                 where: str) -> None:
    with pytest.raises(RequestInvalid) as caught:
        parse(draft, "order-select", selections)
    assert caught.value.where == where


#####################################################################
# O-ABX


def test_o_abx_fires_with_the_t_bx_order() -> None:
    draft = bundle(med("abx", *CEFTRIAXONE, 2, "g"))
    select = check("om-probable-ptb-esr", draft, "order-select")
    sign = check("om-probable-ptb-esr", draft, "order-sign")
    assert rules_of(select) == rules_of(sign) == ["O-ABX"]
    assert select[0].summary == ("Obtain bone biopsy for culture and histology before starting "
                                 "antibiotics if clinically stable")
    assert (select[0].indicator, sign[0].indicator) == ("info", "warning")
    assert not select[0].override_reasons
    assert ("culture-obtained", "Culture already obtained") in sign[0].override_reasons
    # the same order as the patient-view T-BX suggestion
    a, patient = assessed("om-probable-ptb-esr")
    expected = t_bx(a, patient)[0]
    (suggestion,) = sign[0].suggestions
    assert suggestion.codes == expected.codes == ("http://www.ama-assn.org/go/cpt|20220",)
    assert suggestion.actions[0].resource == expected.actions[0].resource
    assert sign[0].assessment == a.extension()


BIOPSY = {"resourceType": "Procedure", "id": "bx", "status": "completed",
          "code": {"coding": [{"system": CPT, "code": "20220"}]},
          "subject": {"reference": "Patient/pt-om-probable"},
          "performedDateTime": "2026-11-19T08:00:00Z"}


@pytest.mark.parametrize(("name", "change"), [
    ("om-probable-ptb-esr", add(BIOPSY)),  # biopsy already on record
    ("om-biopsy-done-70kg", None),  # likewise, from the fixture
    ("severe-infection", None),  # never delay antibiotics in severe infection
    ("om-confirmed-bone-culture", None),  # confirmed: the culture exists
    ("ho-mature-nsaid-gates-pass", None),  # OM not supported: T-BX does not apply
])
def test_o_abx_quiet(name: str, change: Any) -> None:
    specs = check(name, bundle(med("abx", *CEFTRIAXONE, 2, "g")), change=change)
    assert "O-ABX" not in rules_of(specs)


def test_o_abx_looks_at_selected_orders_only_at_order_select() -> None:
    draft = bundle(med("abx", *CEFTRIAXONE), bone_scan())
    assert check("om-probable-ptb-esr", draft, "order-select",
                 ["ServiceRequest/scan-1"]) == []


#####################################################################
# O-HO


def test_o_ho_warns_at_both_hooks() -> None:
    draft = bundle(med("abx", "2231", "cephalexin", 500, "mg"))
    for hook in ("order-select", "order-sign"):
        (spec,) = check("ho-mature-nsaid-gates-pass", draft, hook)
        assert spec.rules == ["O-HO"] and spec.indicator == "warning"
        assert spec.summary.startswith("Findings favor heterotopic ossification over "
                                       "osteomyelitis")
        assert spec.override_reasons
        assert "ho-favored" in (spec.assessment or {})["flags"]


def test_o_ho_quiet_without_ho_favored() -> None:
    specs = check("om-probable-ptb-esr", bundle(med("abx", *CEFTRIAXONE)))
    assert "O-HO" not in rules_of(specs)


#####################################################################
# O-NSAID


def test_o_nsaid_names_each_failing_gate_and_deletes_the_draft() -> None:
    draft = bundle(med("indo", *INDOMETHACIN, 25, "mg"))
    for hook in ("order-select", "order-sign"):
        (spec,) = check("ho-present-nsaid-gates-fail", draft, hook)
        assert spec.rules == ["O-NSAID"] and spec.indicator == "warning"
        # the summary names each gate briefly, the detail in full (clinical-rules.md §11)
        assert spec.summary == ("Indomethacin not advised: eGFR 24 on 15\u00a0Nov, GI bleeding "
                                "and apixaban")
        for gate in ("eGFR 24 mL/min/1.73 m² on 15 Nov (below 30)",
                     "gastrointestinal bleeding on record", "apixaban active (anticoagulant)"):
            assert f"- {gate}" in markdown_text(spec.detail)
        (suggestion,) = spec.suggestions
        (action,) = suggestion.actions
        assert (action.type, action.resource_id, action.resource) == (
            "delete", "MedicationRequest/indo", None)
        assert ("benefit-outweighs-risk", "Benefit outweighs risk") in spec.override_reasons


def test_o_nsaid_quiet_when_every_gate_passes() -> None:
    assert check("ho-mature-nsaid-gates-pass", bundle(med("indo", *INDOMETHACIN, 25))) == []


def test_o_nsaid_counts_other_draft_orders_as_gates() -> None:
    draft = bundle(med("indo", *INDOMETHACIN, 25), med("w", "11289", "warfarin"))
    (spec,) = check("ho-mature-nsaid-gates-pass", draft, "order-select",
                    ["MedicationRequest/indo"])
    assert "warfarin (draft order, anticoagulant)" in visible_text(render(spec))


def test_o_nsaid_deletes_a_dstu2_medication_order_by_its_own_type() -> None:
    draft = bundle(med("ibu", "5640", "ibuprofen", 400, kind="MedicationOrder"),
                   with_type=False)
    (spec,) = check("ho-present-nsaid-gates-fail", draft)
    assert spec.summary.startswith("NSAID not advised")
    assert spec.suggestions[0].actions[0].resource_id == "MedicationOrder/ibu"


#####################################################################
# O-VANC


def test_o_vanc_dose_outside_range_is_info_with_the_computed_range() -> None:
    (spec,) = [s for s in check("om-probable-ptb-esr", bundle(med("v", *VANCOMYCIN, 1200)))
               if s.rules == ["O-VANC"]]
    assert spec.indicator == "info"
    assert "1,230–1,640" in spec.summary and "82\u00a0kg" in spec.summary
    assert not spec.override_reasons


@pytest.mark.parametrize(("dose", "unit"), [(1200, "mg"), (1.2, "g"), (17, "mg/kg")])
def test_o_vanc_quiet_within_range_for_70_kg(dose: float, unit: str) -> None:
    assert check("om-biopsy-done-70kg", bundle(med("v", *VANCOMYCIN, dose, unit))) == []


def test_o_vanc_warns_when_weight_or_renal_data_is_missing() -> None:
    (no_weight,) = [s for s in check("crp-mg-dl-wound", bundle(med("v", *VANCOMYCIN, 1000)))
                    if s.rules == ["O-VANC"]]
    assert no_weight.indicator == "warning"
    assert "no weight in the last 30 days" in no_weight.summary
    assert "no creatinine or eGFR in the last 7 days" in no_weight.summary
    assert "dosing needs a weight (30 days) and creatinine or eGFR (7 days)" in no_weight.detail
    assert no_weight.override_reasons
    (no_renal,) = check("om-biopsy-done-70kg", bundle(med("v", *VANCOMYCIN, 1200)),
                        change=drop("Observation", "98979-8"))
    assert no_renal.indicator == "warning"
    assert no_renal.summary.endswith("no creatinine or eGFR in the last 7 days")
    assert "1,050–1,400\u00a0mg per dose" in no_renal.detail


def test_o_vanc_other_cases() -> None:
    # a loading dose above 20 mg/kg is info and mentions loading doses
    (high,) = check("om-biopsy-done-70kg", bundle(med("v", *VANCOMYCIN, 2000)))
    assert high.indicator == "info" and "loading dose" in high.detail
    # no dose in the order: info with the range
    (unknown,) = check("om-biopsy-done-70kg", bundle(med("v", *VANCOMYCIN)))
    assert "1,050–1,400" in unknown.summary
    # oral vancomycin (C. difficile) is not dosed by weight
    assert check("om-biopsy-done-70kg",
                 bundle(med("v", *VANCOMYCIN, 125, route="oral"))) == []


#####################################################################
# O-SCAN


def test_o_scan_replaces_the_scan_with_the_t_mri_order() -> None:
    select = check("charcot-bone-scan", bundle(bone_scan()), "order-select")
    sign = check("crp-mg-dl-wound", bundle(bone_scan("pr", "ProcedureRequest")))
    assert (rules_of(select), rules_of(sign)) == (["O-SCAN"], ["O-SCAN"])
    assert (select[0].indicator, sign[0].indicator) == ("info", "warning")
    assert select[0].summary == ("MRI is preferred to separate OM from early HO or "
                                 "post-surgical change")
    (suggestion,) = sign[0].suggestions
    delete, create = suggestion.actions
    assert (delete.type, delete.resource_id, delete.resource) == (
        "delete", "ProcedureRequest/pr", None)
    # the same order as patient-view's T-MRI suggestion for this record
    a, patient = assessed("crp-mg-dl-wound")
    t_mri = next(s for s in t_mri_alt(a, patient) if s.rule == "T-MRI")
    assert create.type == "create"
    assert create.resource == t_mri.actions[0].resource
    assert suggestion.codes == t_mri.codes == ("http://www.ama-assn.org/go/cpt|73720",)


def test_o_scan_orders_mri_without_contrast_with_renal_impairment() -> None:
    egfr = {"resourceType": "Observation", "id": "egfr", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "98979-8"}]},
            "effectiveDateTime": "2026-11-19T08:00:00Z",
            "valueQuantity": {"value": 22, "unit": "mL/min/{1.73_m2}", "system": UCUM,
                              "code": "mL/min/{1.73_m2}"}}
    (spec,) = check("crp-mg-dl-wound", bundle(bone_scan()), change=add(egfr))
    assert "renal-impairment" in (spec.assessment or {})["flags"]
    assert spec.suggestions[0].codes == ("http://www.ama-assn.org/go/cpt|73718",)


def test_o_scan_quiet_when_t_scan_ho_applies() -> None:
    # HO present (not mature), day 200, plantar prominence, no bone scan in 90 days
    a, patient = assessed("ho-prominence-late")
    assert a.osteomyelitis == "indeterminate" and a.heterotopic_ossification == "present"
    assert t_scan_ho(a, patient)
    assert check("ho-prominence-late", bundle(bone_scan())) == []


MRI_REPORT = {"resourceType": "DiagnosticReport", "id": "mri", "status": "final",
              "code": {"coding": [{"system": CPT, "code": "73720"}]},
              "effectiveDateTime": "2026-11-10T08:00:00Z", "conclusion": "Postsurgical change."}


@pytest.mark.parametrize(("name", "change"), [
    ("om-probable-ptb-esr", None),  # OM probable: not this check's question
    ("ho-mature-nsaid-gates-pass", None),  # OM not supported
    ("crp-mg-dl-wound", add(MRI_REPORT)),  # a foot MRI in the last 28 days
])
def test_o_scan_quiet(name: str, change: Any) -> None:
    assert check(name, bundle(bone_scan()), change=change) == []


#####################################################################
# Every card, and patients the order hooks do not apply to


def test_every_card_is_an_order_check_with_the_assessment() -> None:
    draft = load(ORDERS / "mixed-shapes-vanc-no-weight.json")
    specs = check("crp-mg-dl-wound", draft)
    a, _ = assessed("crp-mg-dl-wound")
    assert rules_of(specs) == ["O-ABX", "O-VANC"]
    shown = []
    for spec in specs:
        card = render(spec)
        assert len(card["summary"]) < 140
        assert card["extension"]["tma-card"]["kind"] == "order-check"
        assert card["extension"]["tma-bone-assessment"] == a.extension()
        shown.append(visible_text(card))
        if card["indicator"] == "warning":
            assert all(r["display"] for r in card["overrideReasons"])
    # the entries not checked are named in words, not by id, once per response
    notes = "a nutrition order (not a medication or service order)"
    assert [notes in text for text in shown].count(True) == 1
    assert "NutritionOrder/" not in "".join(shown)


#####################################################################
# Through HTTP


CLOCK: dict[str, datetime] = {}


@pytest.fixture(scope="module")
def client() -> Any:
    """One in-process service whose clock is the replayed record's timestamp."""
    app = create_app({"auth_required": False, "database_url": "sqlite://"},
                     clock=lambda: CLOCK["now"])
    return app.test_client()


@pytest.fixture(autouse=True)
def _clock() -> None:
    CLOCK["now"] = record("om-probable-ptb-esr")[1]


def request_for(client: Any, name: str, hook: str, draft: dict[str, Any]) -> dict[str, Any]:
    resources, _, patient = record(name)
    discovery = client.get("/cds-services").get_json()
    service = {"order-select": "tma-order-select", "order-sign": "tma-order-sign"}[hook]
    return build_request(discovery, service, hook, resources, patient, draft)


def test_discovery_lists_both_order_services_with_the_patient_view_templates(
        client: Any) -> None:
    services = {s["id"]: s for s in client.get("/cds-services").get_json()["services"]}
    assert services["tma-order-select"]["hook"] == "order-select"
    assert services["tma-order-sign"]["hook"] == "order-sign"
    templates = services["tma-bone-assessment"]["prefetch"]
    for sid in ("tma-order-select", "tma-order-sign"):
        assert services[sid]["prefetch"] == templates
        assert services[sid]["title"] and services[sid]["description"]
        text = json.dumps(services[sid]["prefetch"])
        assert "draftOrders" not in text and "selections" not in text


def test_sandbox_shaped_order_sign_request_answers_200(client: Any) -> None:
    # DSTU2 MedicationOrder in a Bundle without type (cds-hooks-2.0.md §9.4, §13 item 7)
    draft = load(ORDERS / "sandbox-dstu2-vanc.json")
    assert "type" not in draft and bundle_resources(draft)[0]["resourceType"] == "MedicationOrder"
    body = request_for(client, "om-probable-ptb-esr", "order-sign", draft)
    body["context"]["userId"] = "Practitioner/COREPRACTITIONER1"
    response = client.post("/cds-services/tma-order-sign", json=body)
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    assert [c["extension"]["tma-card"]["rules"] for c in cards] == [["O-ABX"], ["O-VANC"]]
    # the same draft at order-select, selected the way the sandbox names it
    body = request_for(client, "om-probable-ptb-esr", "order-select", draft)
    assert body["context"]["selections"] == ["MedicationOrder/order-123"]
    response = client.post("/cds-services/tma-order-select", json=body)
    assert response.status_code == 200
    assert [c["indicator"] for c in response.get_json()["cards"]] == ["info", "info"]


@pytest.mark.parametrize(("field", "value"), [
    ("draftOrders", "MedicationRequest/1"),
    ("selections", "MedicationRequest/1"),
    ("selections", [{"reference": "MedicationRequest/1"}]),
])
def test_wrong_context_types_answer_400(client: Any, field: str, value: Any) -> None:
    body = request_for(client, "om-probable-ptb-esr", "order-select",
                       bundle(med("abx", *CEFTRIAXONE)))
    body["context"][field] = value
    response = client.post("/cds-services/tma-order-select", json=body)
    assert response.status_code == 400
    issue = response.get_json()["issue"][0]
    assert issue["expression"] == [f"context.{field}"]


def test_no_index_amputation_means_no_cards(client: Any) -> None:
    body = request_for(client, "om-probable-ptb-esr", "order-sign",
                       bundle(med("abx", *CEFTRIAXONE)))
    procedures = body["prefetch"]["procedures"]
    procedures["entry"] = [e for e in procedures.get("entry", ())
                           if "28805" not in json.dumps(e)]
    response = client.post("/cds-services/tma-order-sign", json=body)
    assert response.status_code == 200 and response.get_json() == {"cards": []}


#####################################################################
# Golden replays (fixtures/orders/README.md)

CASES = (
    # (case, record, draft, hook)
    ("abx-select", "om-probable-ptb-esr", "om-probable-ceftriaxone", "order-select"),
    ("abx-sign", "om-probable-ptb-esr", "om-probable-ceftriaxone", "order-sign"),
    ("vanc-82kg-sign", "om-probable-ptb-esr", "om-probable-vanc-1200", "order-sign"),
    ("vanc-70kg-quiet", "om-biopsy-done-70kg", "vanc-1200-70kg", "order-sign"),
    ("severe-quiet", "severe-infection", "severe-vanc-ceftriaxone", "order-sign"),
    ("ho-antibiotic-sign", "ho-mature-nsaid-gates-pass", "ho-mature-antibiotic", "order-sign"),
    ("indomethacin-quiet", "ho-mature-nsaid-gates-pass", "ho-mature-indomethacin",
     "order-sign"),
    ("nsaid-gates-fail-select", "ho-present-nsaid-gates-fail", "ho-gates-fail-indomethacin",
     "order-select"),
    ("scan-charcot-select", "charcot-bone-scan", "charcot-bone-scan-order", "order-select"),
    ("scan-stu3-sign", "crp-mg-dl-wound", "crp-wound-bone-scan-stu3", "order-sign"),
    ("scan-ho-maturity-quiet", "ho-prominence-late", "ho-prominence-bone-scan", "order-sign"),
    ("sandbox-dstu2-sign", "om-probable-ptb-esr", "sandbox-dstu2-vanc", "order-sign"),
    ("mixed-shapes-sign", "crp-mg-dl-wound", "mixed-shapes-vanc-no-weight", "order-sign"),
    # issue 12: drugs as EHRs code them (fixtures/orders/README.md)
    ("sandbox-cipro-scd-sign", "om-probable-ptb-esr", "sandbox-cipro-scd", "order-sign"),
    ("sandbox-cipro-scd-select", "om-probable-ptb-esr", "sandbox-cipro-scd", "order-select"),
    ("sandbox-augmentin-sbd-sign", "crp-mg-dl-wound", "sandbox-augmentin-sbd", "order-sign"),
    ("sandbox-motrin-sbd-sign", "ho-present-nsaid-gates-fail", "sandbox-motrin-sbd",
     "order-sign"),
    ("contained-doxycycline-sign", "om-probable-ptb-esr", "contained-doxycycline-ingredient",
     "order-sign"),
    ("oral-vancomycin-quiet", "om-probable-ptb-esr", "oral-vancomycin-capsule", "order-sign"),
    ("topical-nsaid-quiet", "ho-present-nsaid-gates-fail", "topical-diclofenac-gel",
     "order-sign"),
    ("name-only-cipro-sign", "om-probable-ptb-esr", "name-only-ciprofloxacin", "order-sign"),
    ("text-only-vanc-sign", "om-probable-ptb-esr", "text-only-vancomycin", "order-sign"),
    ("indomethacin-apixaban-sign", "ho-mature-nsaid-gates-pass", "indomethacin-apixaban-scd",
     "order-sign"),
)


def digest(response: dict[str, Any]) -> list[dict[str, Any]]:
    """What the golden files pin: everything but uuids; the detail one line per list item."""
    out = []
    for card in response["cards"]:
        suggestions = []
        for suggestion in card.get("suggestions", ()):
            actions = []
            for action in suggestion["actions"]:
                item: dict[str, Any] = {"type": action["type"]}
                if "resourceId" in action:
                    item["resourceId"] = action["resourceId"]
                resource = action.get("resource")
                if resource:
                    concept = resource.get("code") or resource.get("medicationCodeableConcept")
                    item["resource"] = {
                        "resourceType": resource["resourceType"],
                        "status": resource.get("status"), "intent": resource.get("intent"),
                        "codes": [f"{c['system']}|{c['code']}" for c in concept["coding"]],
                        "bodySite": [c["code"] for s in resource.get("bodySite", ())
                                     for c in s["coding"]],
                    }
                actions.append(item)
            suggestions.append({"label": suggestion["label"], "actions": actions})
        out.append({
            "summary": card["summary"],
            "detail": card.get("detail", "").split("\n"),
            "indicator": card["indicator"],
            "tma-card": card["extension"]["tma-card"],
            "overrideReasons": [r["code"] for r in card.get("overrideReasons", ())],
            "selectionBehavior": card.get("selectionBehavior"),
            "suggestions": suggestions,
            "tma-bone-assessment": card["extension"].get("tma-bone-assessment"),
        })
    return out


@pytest.mark.parametrize(("case", "name", "draft", "hook"), CASES, ids=[c[0] for c in CASES])
def test_replay_matches_golden(client: Any, case: str, name: str, draft: str,
                              hook: str) -> None:
    now = record_time(load(RECORDS / f"{name}.json"))
    assert now is not None
    CLOCK["now"] = now  # the record's Bundle.timestamp, as `cds-service replay` does
    body = request_for(client, name, hook, load(ORDERS / f"{draft}.json"))
    service = "tma-order-select" if hook == "order-select" else "tma-order-sign"
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 200
    got = {"record": name, "draft": draft, "hook": hook, "cards": digest(response.get_json())}
    check_golden(GOLDEN / f"{case}.json", got)


def test_every_draft_fixture_has_a_golden_case() -> None:
    drafts = {p.stem for p in ORDERS.glob("*.json")}
    assert drafts == {c[2] for c in CASES}

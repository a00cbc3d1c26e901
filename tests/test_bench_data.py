"""The cold benchmark's requests: every resource new, and each one a real assessment."""

from __future__ import annotations

import orjson
import pytest

from benchmarks import data
from tests.conftest import CLOCK, make_app


@pytest.fixture(scope="module")
def cold():  # type: ignore[no-untyped-def]
    discovery = data.local_discovery()
    return data.cold_requests(discovery, CLOCK, 3)


def test_charts_and_their_renamed_copies_share_no_resource(cold):
    bodies = [*cold, *(data.derive(body, i, k) for i, body in enumerate(cold) for k in (1, 2))]
    # 3 charts x 3 versions, each a full TYPICAL-shaped prefetch (~140 resources)
    assert data.assert_no_repeats(bodies) > 9 * 100
    patients = {orjson.loads(b)["context"]["patientId"] for b in bodies}
    hooks = {orjson.loads(b)["hookInstance"] for b in bodies}
    assert len(patients) == len(hooks) == 9


def test_a_repeated_resource_is_caught(cold):
    with pytest.raises(AssertionError, match="repeats"):
        data.assert_no_repeats([cold[0], cold[0]])


def test_the_charts_differ_in_values_and_wording_not_only_ids(cold):
    def contents(body: bytes) -> set[str]:
        reports = orjson.loads(body)["prefetch"]["reports"]["entry"]
        return {e["resource"]["conclusion"] for e in reports}

    assert contents(cold[0]).isdisjoint(contents(cold[1]))


def test_every_cold_request_is_answered_with_the_full_assessment(cold):
    client = make_app().test_client()
    for body in (cold[0], data.derive(cold[1], 1, 5)):
        response = client.post(f"/cds-services/{data.SERVICE_ID}", data=body,
                               content_type="application/json")
        assert response.status_code == 200
        kinds = [c["extension"]["tma-card"]["kind"] for c in response.get_json()["cards"]]
        assert kinds[0] == "assessment"  # the benchmark measures the real work, not a quiet chart

"""The golden-file helper: an update shows its diff and fails; CI refuses updates."""

from __future__ import annotations

import json

import pytest

from tests.support.golden import check_golden


def test_a_matching_golden_file_passes(tmp_path, monkeypatch):
    monkeypatch.delenv("UPDATE_GOLDEN", raising=False)
    path = tmp_path / "case.json"
    path.write_text(json.dumps({"summary": "Left TMA day 42"}))
    check_golden(path, {"summary": "Left TMA day 42"})


def test_a_difference_fails_with_the_diff(tmp_path, monkeypatch):
    monkeypatch.delenv("UPDATE_GOLDEN", raising=False)
    path = tmp_path / "case.json"
    path.write_text(json.dumps({"summary": "old words"}))
    with pytest.raises(pytest.fail.Exception) as failed:
        check_golden(path, {"summary": "new words"})
    assert '- "summary": "old words"' in str(failed.value)
    assert '+ "summary": "new words"' in str(failed.value)


def test_an_update_rewrites_the_file_and_fails_showing_the_diff(tmp_path, monkeypatch):
    monkeypatch.setenv("UPDATE_GOLDEN", "1")
    monkeypatch.delenv("CI", raising=False)
    path = tmp_path / "case.json"
    path.write_text(json.dumps({"summary": "old words"}))
    with pytest.raises(pytest.fail.Exception) as failed:
        check_golden(path, {"summary": "new words"})
    assert '+ "summary": "new words"' in str(failed.value)
    assert json.loads(path.read_text()) == {"summary": "new words"}
    check_golden(path, {"summary": "new words"})  # nothing left to update: passes


def test_ci_refuses_an_update_and_leaves_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("UPDATE_GOLDEN", "1")
    monkeypatch.setenv("CI", "true")
    path = tmp_path / "case.json"
    path.write_text(json.dumps({"summary": "old words"}))
    with pytest.raises(pytest.fail.Exception) as failed:
        check_golden(path, {"summary": "new words"})
    assert "refused when CI is set" in str(failed.value)
    assert json.loads(path.read_text()) == {"summary": "old words"}

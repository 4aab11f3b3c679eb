"""The whole fault campaign (experiments.studies.faults) with many kill moments per command, on the fast budgets:
every case recovers, with nothing lost or duplicated. Slow (8 min on 2 busy cores): `make test-slow`."""

from __future__ import annotations

import pytest

from experiments.studies.faults import FAST, load_records, run_campaign

KILLS = 8
"""Kill moments per command."""


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    root = tmp_path_factory.mktemp("campaign")
    run_campaign(root / "runs", root / "report", kills=KILLS, budget=FAST, say=lambda line: None)
    return load_records(root / "report")


@pytest.mark.slow
def test_the_campaign_has_every_case_and_its_report(campaign):
    settings, records = campaign
    kills = [r for r in records if r["fault"] == "kill -9"]
    assert len(kills) == KILLS * 7 and settings["kills_per_command"] == KILLS
    assert sum(r["fault"] == "disk full" for r in records) == 7
    assert sum(r["fault"] == "corrupt file" for r in records) == 24


@pytest.mark.slow
def test_every_case_recovered_with_nothing_lost(campaign):
    _, records = campaign
    assert [r["case"] for r in records if not r["recovered"]] == []
    assert [(r["case"], r["lost"], r["duplicated"]) for r in records if r.get("lost") or r.get("duplicated")] == []

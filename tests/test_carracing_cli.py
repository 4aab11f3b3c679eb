"""python -m experiments.carracing: presets and overrides reach the pipeline (the pipeline itself is stubbed)."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import pytest

import experiments.carracing.__main__ as cli
from experiments.carracing.config import COMPARE, RECIPE, RECIPE_4M
from experiments.pipeline.config import PipelineConfig

REPORTS = Path(__file__).resolve().parents[1] / "experiments" / "reports"


def test_from_scratch_drops_only_the_continued_runs(monkeypatch) -> None:
    configs = []
    monkeypatch.setattr(cli, "run_pipeline", lambda config, **kwargs: configs.append(config))
    assert cli.main(["--preset", "recipe-4m", "--jobs", "2"]) == 0
    assert cli.main(["--preset", "recipe-4m", "--jobs", "2", "--from-scratch"]) == 0
    continued, scratch = configs
    assert continued == dataclasses.replace(RECIPE_4M, jobs=2)
    assert continued.runs.continue_from == RECIPE.out and scratch.runs.continue_from is None
    assert scratch == dataclasses.replace(continued, runs=dataclasses.replace(continued.runs, continue_from=None))


def test_flags_change_their_fields_and_no_other(monkeypatch) -> None:
    configs = []
    monkeypatch.setattr(cli, "run_pipeline", lambda config, **kwargs: configs.append(config))
    argv = ["--preset", "compare", "--agent-env-frames", "300000", "--report-name", "c-300k", "--out", "o"]
    assert cli.main([*argv, "--device", "cpu"]) == 0
    assert configs[0] == dataclasses.replace(
        COMPARE,
        out="o",
        device="cpu",
        agent=dataclasses.replace(COMPARE.agent, env_frames=300_000),
        report=dataclasses.replace(COMPARE.report, name="c-300k"),
    )


@pytest.mark.parametrize("path", sorted(REPORTS.glob("*/records/pipeline.json")), ids=lambda path: path.parts[-3])
def test_a_committed_records_command_gives_its_recorded_config_today(monkeypatch, path) -> None:
    """The flat config a committed report recorded is what its command (the last that ran it) makes now."""
    record = json.loads(path.read_text())
    configs = []
    monkeypatch.setattr(cli, "run_pipeline", lambda config, **kwargs: configs.append(config))
    assert cli.main(shlex.split(record["commands"][-1])[3:]) == 0  # after "python -m experiments.carracing"
    assert configs == [PipelineConfig.from_dict(record["config"])]

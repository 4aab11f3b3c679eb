"""python -m experiments.carracing: presets and overrides reach the pipeline (the pipeline itself is stubbed)."""

from __future__ import annotations

import experiments.carracing.__main__ as cli
from experiments.carracing.config import RECIPE, RECIPE_4M


def test_from_scratch_drops_only_the_continued_runs(monkeypatch) -> None:
    configs = []
    monkeypatch.setattr(cli, "run_pipeline", lambda config, **kwargs: configs.append(config))
    assert cli.main(["--preset", "recipe-4m", "--jobs", "2"]) == 0
    assert cli.main(["--preset", "recipe-4m", "--jobs", "2", "--from-scratch"]) == 0
    continued, scratch = configs
    assert continued.continue_from == RECIPE.out and scratch.continue_from is None
    assert scratch == RECIPE_4M.__class__(**{**vars(continued), "continue_from": None})
    assert scratch.agent_env_frames == 4_000_000 and scratch.out == RECIPE_4M.out and scratch.jobs == 2

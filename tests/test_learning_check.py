"""The learning check (``make learning-check``, about 30 minutes on 2 cores): latent PPO on CarRacing-v3,
trained for a fixed budget (:data:`CHECK`), must beat a uniform-random policy on the same fixed tracks by
:data:`MARGIN` return. It resumes like the pipeline: ``WORLDMODEL_LEARNING_CHECK_OUT`` (default
``runs/learning_check``) keeps its runs between attempts."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from experiments.demo import DEMO
from experiments.pipeline.config import plan
from experiments.pipeline.records import EVALUATION_FILE
from experiments.pipeline.stages import run_pipeline

MARGIN = 100.0
"""Required lead of the trained agent's mean return over the random policy's (random scores about -50 to -90)."""
CHECK = dataclasses.replace(
    DEMO,
    out=os.environ.get("WORLDMODEL_LEARNING_CHECK_OUT", "runs/learning_check"),
    collect=dataclasses.replace(DEMO.collect, episodes=32, max_steps=300),
    agent=dataclasses.replace(DEMO.agent, env_frames=100_000, eval_freq=25_000),
    evaluate=dataclasses.replace(DEMO.evaluate, episodes=5, video=False, random_baseline=True),
    report=dataclasses.replace(DEMO.report, name=None),
)
"""Demo-sized data and VAE; 100k env frames of PPO; 5 fixed tracks."""


@pytest.mark.learning
def test_latent_ppo_beats_random_on_carracing():
    run_pipeline(CHECK)
    stage = next(s for s in plan(CHECK) if s.kind == "evaluate")
    result = json.loads((stage.run_dir(CHECK) / EVALUATION_FILE).read_text())
    agent, random = result["mean_return"], result["random"]["mean_return"]
    assert result["episodes"] == len(result["random"]["returns"]) == CHECK.evaluate.episodes
    assert agent > random + MARGIN, f"latent PPO {agent:.1f} vs random {random:.1f} after {CHECK.agent.env_frames:,}"

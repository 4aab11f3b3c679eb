"""The recipe study's arms are valid recipes: each resolves for its algorithm and changes one factor."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agents.hyperparams import parse_policy_kwargs, resolve_hyperparams
from experiments.recipe_study import ARMS, ENV_ID, arm_named, frame_skip, hyperparams


@pytest.mark.parametrize("arm", ARMS, ids=lambda arm: arm.name)
def test_every_arm_resolves_for_its_algorithm(arm, tmp_path: Path) -> None:
    if arm.algo in ("tqc", "recurrentppo"):
        pytest.importorskip("sb3_contrib")
    path = tmp_path / "arm.yaml"
    path.write_text(yaml.safe_dump({ENV_ID: hyperparams(arm)}))
    hp = resolve_hyperparams(arm.algo, ENV_ID, user_file=path)
    assert hp.frame_skip == frame_skip(arm)
    assert isinstance(parse_policy_kwargs(hp.algo_kwargs.get("policy_kwargs", {})), dict)


def test_arms_differ_from_the_squashed_recipe_in_one_place() -> None:
    base = arm_named("squash")
    for arm in ARMS:
        if arm.algo not in ("ppo", "recurrentppo") or arm is base:
            continue
        changed = {key for key, value in hyperparams(arm).items() if hyperparams(base).get(key) != value}
        changed |= {"latent_history"} if arm.latent_history != base.latent_history else set()
        changed |= {"include_action"} if arm.include_action else set()
        changed |= {"extra_args"} if arm.extra_args else set()
        assert 1 <= len(changed) <= 2, (arm.name, changed)  # e.g. standardize: normalize + its flag


def test_squashed_arm_squashes() -> None:
    kwargs = parse_policy_kwargs(hyperparams(arm_named("squash"))["policy_kwargs"])
    assert kwargs["squash_output"] is True and kwargs["log_std_init"] == -2

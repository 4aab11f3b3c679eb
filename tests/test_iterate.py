"""experiments.pipeline.iterate on the toy env with tiny budgets: two rounds, resumed round by round."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json

import pytest

from experiments.pipeline.iterate import (
    IterateConfig,
    RoundCollectSettings,
    RoundEvaluateSettings,
    refit_command,
    round_stages,
    run_iterate,
)
from experiments.pipeline.settings import AgentSettings, VaeSettings

pytestmark = pytest.mark.filterwarnings("ignore::worldmodel.vae.train.PosteriorCollapseWarning")


def tiny_config(out, **changes) -> IterateConfig:
    config = IterateConfig(
        "worldmodel/DotTarget-v0",
        out=str(out),
        policy_noise=0.0,
        epsilon=0.2,  # DotTarget's actions are discrete: epsilon, not Gaussian noise
        collect=RoundCollectSettings(episodes=4, policy="random", max_steps=25, n_envs=2),
        vae=VaeSettings(epochs=1, batch_size=32, latent_dim=4, width_multiplier=0.25),
        agent=AgentSettings(env_frames=256, n_envs=2, eval_freq=256, eval_episodes=1, checkpoint_freq=256),
        evaluate=RoundEvaluateSettings(episodes=2),
        isolate=False,
        progress=False,
    )
    return dataclasses.replace(config, **changes)


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory):
    """Round 0 alone, then the same command with --rounds 2 (as after a kill between rounds)."""
    out = tmp_path_factory.mktemp("iterate")
    logs: list[str] = []
    first = run_iterate(tiny_config(out, rounds=1), log=logs.append)
    round0 = {name: dict(record) for name, record in first.items()}
    logs.clear()
    stages = run_iterate(tiny_config(out, rounds=2), log=logs.append)
    return tiny_config(out, rounds=2), round0, stages, logs


def test_resumes_with_the_next_round(two_rounds):
    config, round0, stages, logs = two_rounds
    assert logs[0] == "[iterate] round 0: complete, skipped"
    assert not any(line.startswith("[iterate] round0/") for line in logs)
    for name, _ in round_stages(config, 0):
        assert stages[name] == round0[name]  # untouched
    for name, _ in round_stages(config, 1):
        assert stages[name]["status"] == "done", name
    assert json.loads((config.round_dir(0).parent / "stages.json").read_text()) == stages
    assert run_iterate(config, log=lambda msg: None) == stages  # complete: nothing runs again


def test_second_round_collects_with_the_first_agent_and_refits_the_vae(two_rounds):
    config, _, stages, _ = two_rounds
    [collector] = (config.pipeline(1).data_dir / "collectors").glob("*.json")
    attrs = json.loads(collector.read_text())["attrs"]["collect"]
    assert str(config.agent_dir(0)) in attrs["policy"] and attrs["epsilon"] == 0.2
    assert stages["round1/collect"]["policy"] == str(config.agent_dir(0))
    summary = json.loads((config.pipeline(1).vae_dir / "summary.json").read_text())
    assert summary["init"] == str(config.pipeline(0).vae_dir / "best.safetensors")
    assert [d["data_dir"] for d in summary["datasets"]] == [str(config.pipeline(k).data_dir) for k in (0, 1)]
    assert [d["weight"] for d in summary["datasets"]] == [0.5, 0.5]
    refit = stages["round1/train-vae"]["datasets"]
    assert all(d["init_val_mse_per_pixel"] > 0 and d["val_mse_per_pixel"] > 0 for d in refit)
    bundle = json.loads((config.agent_dir(1) / "config.json").read_text())  # the agent sees the refit VAE
    refit_vae = (config.pipeline(1).vae_dir / "best.safetensors").read_bytes()
    assert bundle["vae_sha256"] == hashlib.sha256(refit_vae).hexdigest()
    assert "mean_return" in stages["round1/evaluate/ppo/seed0"]
    command = refit_command(config, 1)
    assert (
        command.startswith(f"worldmodel train-vae {config.pipeline(0).data_dir} {config.pipeline(1).data_dir} --out")
        and "--init" in command
        and "--mix 0.5,0.5" in command
    )


def test_compare_arms_reports_each_round_as_an_arm(two_rounds, tmp_path):
    from experiments.studies.compare_arms import Arm, write_report

    config, _, stages, _ = two_rounds
    out = config.round_dir(0).parent
    arms = [
        Arm("one-shot", str(out / "round0/agents/ppo__seed*")),
        Arm("iterative", str(out / "round1/agents/ppo__seed*")),
    ]
    path = write_report(arms, name="arms", iterate=[str(out)], probe_data=str(config.pipeline(1).data_dir),
                        report_dir=tmp_path)  # fmt: skip
    text = path.read_text()
    for r, label in enumerate(("one-shot", "iterative")):
        ret = json.loads((config.agent_dir(r) / "evaluation.json").read_text())["mean_return"]
        assert f"| {label} | 0 | {ret:.1f} ± " in text  # each arm's row holds its own round's return
    refit = stages["round1/train-vae"]["datasets"][1]  # the agent's frames: round 0's VAE before, the refit after
    assert f"{refit['init_val_mse_per_pixel']:,.5f} → {refit['val_mse_per_pixel']:,.5f}" in text
    data = [json.loads((config.pipeline(r).data_dir / "manifest.json").read_text())["num_steps"] for r in (0, 1)]
    agent = [json.loads((config.agent_dir(r) / "summary.json").read_text())["env_frames"] for r in (0, 1)]
    assert f"| {sum(data) + sum(agent):,} |" in text  # round 1 cumulative: both rounds' data steps and agent frames
    assert "same budget" in text and (tmp_path / "arms" / "learning_curves.png").is_file()
    assert "## VAE error on agent-collected frames" in text and text.count("| frozen VAE |") == 2
    assert "## How far each refit moved the latent code" in text
    assert f"| `{out}` | 1 | " in text and f"| `{out}` | 0 | " not in text  # one row per refit, none for round 0


def test_latent_shift_measures_how_far_the_code_moved():
    import copy

    import numpy as np
    import torch

    from experiments.studies.compare_arms import latent_shift
    from worldmodel.frames import FrameSpec, frames_to_tensor
    from worldmodel.vae.checkpoint import LatentStats, VAECheckpoint
    from worldmodel.vae.model import ConvVAE, VAEConfig

    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(16, 16, latent_dim=4, width_multiplier=0.25)).eval()
    active = np.array([True, True, False, True])
    old = VAECheckpoint(vae, FrameSpec(16, 16), latent_stats=LatentStats(np.zeros(4), np.ones(4), active))
    moved = copy.deepcopy(vae)
    offset = torch.tensor([0.5, -1.0, 9.0, 2.0])
    with torch.no_grad():
        moved.fc_mu.bias += offset  # every mean moves by a constant: a pure shift, the code itself intact
    new = VAECheckpoint(moved, FrameSpec(16, 16))
    frames = np.random.default_rng(0).integers(0, 256, (200, 16, 16, 3), dtype=np.uint8)
    with torch.inference_mode():
        spread = vae.encode(frames_to_tensor(frames, FrameSpec(16, 16)))[0].double().numpy().std(axis=0)
    shift = latent_shift(old, new, frames)
    expected = np.sqrt(np.mean((offset.numpy()[active] / spread[active]) ** 2))  # the inactive dim's 9.0 not counted
    assert shift.dims == 3 and shift.shift == pytest.approx(expected, rel=1e-4)
    assert shift.affine_r2 == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        moved.fc_mu.weight.copy_(torch.randn_like(moved.fc_mu.weight))  # a new code: old means no longer recoverable
    assert latent_shift(old, new, frames).affine_r2 < 0.9
    assert latent_shift(VAECheckpoint(vae, FrameSpec(16, 16), latent_stats=LatentStats(
        np.zeros(4), np.ones(4), np.zeros(4, bool))), new, frames) is None  # fmt: skip
    wider = VAECheckpoint(ConvVAE(VAEConfig(16, 16, latent_dim=6, width_multiplier=0.25)), FrameSpec(16, 16))
    with pytest.raises(ValueError, match="one latent size"):
        latent_shift(old, wider, frames)
    with pytest.raises(ValueError, match="latent statistics: use a VAE written by `worldmodel train-vae`"):
        latent_shift(new, old, frames)  # new has no statistics to tell its active dimensions


def test_compare_arms_bad_input_is_explained(two_rounds, tmp_path):
    from experiments.studies.compare_arms import Arm, parse_arm, write_report

    with pytest.raises(ValueError, match="LABEL=GLOB"):
        parse_arm("runs/x/agents/ppo__seed*")
    with pytest.raises(FileNotFoundError, match=r"\['typo'\]"):
        write_report([Arm("typo", str(tmp_path / "nothing*"))], name="x", report_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="not a `worldmodel iterate` output"):
        config = two_rounds[0]
        arm = Arm("one-shot", str(config.agent_dir(0)))
        write_report([arm], name="x", iterate=[str(tmp_path)], report_dir=tmp_path)


def test_later_rounds_never_collect_on_the_evaluation_tracks(tmp_path, monkeypatch):
    import experiments.pipeline.iterate as iterate

    config = tiny_config(tmp_path, rounds=3)
    config = dataclasses.replace(config, collect=dataclasses.replace(config.collect, episodes=100))
    evaluation = config.pipeline(1).evaluate
    tracks = set(range(evaluation.seed, evaluation.seed + evaluation.episodes))
    for r in (1, 2):
        collect = iterate.agent_collect_config(config, r)
        assert tracks.isdisjoint(range(collect.seed, collect.seed + collect.episodes))
    monkeypatch.setattr(iterate, "ROUND_SEED_STRIDE", evaluation.seed - 50)  # round 1 would reach them
    with pytest.raises(ValueError, match="include the evaluation tracks"):
        iterate.agent_collect_config(config, 1)


def test_compare_arms_reads_the_evaluation_file_it_is_given(two_rounds, tmp_path):
    from experiments.studies.compare_arms import Arm, write_report

    config = two_rounds[0]
    run_dir = config.agent_dir(1)
    other = json.loads((run_dir / "evaluation.json").read_text()) | {"mean_return": 12345.6, "seed": 3_000_000}
    (run_dir / "evaluation-other.json").write_text(json.dumps(other))
    arms = [Arm("iterative", str(run_dir))]
    text = write_report(arms, name="o", iterate=[str(run_dir.parents[2])], evaluation_file="evaluation-other.json",
                        report_dir=tmp_path).read_text()  # fmt: skip
    assert "| iterative | 0 | 12345.6 ± " in text and "| 12345.6 |" in text  # returns table and round table
    assert "episode seeds from 3000000" in text


def test_the_command_line_names_the_sections_fields_by_their_flat_flags():
    import experiments.pipeline.iterate as iterate

    parser = argparse.ArgumentParser()
    iterate.add_arguments(parser)
    assert iterate.config_of(parser.parse_args(["E", "--out", "o"])) == IterateConfig("E", out="o")
    command = (  # experiments/carracing/README.md's, for the iterative arm of carracing-beyond-frozen
        "CarRacing-v3 --rounds 2 --out runs/iterate-s1 --seed 1 --collect-episodes 100 --collect-max-steps 200 "
        "--collect-n-envs 1 --vae-epochs 3 --vae-batch-size 128 --agent-env-frames 81920 --train-eval-freq 16384 "
        "--train-eval-episodes 2 --checkpoint-freq 25000 --eval-episodes 20 --no-progress"
    )
    config = iterate.config_of(parser.parse_args(command.split()))
    assert (config.rounds, config.seed, config.progress) == (2, 1, False)
    assert config.collect == RoundCollectSettings(episodes=100, max_steps=200, n_envs=1)
    assert config.vae == VaeSettings(epochs=3, batch_size=128)
    assert config.agent == AgentSettings(env_frames=81920, eval_freq=16384, eval_episodes=2, checkpoint_freq=25000)
    assert config.pipeline(1).evaluate == RoundEvaluateSettings(episodes=20)
    assert "(default: 100)" in parser.format_help().split("--collect-episodes COLLECT_EPISODES")[-1].split("--")[0]

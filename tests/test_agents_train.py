"""train-agent: every algorithm runs, --pixels runs, bad input is explained, kill -9 then --resume continues;
--encoder finetune trains the encoder (frozen does not)."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback

from agents.algorithms import ALGORITHMS, get_algorithm
from agents.bundle import BundleError, load_bundle
from agents.encoder_extractor import find_extractor
from agents.evaluate import EvaluateConfig, evaluate_agent
from agents.resume import read_state
from agents.train import AgentConfig, add_arguments, resolve, train_agent, trainer_threads
from agents.vec_env import StackConfig, build_vec_env, find_vec_wrapper
from envs.latent.sb3_vec_env import VecLatentObservation
from envs.memory.sb3_vec_env import VecMemoryObservation
from worldmodel.frames import FrameSpec
from worldmodel.vae.checkpoint import file_sha256, load_vae, save_vae
from worldmodel.vae.model import ConvVAE, VAEConfig

ON_POLICY = {"n_steps": 64, "batch_size": 64, "n_epochs": 1}
OFF_POLICY = {"learning_starts": 64, "batch_size": 32, "buffer_size": 1000}
SHORT = {"a2c": {"n_steps": 8}, "trpo": {"n_steps": 64, "batch_size": 64}}
DEFAULT_SUITE = {"ppo", "sac", "dqn"}  # the rest run under `make test-slow` (~6 s each)


def short_hyperparams(tmp_path: Path, algo: str) -> str:
    spec = get_algorithm(algo)
    params = SHORT.get(algo, OFF_POLICY if spec.off_policy else ON_POLICY)
    path = tmp_path / f"{algo}.yml"
    path.write_text(yaml.safe_dump({"default": {**params, "n_envs": 2 if not spec.off_policy else 1}}))
    return str(path)


def quick(tmp_path, algo="ppo", **kwargs) -> AgentConfig:
    fields = {
        "env_id": "worldmodel/DotTarget-v0",
        "algo": algo,
        "timesteps": 256,
        "out": str(tmp_path / "run"),
        "hyperparams": short_hyperparams(tmp_path, algo),
        "eval_freq": 128,
        "eval_episodes": 1,
        "checkpoint_freq": 128,
        "device": "cpu",
        "progress_bar": False,
        "tensorboard": False,
    }
    return AgentConfig(**{**fields, **kwargs})


@pytest.mark.parametrize(
    "algo", [a if a in DEFAULT_SUITE else pytest.param(a, marks=pytest.mark.slow) for a in sorted(ALGORITHMS)]
)
def test_every_algorithm_trains_a_few_hundred_steps_on_latents(tmp_path, toy_vae_path, algo):
    spec = get_algorithm(algo)
    if spec.contrib:
        pytest.importorskip("sb3_contrib")
    discrete = spaces.Discrete in spec.action_spaces
    env_id = "worldmodel/DotTarget-v0" if discrete else "worldmodel/DotTargetContinuous-v0"
    run_dir = train_agent(quick(tmp_path, algo, env_id=env_id, vae=toy_vae_path, latent_history=2))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["agent_steps"] >= 256 and summary["mode"] == "latents"
    assert summary["last_eval"] is not None
    for name in ("policy.json", "policy.safetensors", "model.zip", "vae.safetensors", "config.json", "evaluations.npz",
                 "learning_curve.png"):  # fmt: skip
        assert (run_dir / name).is_file(), name


def test_pixels_mode_trains_the_cnn_baseline_with_the_same_layout(tmp_path):
    # With the command line's defaults for the progress bar and TensorBoard (their packages must be installed).
    run_dir = train_agent(quick(tmp_path, pixels=True, progress_bar=True, tensorboard=True))
    bundle = load_bundle(run_dir, device="cpu")
    assert bundle.venv.observation_space.shape == (2, 64, 64)  # 2 stacked 64x64 grayscale frames
    assert type(bundle.model.policy).__name__ == "ActorCriticCnnPolicy"
    assert bundle.stack.env_config().frame_skip == 2
    assert json.loads((run_dir / "summary.json").read_text())["mode"] == "pixels"
    bundle.venv.close()


def test_latent_history_and_include_action_come_from_the_preset_unless_given_on_the_command_line(tmp_path):
    path = tmp_path / "recipe.yml"
    path.write_text(yaml.safe_dump({"worldmodel/DotTarget-v0": {"latent_history": 3, "include_action": True}}))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["worldmodel/DotTarget-v0", "--hyperparams", str(path)])
    assert (args.latent_history, args.include_action) == (None, None)
    stack = resolve(AgentConfig("worldmodel/DotTarget-v0", hyperparams=str(path)))[2]
    assert (stack.latent_history, stack.include_action) == (3, True)
    given = AgentConfig("worldmodel/DotTarget-v0", hyperparams=str(path), latent_history=1, include_action=False)
    stack = resolve(given)[2]
    assert (stack.latent_history, stack.include_action) == (1, False)
    stack = resolve(AgentConfig("worldmodel/DotTarget-v0"))[2]
    assert (stack.latent_history, stack.include_action) == (1, False)


def test_the_carracing_preset_trains_a_rollout_with_its_whole_recipe(tmp_path):
    """The shipped CarRacing-v3 latent recipe (squashed gSDE, history 2 with the action) loads and trains."""
    import importlib.util

    backend = "envpool" if importlib.util.find_spec("envpool") else "gymnasium"
    config = AgentConfig(
        "CarRacing-v3", vae="experiments/pretrained/carracing/vae.safetensors", n_envs=2, timesteps=512,
        out=str(tmp_path / "run"), eval_freq=0, device="cpu", progress_bar=False, tensorboard=False, backend=backend,
    )  # fmt: skip
    run_dir = train_agent(config)
    stored = json.loads((run_dir / "config.json").read_text())
    assert (stored["stack"]["frame_skip"], stored["stack"]["latent_history"], stored["stack"]["include_action"]) == (
        2,
        2,
        True,
    )
    bundle = load_bundle(run_dir, device="cpu")
    assert bundle.model.policy.squash_output and bundle.model.num_timesteps == 512
    assert bundle.venv.observation_space.shape == (2 * 32 + 3,)  # two latents and the previous action
    bundle.venv.close()


def test_the_carracing_tqc_preset_trains_with_its_recipe(tmp_path):
    """The shipped latent TQC recipe (the screening's best arm) loads and takes gradient steps."""
    import importlib.util

    pytest.importorskip("sb3_contrib")
    early = tmp_path / "early.yml"  # the preset learns from step 5000: start at 64 to train here
    early.write_text(yaml.safe_dump({"CarRacing-v3": {"learning_starts": 64}}))
    backend = "envpool" if importlib.util.find_spec("envpool") else "gymnasium"
    config = AgentConfig(
        "CarRacing-v3", vae="experiments/pretrained/carracing/vae.safetensors", algo="tqc", timesteps=128,
        hyperparams=str(early), out=str(tmp_path / "run"), eval_freq=0, device="cpu", progress_bar=False,
        tensorboard=False, backend=backend,
    )  # fmt: skip
    run_dir = train_agent(config)
    stored = json.loads((run_dir / "config.json").read_text())
    stack, hp = stored["stack"], stored["hyperparams"]
    assert (stack["frame_skip"], stack["latent_history"], hp["n_envs"]) == (2, 2, 2)
    bundle = load_bundle(run_dir, device="cpu")
    assert bundle.model.use_sde and bundle.model.num_timesteps == 128
    assert bundle.venv.observation_space.shape == (2 * 32,)
    bundle.venv.close()
    from sb3_contrib import TQC

    model = TQC.load(run_dir / "model.zip", device="cpu")  # the training state: in SB3's zip (our own file)
    assert model.gradient_steps == 10 and model._n_updates == 10 * (128 - 64) // (4 * 2)  # 10 per 4 steps of 2 envs


def test_a_memory_stack_keeps_one_latent_whatever_the_preset_says(tmp_path):
    path = tmp_path / "recipe.yml"
    path.write_text(yaml.safe_dump({"worldmodel/DotTarget-v0": {"latent_history": 3, "include_action": True}}))
    stack = resolve(AgentConfig("worldmodel/DotTarget-v0", hyperparams=str(path), memory="memory.safetensors"))[2]
    assert (stack.memory, stack.latent_history, stack.include_action) == (True, 1, False)
    with pytest.raises(ValueError, match="latent-history"):  # asked for on the command line: refused, not dropped
        resolve(AgentConfig("worldmodel/DotTarget-v0", hyperparams=str(path), memory="m", latent_history=3))


def test_eval_seeds_are_disjoint_from_training_seeds(tmp_path, toy_vae_path):
    run_dir = train_agent(quick(tmp_path, vae=toy_vae_path, timesteps=64, eval_freq=0))
    config = json.loads((run_dir / "config.json").read_text())
    training = set(range(config["agent"]["seed"], config["agent"]["seed"] + config["hyperparams"]["n_envs"]))
    assert config["eval_seed"] not in training


def test_bad_input_is_explained(tmp_path, toy_vae_path):
    with pytest.raises(ValueError, match="unknown algorithm"):
        train_agent(quick(tmp_path, vae=toy_vae_path, algo="nope", hyperparams=None))
    with pytest.raises(Exception, match="NoSuchEnv"):
        train_agent(quick(tmp_path, env_id="NoSuchEnv-v0", vae=toy_vae_path, out=str(tmp_path / "a")))
    with pytest.raises(ValueError, match=r"--vae"):
        train_agent(quick(tmp_path, out=str(tmp_path / "b")))
    with pytest.raises(FileNotFoundError, match="train-vae"):
        train_agent(quick(tmp_path, vae=str(tmp_path / "missing.safetensors"), out=str(tmp_path / "c")))
    with pytest.raises(ValueError, match=r"dqn needs discrete actions.*worldmodel/DotTarget-v0"):
        train_agent(
            quick(
                tmp_path,
                algo="dqn",
                env_id="worldmodel/DotTargetContinuous-v0",
                vae=toy_vae_path,
                out=str(tmp_path / "d"),
            )
        )
    cropped = tmp_path / "cropped.safetensors"
    save_vae(cropped, ConvVAE(VAEConfig(64, 64, latent_dim=4, width_multiplier=0.25)), FrameSpec(crop=(0, 0, 84, 96)))
    with pytest.raises(ValueError, match=r"cannot provide.*train-vae"):
        train_agent(quick(tmp_path, vae=str(cropped), out=str(tmp_path / "e")))
    done = train_agent(quick(tmp_path, vae=toy_vae_path, timesteps=64, eval_freq=0, out=str(tmp_path / "f")))
    with pytest.raises(ValueError, match="--resume"):
        train_agent(quick(tmp_path, vae=toy_vae_path, out=str(done)))


def _train_command(run_dir: Path, algo: str, env_id: str, vae: str, hyperparams: str, timesteps: int) -> list[str]:
    return [
        sys.executable, "-m", "worldmodel", "train-agent", env_id, "--vae", vae, "--algo", algo,
        "--timesteps", str(timesteps), "--out", str(run_dir), "--hyperparams", hyperparams,
        "--checkpoint-freq", "100", "--eval-freq", "200", "--eval-episodes", "1",
        "--device", "cpu", "--no-progress-bar", "--no-tensorboard",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("algo", "env_id"), [("ppo", "worldmodel/DotTarget-v0"), ("sac", "worldmodel/DotTargetContinuous-v0")]
)
def test_kill_and_resume_continues_from_the_checkpointed_step(tmp_path, toy_vae_path, algo, env_id):
    run_dir = tmp_path / "run"
    hyperparams = short_hyperparams(tmp_path, algo)
    cmd = _train_command(run_dir, algo, env_id, toy_vae_path, hyperparams, 100_000)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while (state := read_state(run_dir)) is None or state["step"] < 300:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint past step 300 within 120 s"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    checkpointed = read_state(run_dir)["step"]
    assert not (run_dir / "model.zip").exists()
    resume = [*cmd[: cmd.index("--timesteps") + 1], str(checkpointed + 200), "--out", str(run_dir), "--resume"]
    subprocess.run([*resume, "--device", "cpu", "--no-progress-bar"], env=env, check=True, capture_output=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed_from_step"] == checkpointed
    assert summary["agent_steps"] >= checkpointed + 200
    if get_algorithm(algo).off_policy:
        assert summary["replay_buffer_restored"] == checkpointed
    evaluations = json.loads((run_dir / "checkpoints" / "state.json").read_text())["eval"]["timesteps"]
    assert evaluations == sorted(evaluations) and evaluations[0] <= checkpointed  # history kept across the kill
    curve = summary["curve"]  # frames and wall-clock measured at every evaluation, across the kill too
    assert [point["step"] for point in curve] == evaluations
    for before, after in itertools.pairwise(curve):
        assert before["elapsed_s"] < after["elapsed_s"] and before["env_frames"] < after["env_frames"]
    assert curve[-1]["env_frames"] <= summary["env_frames"] and curve[-1]["elapsed_s"] <= summary["elapsed_s"]


@pytest.mark.parametrize(
    ("algo", "env_id", "signum"),
    [("ppo", "worldmodel/DotTarget-v0", signal.SIGINT), ("sac", "worldmodel/DotTargetContinuous-v0", signal.SIGTERM)],
)
def test_a_signal_writes_a_resume_checkpoint_and_stops_so_a_resume_loses_nothing(
    tmp_path, toy_vae_path, algo, env_id, signum
):
    run_dir = tmp_path / "run"
    cmd = _train_command(run_dir, algo, env_id, toy_vae_path, short_hyperparams(tmp_path, algo), 100_000)
    cmd[cmd.index("--checkpoint-freq") + 1] = str(10**9)  # no periodic checkpoint: only the signal's
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while not (run_dir / "evaluations.npz").exists():  # training is under way: it evaluated at step 200
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no evaluation within 120 s"
            time.sleep(0.2)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr.decode()
    assert "writing a resume checkpoint" in stderr.decode() and "--resume" in stderr.decode()
    stopped = read_state(run_dir)
    assert stopped is not None and 200 <= stopped["step"] < 100_000
    assert not (run_dir / "model.zip").exists() and not (run_dir / "summary.json").exists()  # not a finished run
    resume = [*cmd[: cmd.index("--timesteps") + 1], str(stopped["step"] + 200), "--out", str(run_dir), "--resume"]
    subprocess.run(resume, env=env, check=True, capture_output=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed_from_step"] == stopped["step"]
    if get_algorithm(algo).off_policy:
        assert summary["replay_buffer_restored"] == stopped["step"]


def test_ctrl_c_to_a_run_with_worker_processes_still_writes_its_checkpoint(tmp_path, toy_vae_path):
    run_dir = tmp_path / "run"
    cmd = _train_command(
        run_dir, "ppo", "worldmodel/DotTarget-v0", toy_vae_path, short_hyperparams(tmp_path, "ppo"), 100_000
    )
    cmd[cmd.index("--checkpoint-freq") + 1] = str(10**9)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*cmd, "--subproc"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while not (run_dir / "evaluations.npz").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no evaluation within 120 s"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the env workers get it too
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr.decode()
    assert read_state(run_dir) is not None and read_state(run_dir)["step"] >= 200


@pytest.mark.parametrize("encoder", ["finetune", "frozen"])
def test_finetune_trains_the_encoder_and_frozen_leaves_it(tmp_path, toy_vae_path, encoder, one_torch_thread):
    run_dir = train_agent(quick(tmp_path, vae=toy_vae_path, encoder=encoder, eval_freq=0))
    initial = load_vae(toy_vae_path).vae.state_dict()
    bundle = load_bundle(run_dir, device="cpu")
    if encoder == "finetune":
        trained = find_extractor(bundle.model.policy).vae.state_dict()
    else:
        trained = find_vec_wrapper(bundle.venv, VecLatentObservation).encoder.vae.state_dict()
    changed = [name for name in initial if name.startswith("encoder") and not torch.equal(initial[name], trained[name])]
    encoder_params = [name for name in initial if name.startswith("encoder")]
    assert changed == (encoder_params if encoder == "finetune" else [])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["mode"] == {"finetune": "finetune", "frozen": "latents"}[encoder]
    assert summary["agent_steps"] >= 256
    assert json.loads((run_dir / "config.json").read_text())["stack"]["encoder"] == encoder
    assert file_sha256(run_dir / "vae.safetensors") == file_sha256(toy_vae_path)  # the VAE copy is never written
    bundle.venv.close()


def test_finetune_bad_input_is_explained(tmp_path, toy_vae_path):
    with pytest.raises(ValueError, match=r"--encoder finetune cannot be combined with --pixels"):
        train_agent(quick(tmp_path, encoder="finetune", pixels=True))
    with pytest.raises(ValueError, match=r"--aux-recon-weight 0.1 needs --encoder finetune"):
        train_agent(quick(tmp_path, vae=toy_vae_path, aux_recon_weight=0.1))
    with pytest.raises(ValueError, match=r"a weight >= 0"):
        train_agent(quick(tmp_path, vae=toy_vae_path, encoder="finetune", aux_recon_weight=-1.0))
    with pytest.raises(ValueError, match=r"cannot be combined with --latent sample"):
        train_agent(quick(tmp_path, vae=toy_vae_path, encoder="finetune", latent="sample"))
    with pytest.raises(ValueError, match=r"--vae"):
        train_agent(quick(tmp_path, encoder="finetune"))
    multi = tmp_path / "multi.yml"
    multi.write_text(yaml.safe_dump({"default": {"policy": "MultiInputPolicy"}}))
    with pytest.raises(ValueError, match=r"not a dict; use MlpPolicy or CnnPolicy"):
        train_agent(quick(tmp_path, vae=toy_vae_path, encoder="finetune", hyperparams=str(multi)))
    clash = tmp_path / "clash.yml"
    clash.write_text(yaml.safe_dump({"default": {"n_steps": 64, "policy_kwargs": {"normalize_images": True}}}))
    with pytest.raises(ValueError, match=r"sets policy_kwargs \['normalize_images'\] itself"):
        train_agent(quick(tmp_path, vae=toy_vae_path, encoder="finetune", hyperparams=str(clash)))


def test_subproc_training_evaluates_on_worker_envs_every_episode(tmp_path, toy_vae_path):
    run_dir = train_agent(quick(tmp_path, vae=toy_vae_path, subproc=True, eval_episodes=3))
    with np.load(run_dir / "evaluations.npz", allow_pickle=False) as data:
        assert data["results"].shape == (2, 3)  # evaluations at 128 and 256 steps, 3 episodes each
        assert (data["ep_lengths"] > 0).all()
    assert json.loads((run_dir / "summary.json").read_text())["agent_steps"] >= 256


def test_resume_of_a_finished_run_without_checkpoints_continues_from_its_bundle(tmp_path, toy_vae_path):
    run_dir = train_agent(quick(tmp_path, vae=toy_vae_path))
    first = json.loads((run_dir / "summary.json").read_text())
    shutil.rmtree(run_dir / "checkpoints")  # e.g. copied back from another machine without them
    train_agent(quick(tmp_path, vae=toy_vae_path, timesteps=512, resume=True))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed_from_step"] == first["agent_steps"]
    assert summary["agent_steps"] >= 512 and summary["env_frames"] > first["env_frames"]
    assert summary["elapsed_s"] > first["elapsed_s"]
    with np.load(run_dir / "evaluations.npz", allow_pickle=False) as data:
        assert data["timesteps"][: len(first["curve"])].tolist() == [p["step"] for p in first["curve"]]
        assert data["timesteps"][-1] > first["agent_steps"]  # the history continued


def test_resume_of_an_off_policy_run_without_checkpoints_is_refused(tmp_path, toy_vae_path):
    train_agent(quick(tmp_path, algo="sac", env_id="worldmodel/DotTargetContinuous-v0", vae=toy_vae_path))
    shutil.rmtree(tmp_path / "run" / "checkpoints")
    config = quick(tmp_path, algo="sac", env_id="worldmodel/DotTargetContinuous-v0", vae=toy_vae_path, resume=True)
    with pytest.raises(ValueError, match="replay buffer"):
        train_agent(dataclasses.replace(config, timesteps=512))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [({"backend": "envpool"}, 1), ({"subproc": True}, 1), ({"torch_threads": 3}, 3), ({}, "torch's own")],
)
def test_trainer_threads_leave_the_cores_to_parallel_envs(monkeypatch, changes, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = AgentConfig("CarRacing-v3", **changes)
    assert trainer_threads(config) == (torch.get_num_threads() if expected == "torch's own" else expected)
    with pytest.raises(ValueError, match="--torch-threads must be >= 1"):
        trainer_threads(AgentConfig("CarRacing-v3", torch_threads=0))


def _evaluation_means(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(run_dir / "evaluations.npz", allow_pickle=False) as data:
        return data["timesteps"], data["results"].mean(axis=1)


def test_keep_best_keeps_the_best_training_evaluations_policy_across_a_resume(tmp_path, toy_vae_path):
    config = quick(tmp_path, vae=toy_vae_path, timesteps=512, eval_freq=64, eval_episodes=2, keep_best=True)
    run_dir = train_agent(config)
    train_agent(quick(tmp_path, vae=toy_vae_path, timesteps=1024, resume=True))  # keep_best comes from config.json
    steps, means = _evaluation_means(run_dir)
    best = json.loads((run_dir / "best" / "best.json").read_text())
    assert len(steps) >= 12 and best["mean_return"] == pytest.approx(means.max())
    assert best["step"] == steps[int(np.argmax(means))]  # the first evaluation that scored the maximum
    assert sorted(p.name for p in (run_dir / "best").iterdir()) == sorted([*best["files"].values(), "best.json"])
    bundle = load_bundle(run_dir, policy="best", device="cpu")
    assert bundle.model.num_timesteps == best["step"] != load_bundle(run_dir, device="cpu").model.num_timesteps
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best_eval"]["step"] == best["step"] and summary["best_eval"]["env_frames"] > 0
    evaluate_agent(EvaluateConfig(str(run_dir), episodes=1, device="cpu", policy="best"))
    scored = json.loads((run_dir / "evaluation-best.json").read_text())
    assert (scored["policy"], scored["policy_step"]) == ("best", best["step"])
    assert not (run_dir / "evaluation.json").exists()


def test_keep_best_can_start_when_a_run_is_continued_and_needs_evaluations(tmp_path, toy_vae_path):
    run_dir = train_agent(quick(tmp_path, vae=toy_vae_path))
    with pytest.raises(BundleError, match="--keep-best"):
        load_bundle(run_dir, policy="best", device="cpu")
    train_agent(quick(tmp_path, vae=toy_vae_path, timesteps=512, resume=True, keep_best=True))
    best = json.loads((run_dir / "best" / "best.json").read_text())
    steps, means = _evaluation_means(run_dir)
    assert best["step"] > 256 and best["mean_return"] == pytest.approx(means[steps > 256].max())
    record = run_dir / "best" / "best.json"
    record.write_text(json.dumps({**best, "mean_return": 1e9}))  # a record no later evaluation beats
    train_agent(quick(tmp_path, vae=toy_vae_path, timesteps=768, resume=True))
    assert json.loads(record.read_text())["step"] == best["step"]
    with pytest.raises(ValueError, match="--eval-freq"):
        train_agent(quick(tmp_path, vae=toy_vae_path, out=str(tmp_path / "other"), eval_freq=0, keep_best=True))
    assert not (tmp_path / "other").exists()


class _EncoderPrecisions(BaseCallback):
    """Records the precision of the training env's encoder at each evaluation."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def _on_step(self) -> bool:
        self.seen.append(find_vec_wrapper(self.model.get_env(), VecLatentObservation).encoder.precision)
        return True


def _bundle_precision(run_dir: Path) -> str:
    bundle = load_bundle(run_dir, device="cpu")
    try:
        return find_vec_wrapper(bundle.venv, VecLatentObservation).encoder.precision
    finally:
        bundle.venv.close()


@pytest.mark.parametrize("auto_means", ["fp32", "bf16"])
def test_the_encoder_precision_auto_picks_is_recorded_and_kept_by_resume_and_evaluation(
    tmp_path, toy_vae_path, monkeypatch, auto_means
):
    monkeypatch.setenv("WORLDMODEL_AUTO_PRECISION", auto_means)
    first = _EncoderPrecisions()
    run_dir = train_agent(quick(tmp_path, vae=toy_vae_path), after_eval=first)
    stored = json.loads((run_dir / "config.json").read_text())
    assert stored["agent"]["encoder_precision"] == stored["stack"]["encoder_precision"] == auto_means
    assert first.seen == [auto_means, auto_means]
    monkeypatch.setenv("WORLDMODEL_AUTO_PRECISION", "bf16" if auto_means == "fp32" else "fp32")  # another machine
    resumed = _EncoderPrecisions()
    train_agent(quick(tmp_path, vae=toy_vae_path, timesteps=512, resume=True), after_eval=resumed)
    assert resumed.seen == [auto_means, auto_means]
    assert _bundle_precision(run_dir) == auto_means


def test_runs_and_bundles_from_before_the_encoder_precision_option_encode_in_fp32(tmp_path, toy_vae_path, monkeypatch):
    run_dir = train_agent(quick(tmp_path, vae=toy_vae_path, encoder_precision="fp32"))
    stored = json.loads((run_dir / "config.json").read_text())
    del stored["agent"]["encoder_precision"], stored["stack"]["encoder_precision"], stored["checksum_sha256"]
    (run_dir / "config.json").write_text(json.dumps(stored))
    monkeypatch.setenv("WORLDMODEL_AUTO_PRECISION", "bf16")
    assert _bundle_precision(run_dir) == "fp32"
    resumed = _EncoderPrecisions()
    train_agent(quick(tmp_path, vae=toy_vae_path, timesteps=512, resume=True), after_eval=resumed)
    assert resumed.seen == ["fp32", "fp32"]


def test_a_bf16_encoder_hands_the_policy_latents_close_to_fp32s(toy_vae_path):
    latents = {}
    for precision in ("fp32", "bf16"):
        stack = StackConfig(env_id="worldmodel/DotTarget-v0", latent_history=2, encoder_precision=precision)
        venv = build_vec_env(stack, n_envs=2, seed=0, vae=toy_vae_path, device="cpu")
        assert find_vec_wrapper(venv, VecLatentObservation).encoder.precision == precision
        latents[precision] = venv.reset()
        venv.close()
    assert latents["bf16"].shape == latents["fp32"].shape == (2, 2 * load_vae(toy_vae_path).vae.config.latent_dim)
    assert not np.array_equal(latents["bf16"], latents["fp32"])  # bf16 did run
    np.testing.assert_allclose(latents["bf16"], latents["fp32"], atol=0.05)


def test_a_memory_stack_encodes_in_its_recorded_precision(toy_vae_path, toy_memory_path):
    stack = StackConfig(env_id="worldmodel/DotTarget-v0", memory=True, encoder_precision="bf16")
    venv = build_vec_env(stack, n_envs=1, seed=0, vae=toy_vae_path, device="cpu", memory=toy_memory_path)
    assert find_vec_wrapper(venv, VecMemoryObservation).encoder.precision == "bf16"
    venv.close()


def test_encoder_precision_is_refused_where_no_frozen_encoder_runs():
    assert resolve(AgentConfig("CarRacing-v3", pixels=True))[2].encoder_precision == "fp32"  # auto: nothing to set
    with pytest.raises(ValueError, match="--encoder-precision bf16 cannot be combined with --pixels"):
        resolve(AgentConfig("CarRacing-v3", pixels=True, encoder_precision="bf16"))
    with pytest.raises(ValueError, match="encoder_precision must be one of"):
        StackConfig(env_id="CarRacing-v3", encoder_precision="auto")


@pytest.mark.parametrize(
    ("min_steps", "enabled", "compiled"), [(1, True, True), (10**9, True, False), (1, False, False)]
)
def test_off_policy_runs_compile_their_update_when_they_plan_enough_gradient_steps(
    tmp_path, toy_vae_path, monkeypatch, min_steps, enabled, compiled
):
    calls = []
    monkeypatch.setattr("agents.train.MIN_GRADIENT_STEPS", min_steps)
    monkeypatch.setattr("agents.train.compile_update", lambda model, on: calls.append((type(model).__name__, on)))
    config = quick(tmp_path, algo="sac", env_id="worldmodel/DotTargetContinuous-v0", vae=toy_vae_path, timesteps=64)
    train_agent(dataclasses.replace(config, compile_update=enabled))
    assert calls == ([("SAC", enabled)] if min_steps == 1 else [])
    assert compiled == bool(calls and calls[0][1])

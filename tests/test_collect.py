import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from envs.collect import CollectConfig, CollectError, collect_rollouts, run_episode
from envs.factory import make_env
from envs.policies import BrownianPolicy
from envs.toy import DotTargetEnv
from worldmodel.cli import main
from worldmodel.data import DatasetError, FrameDataset

TOY = "worldmodel/DotTarget-v0"


class FlakyEnv(DotTargetEnv):
    """The toy env whose step hangs (or kills its process) during episode seed ``bad_seed``.

    With a ``marker`` path it misbehaves only once: the first time, it creates the marker.
    """

    def __init__(self, mode="hang", bad_seed=1, marker=None, render_mode=None):
        super().__init__(render_mode=render_mode)
        self.mode, self.bad_seed, self.marker = mode, bad_seed, marker
        self._bad = False

    def reset(self, *, seed=None, options=None):
        self._bad = seed == self.bad_seed
        return super().reset(seed=seed, options=options)

    def step(self, action):
        if self._bad and (self.marker is None or not os.path.exists(self.marker)):
            if self.marker is not None:
                Path(self.marker).touch()
            if self.mode == "hang":
                time.sleep(3600)
            if self.mode == "raise":
                raise RuntimeError("boom")
            os._exit(3)
        return super().step(action)


gym.register("Flaky-v0", entry_point=FlakyEnv, max_episode_steps=100)


def config(out, **kw):
    defaults = {"episodes": 4, "n_envs": 2, "max_steps": 15, "progress": False}
    return CollectConfig(kw.pop("env_id", TOY), out=out, **{**defaults, **kw})


def episodes_by_index(data_dir):
    ds = FrameDataset.open(data_dir)
    return {ds.episode(row).episode_index: ds.episode(row) for row in range(ds.num_episodes)}


def assert_same_episodes(a, b):
    assert sorted(a) == sorted(b)
    for i in a:
        for key in ("frames", "actions", "rewards", "terminated", "truncated", "states"):
            np.testing.assert_array_equal(getattr(a[i], key), getattr(b[i], key), err_msg=f"episode {i} {key}")
        assert a[i].seed == b[i].seed


def test_toy_collection_matches_a_single_process_rollout(tmp_path):
    cfg = config(tmp_path, policy="random", seed=10)
    summary = collect_rollouts(cfg)
    assert (summary.new_episodes, summary.episodes) == (4, 4)
    eps = episodes_by_index(tmp_path)
    assert sorted(eps) == [0, 1, 2, 3] and summary.frames == sum(len(e.frames) for e in eps.values())
    assert summary.disk_bytes > summary.frames * 64 * 64 * 3
    # the worker pool changes nothing: episode 2 equals running it here with seed 10 + 2
    from envs.policies import RandomPolicy

    env = make_env(cfg.env_config)
    direct = run_episode(env, RandomPolicy(env.action_space), cfg.env_config.frame_spec, 12, cfg.max_steps)
    np.testing.assert_array_equal(eps[2].frames, direct["frames"])
    np.testing.assert_array_equal(eps[2].actions, direct["actions"])
    np.testing.assert_array_equal(eps[2].states, direct["states"])
    assert eps[2].truncated[-1] or eps[2].terminated[-1]
    assert all(len(e.rewards) <= 15 for e in eps.values())


def test_resume_collects_only_missing_episodes(tmp_path):
    collect_rollouts(config(tmp_path / "a", episodes=3, policy="random"))
    second = collect_rollouts(config(tmp_path / "a", episodes=6, policy="random"))
    assert second.new_episodes == 3 and second.episodes == 6
    collect_rollouts(config(tmp_path / "b", episodes=6, n_envs=1, policy="random"))
    assert_same_episodes(episodes_by_index(tmp_path / "a"), episodes_by_index(tmp_path / "b"))
    assert collect_rollouts(config(tmp_path / "a", episodes=6)).new_episodes == 0


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path):
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "worldmodel", "collect", TOY, "--out", str(out), "--episodes", "40",
            "--max-steps", "30", "--n-envs", "2", "--seed", "5", "--shard-mib", "0.1", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list((out / "shards").glob("*.meta.npz")) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = FrameDataset.open(out).num_episodes
    assert 0 < partial < 40, "the kill came too late to test resuming"
    assert subprocess.run(argv, capture_output=True, timeout=120).returncode == 0
    collect_rollouts(config(tmp_path / "whole", episodes=40, max_steps=30, seed=5))
    assert_same_episodes(episodes_by_index(out), episodes_by_index(tmp_path / "whole"))
    visible = [
        p for p in out.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(out).parts)
    ]
    assert all(p.name.endswith((".json", ".npy", ".npz")) for p in visible)
    assert not list(out.rglob("*.tmp"))


def test_hung_worker_is_reported_replaced_and_the_episode_rerun(tmp_path, capsys):
    cfg = config(tmp_path / "d", env_id="test_collect:Flaky-v0", step_timeout=1.0,
                 env_kwargs={"marker": str(tmp_path / "hung-once")})  # fmt: skip
    start = time.monotonic()
    summary = collect_rollouts(cfg)
    assert time.monotonic() - start < 30
    assert summary.episodes == 4
    err = capsys.readouterr().err
    assert "test_collect:Flaky-v0 episode 1 (seed 1)" in err and "hung" in err and "attempt 2 of 3" in err
    clean = config(tmp_path / "clean", env_id="test_collect:Flaky-v0", env_kwargs={"bad_seed": -1})
    assert collect_rollouts(clean).episodes == 4
    assert_same_episodes(episodes_by_index(tmp_path / "d"), episodes_by_index(tmp_path / "clean"))


def test_always_hanging_episode_ends_with_a_clear_error(tmp_path):
    cfg = config(tmp_path, env_id="test_collect:Flaky-v0", step_timeout=1.0, max_retries=1)
    start = time.monotonic()
    with pytest.raises(
        CollectError, match=r"no progress for 1 s \(hung\) on test_collect:Flaky-v0 episode 1 .*2 times"
    ):
        collect_rollouts(cfg)
    assert time.monotonic() - start < 30
    # the other episodes that finished were kept
    assert 1 not in episodes_by_index(tmp_path)


def test_dead_worker_is_replaced(tmp_path, capsys):
    cfg = config(tmp_path, env_id="test_collect:Flaky-v0",
                 env_kwargs={"mode": "exit", "marker": str(tmp_path / "died-once")})  # fmt: skip
    assert collect_rollouts(cfg).episodes == 4
    assert "died (exit code 3) on test_collect:Flaky-v0 episode 1" in capsys.readouterr().err


def test_env_exception_ends_with_its_traceback(tmp_path):
    cfg = config(tmp_path, env_id="test_collect:Flaky-v0", env_kwargs={"mode": "raise"}, max_retries=0)
    with pytest.raises(CollectError, match=r"raised RuntimeError: boom on test_collect:Flaky-v0 episode 1(.|\n)*step"):
        collect_rollouts(cfg)


def test_vector_env_through_render_stores_state(tmp_path):
    cfg = config(tmp_path, env_id="Pendulum-v1", episodes=2, max_steps=8, policy="brownian", size=(32, 48))
    collect_rollouts(cfg)
    ds = FrameDataset.open(tmp_path)
    assert ds.frame_spec.shape == (32, 48, 3) and ds.state_dim == 3 and ds.num_frames == 18
    ep = ds.episode(0)
    assert ep.actions.shape == (8, 1) and ep.truncated[-1] and ep.frames.std() > 0


def test_car_racing_short_episodes(tmp_path):
    cfg = config(tmp_path, env_id="CarRacing-v3", episodes=2, max_steps=20, policy="brownian", grayscale=True)
    summary = collect_rollouts(cfg)
    ds = FrameDataset.open(tmp_path)
    assert ds.frame_spec.shape == (64, 64, 1) and ds.state_dim == 4 and ds.num_frames == 42
    assert summary.env_frames == 2 * (50 + 20)  # the zoom-in frames are consumed, not stored
    ep = ds.episode(0)
    assert ep.actions.shape == (20, 3) and ep.actions.dtype == np.float32
    policy = BrownianPolicy(make_env("CarRacing-v3").action_space)
    policy.reset(ep.seed)
    np.testing.assert_array_equal(ep.actions[:3], [policy(None, {}) for _ in range(3)])


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["collect", TOY, "--out", str(tmp_path), "--policy", "runs/agent"]) == 2
    assert "unknown policy 'runs/agent'" in capsys.readouterr().err
    assert main(["collect", "NoSuchEnv-v0", "--out", str(tmp_path)]) == 2
    assert "Hint:" in capsys.readouterr().err


def test_cli_collects_with_frame_spec_options(tmp_path, capsys):
    argv = ["collect", TOY, "--out", str(tmp_path), "--episodes", "2", "--n-envs", "1", "--max-steps", "5",
            "--size", "16", "24", "--crop", "0", "0", "48", "64", "--grayscale", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "2 episodes, 12 frames" in capsys.readouterr().out
    ds = FrameDataset.open(tmp_path)
    assert ds.frame_spec.shape == (16, 24, 1) and ds.frame_spec.crop == (0, 0, 48, 64)


class AlwaysRight:
    """A custom policy (what a trained agent plugs in as): always action 4."""

    def __init__(self, action_space):
        self.action = 4

    def reset(self, seed):
        pass

    def __call__(self, observation, info):
        assert observation.shape == (64, 64, 3)
        return self.action


def test_custom_policy_is_used_and_recorded(tmp_path):
    collect_rollouts(config(tmp_path, episodes=2), policy=AlwaysRight)
    ds = FrameDataset.open(tmp_path)
    assert all((ds.episode(row).actions == 4).all() for row in range(ds.num_episodes))
    (collector,) = (tmp_path / "collectors").glob("*.json")
    assert json.loads(collector.read_text())["attrs"]["collect"]["policy"] == "AlwaysRight"


@pytest.mark.parametrize("collector_ids", [(None, None), ("a", "b")], ids=["default-ids", "distinct-ids"])
def test_two_collectors_into_one_directory_store_each_episode_once(tmp_path, collector_ids):
    out = tmp_path / "data"
    argv = [sys.executable, "-m", "worldmodel", "collect", TOY, "--out", str(out), "--episodes", "12",
            "--n-envs", "1", "--max-steps", "30", "--no-progress"]  # fmt: skip
    runs = [
        subprocess.Popen([*argv, *(["--collector-id", cid] if cid else [])], stdout=subprocess.PIPE, text=True)
        for cid in collector_ids
    ]
    assert all(run.wait(timeout=300) == 0 for run in runs)
    ds = FrameDataset.open(out)
    indices = sorted(ds.episode(row).episode_index for row in range(ds.num_episodes))
    assert indices == list(range(12))  # every episode, none twice
    new = [
        int(line.split("this run: ")[1].split(" episodes")[0])
        for run in runs
        for line in run.stdout
        if "this run: " in line
    ]
    assert sum(new) == 12  # no episode collected twice


def test_a_claim_left_by_a_killed_collector_is_taken_over(tmp_path):
    from envs.episode_claims import EpisodeClaims

    out = tmp_path / "data"
    dead = EpisodeClaims(out).__enter__()
    assert dead.claim(3)
    os.close(dead._lock)  # what kill -9 does to its flock; its claim file stays
    collect_rollouts(config(out, episodes=5))
    assert sorted(episodes_by_index(out)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_collecting_again_replaces_the_episodes_of_a_damaged_shard(tmp_path, capsys, damage):
    out = tmp_path / "data"
    cfg = config(out, episodes=6, n_envs=1, shard_mib=0.01)  # a shard every episode or two
    collect_rollouts(cfg)
    collect_rollouts(config(tmp_path / "whole", episodes=6, n_envs=1))
    frames = sorted((out / "shards").glob("*.frames.npy"))
    assert len(frames) >= 2
    data = bytearray(frames[0].read_bytes())
    if damage == "truncate":
        frames[0].write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[-100:] = bytes(b ^ 0xFF for b in data[-100:])
        frames[0].write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="run the same `worldmodel collect` command again"):
        FrameDataset.open(out, verify="full")
    summary = collect_rollouts(cfg)
    err = capsys.readouterr().err
    assert f"shard {frames[0].name.removesuffix('.frames.npy')}" in err and "collected again" in err
    assert summary.new_episodes >= 1
    assert_same_episodes(episodes_by_index(out), episodes_by_index(tmp_path / "whole"))  # every episode, as before
    assert (out / "damaged" / frames[0].name).is_file()  # the damaged file is kept, set aside

"""Refusals (issue 38): a bad input, a damaged file or a write that runs out of room ends in one line naming the
file and the fix, exit status 2; nothing half-made is left behind, and the rerun with good inputs works."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from worldmodel.cli import DEBUG_ENV, main
from worldmodel.common.atomic import DiskFullError, atomic_path, write_json_atomic
from worldmodel.common.sealed import sealed
from worldmodel.data import DatasetWriter, FrameDataset
from worldmodel.data.__main__ import main as data_main
from worldmodel.frames import FrameSpec
from worldmodel.vae.checkpoint import load_vae, save_vae
from worldmodel.vae.model import ConvVAE, VAEConfig

TOY = "worldmodel/DotTarget-v0"
QUICK_PPO = {"default": {"n_steps": 64, "batch_size": 64, "n_epochs": 1, "n_envs": 2}}
AGENT_FLAGS = ["--timesteps", "128", "--eval-freq", "0", "--device", "cpu", "--no-progress-bar", "--no-tensorboard"]


def error_line(capsys, prog: str) -> str:
    """The one line a refused command wrote to stderr (asserting it is exactly one, from ``prog``)."""
    err = capsys.readouterr().err
    assert err.startswith(f"{prog}: error: ") and err.count("\n") == 1, err
    return err


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def flip(path: Path, count: int = 32) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) * 3 // 4
    data[at : at + count] = bytes(b ^ 0xFF for b in data[at : at + count])
    path.write_bytes(bytes(data))


def flip_tensor_bytes(path: Path, count: int = 64) -> None:
    """Flip bytes inside a safetensors file's tensor data (past its JSON header)."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    at = start + (len(data) - start) * 3 // 4
    data[at : at + count] = bytes(b ^ 0xFF for b in data[at : at + count])
    path.write_bytes(bytes(data))


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """Writes past ``nbytes`` fail with EFBIG (Python ignores SIGXFSZ) until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    (tmp_path / "hp.yml").write_text(yaml.safe_dump(QUICK_PPO))
    return tmp_path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, toy_vae_path):
    """A finished PPO run on the toy env (128 steps, normalised latents, with a resume checkpoint)."""
    from agents.train import AgentConfig, train_agent

    root = tmp_path_factory.mktemp("trained")
    (root / "hp.yml").write_text(yaml.safe_dump(QUICK_PPO))
    quiet = {"device": "cpu", "progress_bar": False, "tensorboard": False}
    config = AgentConfig(TOY, vae=toy_vae_path, timesteps=128, out=str(root / "run"), hyperparams=str(root / "hp.yml"),
                         eval_freq=0, checkpoint_freq=64, **quiet)  # fmt: skip
    run_dir = train_agent(config)
    assert (run_dir / "checkpoints" / "state.json").is_file() and (run_dir / "vec_normalize.npz").is_file()
    return run_dir


@pytest.fixture
def run_copy(trained_run, workdir):
    return Path(shutil.copytree(trained_run, workdir / "run"))


# ---------------------------------------------------------------------------------------------
# b. damaged shards: never skipped silently; the repair the messages give works in their order


def _collect(out, episodes=3):
    from envs.collect import CollectConfig, collect_rollouts

    config = CollectConfig(TOY, out=out, episodes=episodes, n_envs=1, max_steps=6, progress=False, shard_mib=0.01)
    return collect_rollouts(config)


def test_a_damaged_manifest_and_shard_are_repaired_in_the_order_the_messages_give(tmp_path, capsys):
    data = tmp_path / "data"
    _collect(data)  # a shard per episode
    frames = sorted((data / "shards").glob("*.frames.npy"))
    assert len(frames) == 3
    truncate(frames[1])
    (manifest,) = (data / "collectors").glob("*.json")
    truncate(manifest)
    capsys.readouterr()

    assert data_main([str(data), "--verify"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot read manifest {manifest}" in err
    assert f"`python -m worldmodel.data {data} --rebuild`" in err
    # step 1, as the message says: rebuild. The truncated shard is set aside (not left in shards/), in one line
    assert data_main([str(data), "--rebuild"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"shard {frames[1].name.split('.')[0]} is damaged" in err
    assert "collected again by the same `worldmodel collect` command" in err
    assert sorted(p.name for p in (data / "damaged").iterdir()) == [frames[1].name, frames[1].name[:-11] + ".meta.npz"]
    assert FrameDataset.open(data, verify="full").num_episodes == 2
    # step 2: collect again, which replaces the lost episode
    assert _collect(data).new_episodes == 1
    ds = FrameDataset.open(data, verify="full")
    assert sorted(ds.episode_index.tolist()) == [0, 1, 2]


def _damage_header(data):
    path = sorted((data / "shards").glob("*.frames.npy"))[0]
    raw = bytearray(path.read_bytes())
    raw[10:60] = b"x" * 50  # the .npy header's dict, unparseable: numpy's tokenizer raised a TokenError
    path.write_bytes(bytes(raw))
    return path.name


def _drop_a_shard_key(data):
    (path,) = (data / "collectors").glob("*.json")
    manifest = json.loads(path.read_text())
    del manifest["shards"][0]["frame_spec"]
    path.write_text(json.dumps(manifest))
    return f"{path.name} is damaged: its shard entry 0 lacks frame_spec"


def _not_a_mapping(data):
    (path,) = (data / "collectors").glob("*.json")
    path.write_text("[1, 2]")
    return f"{path.name} is damaged: it holds no list of shards"


@pytest.mark.parametrize("damage", [_damage_header, _drop_a_shard_key, _not_a_mapping], ids=["npy-header",
                         "manifest-lacks-a-key", "manifest-not-a-mapping"])  # fmt: skip
def test_verify_names_a_damaged_shard_or_manifest_in_one_line(tmp_path, capsys, damage):
    from conftest import write_blob_dataset

    data = write_blob_dataset(tmp_path / "data", episodes=2, steps=5, size=8)
    fragment = damage(data)
    assert data_main([str(data), "--verify"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m worldmodel.data: error: ") and err.count("\n") == 1, err
    assert fragment in err and ("worldmodel collect" in err or "--rebuild" in err)


def test_a_damaged_uncommitted_shard_is_set_aside_with_a_warning_not_ignored(tmp_path):
    spec = FrameSpec(height=8, width=8)

    def episode(i):
        return (np.full((4, 8, 8, 3), i, np.uint8), np.zeros((3, 1), np.float32), np.zeros(3), np.zeros(3, bool),
                np.eye(3, dtype=bool)[2])  # fmt: skip

    with DatasetWriter(tmp_path, env_id="Demo-v0", frame_spec=spec, collector_id="c") as writer:
        for i in range(2):
            writer.add_episode(*episode(i), seed=i, episode_index=i)
            writer.flush()
    manifest_path = tmp_path / "collectors" / "c.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["shards"] = manifest["shards"][:1]  # the second shard committed, then killed before its manifest update
    manifest_path.write_text(json.dumps(manifest))
    truncate(tmp_path / "shards" / "c-000001.frames.npy")  # ... and damaged since
    warns = pytest.warns(UserWarning, match="shard c-000001 was committed damaged: moved to")
    with warns, DatasetWriter(tmp_path, env_id="Demo-v0", frame_spec=spec, collector_id="c") as writer:
        assert writer.existing_episodes() == {(0, 0)}  # its episode is missing: collected again
    assert sorted(p.name for p in (tmp_path / "damaged").iterdir()) == ["c-000001.frames.npy", "c-000001.meta.npz"]


# ---------------------------------------------------------------------------------------------
# c, d. checkpoints with flipped bytes or NaN weights are refused by every command, before anything is made


def _spoiled(src: str, dest: Path, damage: str) -> str:
    """A copy of the checkpoint ``src`` at ``dest`` with bytes flipped in its weights, or one weight tensor NaN
    (saved with a matching checksum, as a diverged training saved without the NaN guard would be)."""
    shutil.copyfile(src, dest)
    if damage == "flipped":
        flip_tensor_bytes(dest)
        return str(dest)
    from safetensors import safe_open

    from worldmodel.vae.checkpoint import save_tensors

    with safe_open(str(dest), framework="pt") as f:
        header, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    name = next(k for k, t in sorted(tensors.items()) if t.is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_tensors(dest, tensors, header)
    return str(dest)


COMMANDS = {  # {bad16}: a damaged 16x16 VAE, {bad}: a damaged VAE of the toy env, {badmem}: a damaged memory model
    "info": "info {bad16}",
    "encode": "encode {data} --vae {bad16} --out out",
    "train-vae": "train-vae {data} --out out --batch-size 16 --init {bad16} --width-multiplier 0.25 --latent-dim 4",
    "train-memory": "train-memory {data} --vae {bad16} --out out",
    "train-agent": f"train-agent {TOY} --vae {{bad}} --out out",
    "train-agent-memory": f"train-agent {TOY} --vae {{good}} --memory {{badmem}} --out out",
    "tune": f"tune {TOY} --vae {{bad}} --out out",
}


@pytest.mark.parametrize("damage", ["flipped", "nan"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_damaged_checkpoint_is_refused_before_anything_is_made(
    command, damage, workdir, toy_vae_path, toy_memory_path, blob_dataset, tiny_config, capsys
):
    save_vae(workdir / "vae16.safetensors", ConvVAE(tiny_config), FrameSpec(height=16, width=16))
    paths = {
        "bad16": _spoiled(str(workdir / "vae16.safetensors"), workdir / "bad16.safetensors", damage),
        "bad": _spoiled(toy_vae_path, workdir / "bad.safetensors", damage),
        "badmem": _spoiled(toy_memory_path, workdir / "badmem.safetensors", damage),
        "data": blob_dataset,
        "good": toy_vae_path,
    }
    argv = COMMANDS[command].format(**paths).split()
    if argv[0] == "train-agent":
        argv += AGENT_FLAGS
    before = files(workdir)
    assert main(argv) == 2
    err = error_line(capsys, f"worldmodel {argv[0]}")
    assert "bad" in err and "retrain" in err
    assert ("do not match the checksum" if damage == "flipped" else "hold NaN or infinite values") in err
    assert files(workdir) == before  # no half-made output directory


def test_train_agent_refuses_nan_weights_then_the_rerun_with_a_good_vae_trains(workdir, toy_vae_path, capsys):
    bad = _spoiled(toy_vae_path, workdir / "nan.safetensors", "nan")
    argv = ["train-agent", TOY, "--out", "run", "--hyperparams", "hp.yml", *AGENT_FLAGS]
    assert main([*argv, "--vae", bad]) == 2
    assert "nan.safetensors" in error_line(capsys, "worldmodel train-agent")
    assert not (workdir / "run").exists()
    assert main([*argv, "--vae", toy_vae_path]) == 0  # not "already holds a train-agent run"
    assert (workdir / "run" / "policy.json").is_file()


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("default: {n_epochs: one}", ["hyperparameter n_epochs: 'one' (str) is not an integer", "hp-bad.yml"]),
        ("default: {gamma: high}", ["hyperparameter gamma: 'high' (str) is not a number"]),
        ("default: {learning_rate: lin_fast}", ["learning_rate: 'lin_fast'", "a schedule ('lin_<x>' or 'cos_<x>')"]),
        ("default: {n_envs: two}", ["hyperparameter n_envs: 'two' (str) is not an integer"]),
        ("default: {normalize_advantage: 3}", ["normalize_advantage: 3 (int) is not true or false"]),
        ("default:\n  n_steps: [64\n", ["hp-bad.yml is not valid YAML at line 3", "fix it"]),
    ],
    ids=["int", "float", "schedule", "special-key", "bool", "yaml-syntax"],
)
def test_a_hyperparameter_file_that_cannot_be_used_is_refused_before_the_run_exists(
    workdir, toy_vae_path, capsys, text, fragments
):
    (workdir / "hp-bad.yml").write_text(text)
    before = files(workdir)
    assert main(["train-agent", TOY, "--vae", toy_vae_path, "--out", "run", "--hyperparams", "hp-bad.yml"]) == 2
    err = error_line(capsys, "worldmodel train-agent")
    for fragment in fragments:
        assert fragment in err
    assert files(workdir) == before


@pytest.mark.parametrize("out_existed", [False, True])
def test_a_run_that_fails_to_start_leaves_no_half_made_run(workdir, toy_vae_path, monkeypatch, capsys, out_existed):
    import agents.train

    if out_existed:  # e.g. tune's trial directories, made before train-agent runs
        (workdir / "run").mkdir()
        (workdir / "run" / "recipe.yaml").write_text("x: 1\n")
    before = files(workdir)

    def refuse(model):
        raise ValueError("this policy cannot be stored without pickle")

    monkeypatch.setattr(agents.train, "check_storable", refuse)  # the last check before training starts
    assert main(["train-agent", TOY, "--vae", toy_vae_path, "--out", "run", "--hyperparams", "hp.yml"]) == 2
    assert "cannot be stored" in error_line(capsys, "worldmodel train-agent")
    assert files(workdir) == before  # no config.json to make the rerun say "already holds a train-agent run"


def test_resume_refuses_a_vae_or_hyperparameters_other_than_the_runs(workdir, toy_vae_path, tiny_config, capsys):
    from agents.train import AgentConfig, _prepare_run_dir, resolve, write_run_config

    config = AgentConfig(TOY, vae=toy_vae_path, out="run", hyperparams="hp.yml")
    write_run_config(Path("run"), config, *resolve(config))  # a run left before its first checkpoint
    other = workdir / "other.safetensors"
    vae = load_vae(toy_vae_path)
    with torch.no_grad():
        vae.vae.fc_mu.bias.add_(1.0)
    save_vae(other, vae.vae, vae.frame_spec, latent_stats=vae.latent_stats)
    (workdir / "hp2.yml").write_text(yaml.safe_dump({"default": {**QUICK_PPO["default"], "n_epochs": 3}}))
    before = files(workdir)

    assert main(["train-agent", TOY, "--out", "run", "--resume", "--vae", str(other)]) == 2
    err = error_line(capsys, "worldmodel train-agent")
    assert "--resume continues run with the vae it started with (run/vae.safetensors" in err
    assert f"--vae {other} is another file" in err and "drop the option" in err
    assert main(["train-agent", TOY, "--out", "run", "--resume", "--hyperparams", "hp2.yml"]) == 2
    assert "--hyperparams hp2.yml gives other values of n_epochs" in error_line(capsys, "worldmodel train-agent")
    assert files(workdir) == before
    # the inputs it started with (the same content under another name) pass
    shutil.copyfile(toy_vae_path, workdir / "same.safetensors")
    _prepare_run_dir(AgentConfig(TOY, vae="same.safetensors", out="run", hyperparams="hp.yml", resume=True))


# ---------------------------------------------------------------------------------------------
# e. evaluation progress files that cannot be used are named in one line, and the evaluation starts over


@pytest.mark.parametrize(
    "log",
    [
        {"finished": [[["a return", 5]]]},
        {"finished": [[[1.0]]]},
        {"finished": "not a list of envs"},
        {"finished": [[[1.0, 5], [2.0, 5], [3.0, 5]]]},
    ],
    ids=["return-not-a-number", "episode-without-length", "not-a-list", "more-episodes-than-asked"],
)
def test_a_progress_file_that_cannot_be_resumed_is_named_and_the_evaluation_starts_over(tmp_path, capsys, log):
    from agents.evaluation_progress import EvaluationProgress

    path = tmp_path / "evaluation.progress.json"
    path.write_text(json.dumps(sealed({"settings": {"episodes": 2}, "log": log})))  # its checksum matches
    progress = EvaluationProgress(path, {"episodes": 2}, np.array([2]))
    assert not progress.resumed and progress.log.count() == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and f"{path} is not a readable evaluation progress file" in out
    assert "starting over" in out


# ---------------------------------------------------------------------------------------------
# f. damaged run directories: one line naming the file, not a traceback


def _empty(path):
    path.write_text("")


def _empty_mapping(path):
    path.write_text("{}")


def _without_stack(path):
    config = json.loads(path.read_text())
    del config["stack"]
    path.write_text(json.dumps(config))


def _unknown_stack_key(path):
    config = json.loads(path.read_text())
    config["stack"]["bogus"] = 1
    path.write_text(json.dumps(config))


def _a_list(path):
    path.write_text("[]")


RUN_COMMANDS = {
    "evaluate": ["evaluate", "run", "--episodes", "1", "--device", "cpu"],
    "collect": ["collect", TOY, "--out", "data", "--episodes", "1", "--n-envs", "1", "--policy", "run"],
    "train-agent": ["train-agent", TOY, "--out", "run", "--resume", "--timesteps", "256", "--no-progress-bar"],
}


@pytest.mark.parametrize("command", sorted(RUN_COMMANDS))
@pytest.mark.parametrize(
    ("spoil", "fragment"),
    [
        (_empty, "is not readable JSON"),
        (_empty_mapping, "lacks the key 'agent'"),
        (_without_stack, "lacks the key 'stack'"),
        (_unknown_stack_key, "its stack is not one this worldmodel can build"),
        (_a_list, "holds list, not the mapping train-agent writes"),
    ],
    ids=["empty", "empty-mapping", "no-stack", "unknown-stack-key", "a-list"],
)
def test_a_damaged_config_json_is_refused_in_one_line(run_copy, workdir, capsys, command, spoil, fragment):
    spoil(run_copy / "config.json")
    before = files(workdir)
    assert main(RUN_COMMANDS[command]) == 2
    err = error_line(capsys, f"worldmodel {command}")
    assert "run/config.json" in err and fragment in err and "restore it" in err
    assert files(workdir) == before


@pytest.mark.parametrize(
    ("damaged", "argv", "prog"),
    [
        ("checkpoint", RUN_COMMANDS["train-agent"], "worldmodel train-agent"),
        ("model.zip", RUN_COMMANDS["train-agent"], "worldmodel train-agent"),  # no checkpoint: resumes from the bundle
        ("model.zip", ["convert", "run"], "python -m agents.bundle convert"),
    ],
    ids=["checkpoint-resume", "bundle-resume", "convert"],
)
def test_a_truncated_model_zip_is_refused_in_one_line(run_copy, workdir, capsys, damaged, argv, prog):
    from agents.bundle import main as bundle_main

    if damaged == "checkpoint":
        damaged = "checkpoints/" + json.loads((run_copy / "checkpoints" / "state.json").read_text())["files"]["model"]
    elif argv[0] == "train-agent":
        shutil.rmtree(run_copy / "checkpoints")
    truncate(run_copy / damaged)
    before = files(workdir)
    assert (bundle_main(argv) if argv[0] == "convert" else main(argv)) == 2
    err = error_line(capsys, prog)
    assert f"run/{damaged} is not a whole SB3 model zip" in err and "restore it from a copy" in err
    assert files(workdir) == before


def test_a_truncated_model_zip_does_not_stop_evaluation(run_copy, workdir, capsys):
    truncate(run_copy / "model.zip")  # evaluate and collect --policy read the policy files, never the zip
    assert main([*RUN_COMMANDS["evaluate"], "--out", "e.json"]) == 0
    assert len(json.loads((workdir / "e.json").read_text())["returns"]) == 1


@pytest.mark.parametrize("command", ["evaluate", "collect"])
@pytest.mark.parametrize(
    ("name", "damage", "fragment"),
    [
        ("policy.json", truncate, "is not a readable policy file (truncated or corrupt"),
        ("policy.json", flip, "is not a readable policy file (truncated or corrupt"),
        ("policy.safetensors", truncate, "is not the weights file run/policy.json was written with"),
        ("policy.safetensors", flip, "is not the weights file run/policy.json was written with"),
        ("vec_normalize.npz", truncate, "is not a readable VecNormalize statistics file"),
    ],
    ids=["json-truncated", "json-flipped", "weights-truncated", "weights-flipped", "vec-normalize-truncated"],
)
def test_a_damaged_policy_bundle_is_refused_in_one_line(run_copy, workdir, capsys, command, name, damage, fragment):
    damage(run_copy / name)
    before = files(workdir)
    assert main(RUN_COMMANDS[command]) == 2
    err = error_line(capsys, f"worldmodel {command}")
    assert f"run/{name}" in err and fragment in err and "restore" in err.lower()
    assert files(workdir) == before


# ---------------------------------------------------------------------------------------------
# g. running out of room: one line naming the file and the cause; the earlier file intact


def _ppo(net: int):
    from stable_baselines3 import PPO

    return PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, device="cpu", policy_kwargs={"net_arch": [net]})


def _write_vae(path, big):
    save_vae(path, ConvVAE(VAEConfig(16, 16, latent_dim=4, width_multiplier=1.0 if big else 0.25)), FrameSpec(16, 16))


def _write_memory(path, big):
    from worldmodel.memory.model import MDNRNN, MemoryConfig, save_memory

    save_memory(path, MDNRNN(MemoryConfig(4, 2, hidden=64 if big else 4)), vae_sha256="ab" * 32)


def _write_agent(path, big):
    from agents.bundle import save_model

    save_model(_ppo(256 if big else 4), path)


def _write_progress(path, big):
    from agents.evaluation_progress import EvaluationProgress

    progress = EvaluationProgress(path, {"episodes": 10_000}, np.array([10_000]))
    progress.log.finished[0].extend([(123.456, 1000)] * (5000 if big else 1))
    progress.save()


def _write_metrics(path, big):
    from worldmodel.training.run import MetricsLog

    MetricsLog(path.parent, tensorboard=False, resumed_epoch=None, resumed_step=0).write(
        {"epoch": 1, "step": 1, "note": "x" * (100_000 if big else 10)}
    )


WRITERS = {
    "vae": ("vae.safetensors", _write_vae),
    "memory": ("memory.safetensors", _write_memory),
    "agent": ("model.zip", _write_agent),
    "evaluation-progress": ("evaluation.progress.json", _write_progress),
    "metrics": ("metrics.jsonl", _write_metrics),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_write_past_the_file_size_limit_names_the_file_and_keeps_the_earlier_one(tmp_path, writer):
    name, write = WRITERS[writer]
    path = tmp_path / name
    write(path, big=False)
    earlier = path.read_bytes()
    with file_size_limit(len(earlier) + 2000), pytest.raises(DiskFullError) as caught:
        write(path, big=True)
    message = str(caught.value)
    assert message.startswith(f"cannot write {path}: file size limit exceeded") and "\n" not in message
    assert "make room" in message and "the files written before are intact" in message
    assert path.read_bytes() == earlier and files(tmp_path) == [name]  # no temporary file left either


@pytest.mark.parametrize(
    "error",
    [OSError(errno.ENOSPC, "No space left on device"), RuntimeError("I/O error: No space left (os error 28)")],
    ids=["errno", "safetensors-message"],
)
def test_no_space_left_on_device_is_named_and_the_old_file_kept(tmp_path, error):
    path = tmp_path / "best.safetensors"
    write_json_atomic(path, {"old": True})
    refused = pytest.raises(DiskFullError, match=r"cannot write .*best\.safetensors: no space left on device")
    with refused, atomic_path(path) as tmp:
        tmp.write_text("partial")
        raise error
    assert json.loads(path.read_text()) == {"old": True} and files(tmp_path) == ["best.safetensors"]
    with pytest.raises(FileNotFoundError), atomic_path(path):  # other errors pass unchanged
        raise FileNotFoundError(errno.ENOENT, "No such file", "missing.safetensors")


def test_collect_past_the_file_size_limit_ends_in_one_line_and_collecting_again_completes(workdir, capsys):
    data = workdir / "data"
    _collect(data, episodes=1)
    (earlier,) = (data / "shards").glob("*.frames.npy")
    earlier_bytes = earlier.read_bytes()
    capsys.readouterr()
    argv = ["collect", TOY, "--out", "data", "--episodes", "3", "--n-envs", "1", "--max-steps", "6", "--no-progress",
            "--shard-mib", "0.01"]  # fmt: skip
    with file_size_limit(60_000):  # a shard of 7 frames of 64x64 RGB is 86 kB
        assert main(argv) == 2
    err = error_line(capsys, "worldmodel collect")
    assert err.startswith("worldmodel collect: error: cannot write data/shards/") and "file size limit exceeded" in err
    assert ".frames.npy: file size limit exceeded" in err
    assert earlier.read_bytes() == earlier_bytes and not list(data.rglob("*.tmp"))
    assert FrameDataset.open(data, verify="full").num_episodes == 1
    assert main(argv) == 0  # the same command, with room: collects what the failed run lost
    assert sorted(FrameDataset.open(data, verify="full").episode_index.tolist()) == [0, 1, 2]


# ---------------------------------------------------------------------------------------------
# h. experiments.pipeline.carry: user errors end in one line, exit status 2


def test_carry_ends_a_user_error_in_one_line_with_status_2(tmp_path, capsys):
    from experiments.pipeline import carry

    assert carry.main(["restore", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2
    err = error_line(capsys, "python -m experiments.pipeline.carry restore")
    assert "holds no carried agent runs" in err
    (tmp_path / "nothing" / "agents" / "ppo__seed0").mkdir(parents=True)  # a run dir with no config.json yet
    assert carry.main(["save", str(tmp_path / "nothing"), "--to", str(tmp_path / "carried")]) == 2
    assert "holds no agent runs to carry" in error_line(capsys, "python -m experiments.pipeline.carry save")
    assert not (tmp_path / "out").exists() and not (tmp_path / "carried").exists()


# ---------------------------------------------------------------------------------------------
# i. files written through atomic_path get the mode the umask gives, whoever writes them


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_files_get_the_umask_mode_whatever_writes_them(tmp_path, tiny_config, umask):
    old = os.umask(umask)
    try:
        save_vae(tmp_path / "vae.safetensors", ConvVAE(tiny_config), FrameSpec(16, 16))  # safetensors replaces its file
        write_json_atomic(tmp_path / "config.json", {"a": 1})
        with atomic_path(tmp_path / "frames.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, np.zeros(3))
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == dict.fromkeys(["vae.safetensors", "config.json", "frames.npy"], 0o666 & ~umask)

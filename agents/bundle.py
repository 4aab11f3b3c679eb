"""Run directories that restore a trained agent: its policy plus everything its observations depend on.

Layout of ``RUN_DIR``::

    policy.json          how to rebuild the final policy: algorithm, policy class, keywords, spaces (JSON)
    policy.safetensors   the final policy's weights (with --encoder finetune: the fine-tuned VAE too)
    model.zip            SB3 model (weights, optimiser, step counters): for `train-agent --resume` only
    vae.safetensors      copy of the VAE (latent and finetune runs); its SHA-256 is in config.json
    memory.safetensors   copy of the memory model (--memory runs); its SHA-256 is in config.json
    vec_normalize.npz    VecNormalize statistics, no pickle (when normalising)
    config.json          resolved training config, hyperparameters and the observation stack
    evaluations.npz      EvalCallback curve; learning_curve.png plots it
    summary.json         final numbers (steps, steps/s, last evaluation)
    best/                with --keep-best: the policy of the best training evaluation (policy files, model
                         and VecNormalize statistics named by step, best.json naming them; see agents.resume)
    checkpoints/         resume state (see agents.resume); tb/ TensorBoard logs

:func:`load_bundle` (``evaluate``, ``collect --policy RUN_DIR``) reads only JSON,
safetensors and ``np.load(allow_pickle=False)`` arrays (:mod:`agents.policy_file`), so
loading a stranger's run directory runs none of its code. SB3 zips deserialise entries with
cloudpickle: they are trusted-only, read by ``train-agent --resume`` and by
``python -m agents.bundle convert RUN_DIR``, which writes the policy files of a run
directory made before they existed.

>>> import tempfile, pathlib
>>> run_dir = pathlib.Path(tempfile.mkdtemp())
>>> try:
...     check_bundle(run_dir)
... except BundleError as exc:
...     print("has no config.json" in str(exc))
True
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import shutil
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from agents.algorithms import AlgorithmSpec, get_algorithm
from agents.hyperparams import algo_kwargs_for_sb3
from agents.policy_file import POLICY_FILE, WEIGHTS_FILE, LoadedPolicy, PolicyFileError, load_policy, save_policy
from agents.vec_env import StackConfig, build_vec_env, find_vec_normalize
from worldmodel.common.atomic import atomic_path, write_json_atomic
from worldmodel.common.errors import UserError
from worldmodel.common.sealed import CHECKSUM_KEY, seal_matches
from worldmodel.vae.checkpoint import file_sha256

MODEL_FILE = "model.zip"
VAE_FILE = "vae.safetensors"
MEMORY_FILE = "memory.safetensors"
NORMALIZE_FILE = "vec_normalize.npz"
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
EVALUATIONS_FILE = "evaluations.npz"
CURVE_FILE = "learning_curve.png"
BEST_DIR = "best"
BEST_FILE = "best.json"
CONVERT_COMMAND = "python -m agents.bundle convert"
POLICIES = ("final", "best")
"""Which policy of a run to load: the one training ended with, or the best training evaluation's."""
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf")


class BundleError(UserError, ValueError):
    """A run directory that cannot be loaded; the message names the file and what to do."""


def copy_vae(vae_path: str | Path, run_dir: Path, name: str = VAE_FILE) -> str:
    """Copy the VAE (or the memory model, ``name=MEMORY_FILE``) into ``run_dir`` atomically; return its SHA-256."""
    with atomic_path(run_dir / name) as tmp:
        shutil.copyfile(vae_path, tmp)
    return file_sha256(run_dir / name)


def save_model(model: BaseAlgorithm, path: Path) -> None:
    """``model.save`` to ``path`` atomically (a kill mid-write leaves the previous file)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        model.save(f)


def save_vec_normalize(venv: VecNormalize, path: Path) -> None:
    """VecNormalize running statistics and settings as an ``.npz`` without pickled objects."""
    arrays = (
        {}
        if not venv.norm_obs
        else {
            "obs_mean": venv.obs_rms.mean,
            "obs_var": venv.obs_rms.var,
            "obs_count": np.float64(venv.obs_rms.count),
        }
    )
    arrays |= {
        "ret_mean": venv.ret_rms.mean,
        "ret_var": venv.ret_rms.var,
        "ret_count": np.float64(venv.ret_rms.count),
        "clip_obs": np.float64(venv.clip_obs),
        "clip_reward": np.float64(venv.clip_reward),
        "gamma": np.float64(venv.gamma),
        "epsilon": np.float64(venv.epsilon),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def load_vec_normalize(venv: VecNormalize, path: Path) -> None:
    """Restore statistics written by :func:`save_vec_normalize` into ``venv`` (``allow_pickle=False``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            _restore_vec_normalize(venv, path, data)
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, BundleError | FileNotFoundError):
            raise
        raise BundleError(
            f"{path} is not a readable VecNormalize statistics file (truncated or corrupt: {exc}); the agent cannot "
            "see the observations it was trained on without it. Restore the file from the original run directory"
        ) from exc


def _restore_vec_normalize(venv: VecNormalize, path: Path, data: Any) -> None:
    """Put the statistics of the open ``.npz`` ``data`` (read from ``path``) into ``venv``."""
    if venv.norm_obs:
        if "obs_mean" not in data or data["obs_mean"].shape != venv.obs_rms.mean.shape:
            raise BundleError(
                f"{path} holds no observation statistics of shape {venv.obs_rms.mean.shape}; "
                "the run directory mixes files of different runs. Restore the original file"
            )
        venv.obs_rms = RunningMeanStd(shape=venv.obs_rms.mean.shape)
        venv.obs_rms.mean, venv.obs_rms.var = data["obs_mean"].copy(), data["obs_var"].copy()
        venv.obs_rms.count = float(data["obs_count"])
    venv.ret_rms = RunningMeanStd(shape=())
    venv.ret_rms.mean, venv.ret_rms.var = data["ret_mean"].copy(), data["ret_var"].copy()
    venv.ret_rms.count = float(data["ret_count"])
    venv.clip_obs, venv.clip_reward = float(data["clip_obs"]), float(data["clip_reward"])
    venv.gamma, venv.epsilon = float(data["gamma"]), float(data["epsilon"])


def save_bundle(run_dir: Path, model: BaseAlgorithm, venv: VecEnv) -> None:
    """Write the policy files, the SB3 zip and, when ``venv`` normalises, its statistics into ``run_dir``."""
    save_policy(model, run_dir / POLICY_FILE, run_dir / WEIGHTS_FILE)
    save_model(model, run_dir / MODEL_FILE)
    normalizer = find_vec_normalize(venv)
    if normalizer is not None:
        save_vec_normalize(normalizer, run_dir / NORMALIZE_FILE)


def custom_objects(spec: AlgorithmSpec, algo_kwargs: dict[str, Any], venv: VecEnv) -> dict[str, Any]:
    """Replacements for the zip's cloudpickled schedules and spaces, rebuilt from the config.

    SB3 recomputes ``lr_schedule`` and ``exploration_schedule`` in ``_setup_model``, so
    placeholders stand in for them.
    """
    defaults = inspect.signature(spec.load_class().__init__).parameters
    sb3_kwargs = algo_kwargs_for_sb3(algo_kwargs)
    objects: dict[str, Any] = {
        "observation_space": venv.observation_space,
        "action_space": venv.action_space,
        "lr_schedule": 0.0,
        "exploration_schedule": 0.0,
    }
    for key in SCHEDULE_KEYS:
        if key in sb3_kwargs:
            objects[key] = sb3_kwargs[key]
        elif key in defaults:
            objects[key] = defaults[key].default
    return objects


def check_model_zip(path: Path) -> None:
    """Raise :class:`BundleError` unless ``path`` is a whole SB3 zip: readable, every entry's CRC right, with its data.

    >>> import tempfile, pathlib
    >>> bad = pathlib.Path(tempfile.mkdtemp()) / "model.zip"
    >>> _ = bad.write_bytes(b"PK")
    >>> try:
    ...     check_model_zip(bad)
    ... except BundleError as exc:
    ...     print(str(exc).split(";")[0].endswith("is not a whole SB3 model zip (File is not a zip file)"))
    True
    """
    fix = "restore it from a copy, or train a new run into another --out"
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
            names = archive.namelist()
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError) as exc:
        raise BundleError(f"{path} is not a whole SB3 model zip ({exc}); {fix}") from exc
    if broken is not None:
        raise BundleError(f"{path} is corrupt: its entry {broken} fails its CRC check; {fix}")
    if "data" not in names:
        raise BundleError(f"{path} is not a whole SB3 model zip (it has no 'data' entry: truncated?); {fix}")


def load_model(
    path: Path,
    spec: AlgorithmSpec,
    algo_kwargs: dict[str, Any],
    venv: VecEnv,
    device: str = "auto",
    *,
    extractor_vae: Path | None = None,
) -> BaseAlgorithm:
    """Load an SB3 zip for ``venv`` with :func:`custom_objects`: trusted files only, as it unpickles.

    For ``train-agent --resume`` and ``convert``; evaluation loads the policy files instead.

    ``extractor_vae`` (``--encoder finetune`` runs): the VAE file the policy's
    :class:`~agents.encoder_extractor.VAEEncoderExtractor` is built from before the zip's
    fine-tuned weights replace its own; it stands in for the path stored at training
    time, so a moved or copied run directory still loads.
    """
    check_model_zip(path)
    cls = spec.load_class()
    objects = custom_objects(spec, algo_kwargs, venv)
    if extractor_vae is not None:
        data, _, _ = load_from_zip_file(path, device="cpu", custom_objects=objects)
        policy_kwargs = dict(data["policy_kwargs"])
        policy_kwargs["features_extractor_kwargs"] = {
            **policy_kwargs["features_extractor_kwargs"],
            "vae": str(extractor_vae),
        }
        objects["policy_kwargs"] = policy_kwargs
    return cls.load(path, env=venv, device=device, custom_objects=objects)


CONFIG_KEYS = {"agent": dict, "algo": str, "hyperparams": dict, "stack": dict, "eval_seed": int}
"""What every ``config.json`` holds (``vae_sha256`` too unless pixels, ``memory_sha256`` with a memory model)."""


def read_config(run_dir: Path) -> dict[str, Any]:
    """``RUN_DIR/config.json``, checked to hold what loading and resuming the run read from it."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise BundleError(
            f"{run_dir} has no {CONFIG_FILE}: it is not a train-agent run directory, or training never started; "
            "pass the RUN_DIR given to `worldmodel train-agent --out`"
        )
    fix = "restore it from the original run directory (or a copy), or train a new run into another --out"
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not readable JSON ({exc}); {fix}") from exc
    if not isinstance(config, dict):
        raise BundleError(f"{path} holds {type(config).__name__}, not the mapping train-agent writes; {fix}")
    needed = dict(CONFIG_KEYS)
    stack = config.get("stack")
    if isinstance(stack, dict) and not stack.get("pixels", False):
        needed["vae_sha256"] = str
    if isinstance(stack, dict) and stack.get("memory"):
        needed["memory_sha256"] = str
    for key, kind in needed.items():
        if key not in config:
            raise BundleError(f"{path} lacks the key {key!r} (edited or cut short?); {fix}")
        if not isinstance(config[key], kind) or isinstance(config[key], bool):
            raise BundleError(f"{path}: {key} is {type(config[key]).__name__}, not {kind.__name__} (edited?); {fix}")
    try:
        StackConfig.from_dict(stack)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{path}: its stack is not one this worldmodel can build ({exc}); {fix}") from exc
    if seal_matches(config) is False:
        raise BundleError(f"{path} does not match its checksum ({CHECKSUM_KEY}): damaged or edited; {fix}")
    if not isinstance(config["hyperparams"].get("algo_kwargs"), dict):
        raise BundleError(f"{path} lacks the key 'hyperparams.algo_kwargs' (edited or cut short?); {fix}")
    return config


class PolicyFiles(NamedTuple):
    """The files of one policy of a run directory."""

    spec: Path
    """``policy.json``: how to rebuild the policy (:mod:`agents.policy_file`)."""
    weights: Path
    """``policy.safetensors``: its weights."""
    vec_normalize: Path
    """VecNormalize statistics (``.npz``), when the stack normalises."""
    model: Path
    """The SB3 zip: trusted-only (cloudpickle), for ``train-agent --resume`` and ``convert``."""


def policy_files(run_dir: str | Path, policy: str = "final") -> PolicyFiles:
    """The files of ``policy`` (``final`` or ``best``) in ``run_dir``.

    >>> policy_files("runs/x").weights
    PosixPath('runs/x/policy.safetensors')
    """
    run_dir = Path(run_dir)
    if policy == "final":
        return PolicyFiles(
            run_dir / POLICY_FILE, run_dir / WEIGHTS_FILE, run_dir / NORMALIZE_FILE, run_dir / MODEL_FILE
        )
    if policy != "best":
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    best = read_best(run_dir)
    if best is None:
        raise BundleError(
            f"{run_dir} has no best policy ({BEST_DIR}/{BEST_FILE}): it was trained without --keep-best, or no "
            "evaluation has run yet. Evaluate the final policy, or train on with `worldmodel train-agent ... "
            f"--out {run_dir} --resume --keep-best`"
        )
    files, step, folder = best["files"], best["step"], run_dir / BEST_DIR
    return PolicyFiles(  # a best/ kept before the policy files existed names none: convert writes these names
        folder / files.get("policy", f"policy_{step}.json"),
        folder / files.get("policy_weights", f"policy_{step}.safetensors"),
        folder / files.get("vec_normalize", NORMALIZE_FILE),
        folder / files["model"],
    )


def read_best(run_dir: Path) -> dict[str, Any] | None:
    """``RUN_DIR/best/best.json`` (step, mean and std of the evaluation return, files), or None."""
    path = run_dir / BEST_DIR / BEST_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def check_bundle(run_dir: str | Path, policy: str = "final") -> dict[str, Any]:
    """Check that ``run_dir`` holds every file its config needs and an unmodified VAE; return the config."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    stack = config["stack"]
    files = policy_files(run_dir, policy)
    missing = [path.relative_to(run_dir) for path in (files.spec, files.weights) if not path.is_file()]
    if missing and files.model.is_file():
        raise BundleError(
            f"{run_dir} has no {' or '.join(map(str, missing))} (the policy without pickle), only SB3's pickled "
            f"{files.model.relative_to(run_dir)}; if you trust whoever made it, convert it once with "
            f"`{CONVERT_COMMAND} {run_dir}`"
        )
    if missing:
        raise BundleError(
            f"{run_dir} is missing {missing[0]}: training did not finish. Continue it with "
            f"`worldmodel train-agent ... --out {run_dir} --resume`"
        )
    if stack["normalize"] is not None and not files.vec_normalize.is_file():
        raise BundleError(
            f"{run_dir} is missing {files.vec_normalize.relative_to(run_dir)} (VecNormalize statistics); the agent "
            "cannot see the observations it was trained on without them. Restore the file from the original run "
            "directory"
        )
    check_copies(run_dir, config)
    return config


def check_copies(run_dir: Path, config: dict[str, Any]) -> None:
    """Raise :class:`BundleError` unless the run's copies of its VAE and memory model are there, unmodified."""
    if not config["stack"]["pixels"]:
        _check_copy(run_dir / VAE_FILE, config["vae_sha256"], "the VAE")
    if config["stack"].get("memory"):
        _check_copy(run_dir / MEMORY_FILE, config["memory_sha256"], "the memory model")


def _check_copy(path: Path, expected: str, what: str) -> None:
    """Raise :class:`BundleError` unless ``path``, the run's copy of ``what``, exists with SHA-256 ``expected``."""
    if not path.is_file():
        raise BundleError(
            f"{path.parent} is missing {path.name}, {what} the agent was trained with; restore it from the "
            "original run directory"
        )
    actual = file_sha256(path)
    if actual != expected:
        raise BundleError(
            f"{path} was modified since training (SHA-256 {actual[:12]}..., recorded {expected[:12]}...); "
            f"the agent only works with the exact {what.removeprefix('the ')} it was trained on. Restore the original "
            "file, or train a new agent with `worldmodel train-agent`"
        )


@dataclass
class Bundle:
    """A loaded run directory: the policy on a stack rebuilt exactly as in training."""

    run_dir: Path
    config: dict[str, Any]
    stack: StackConfig
    algorithm: AlgorithmSpec
    model: LoadedPolicy
    """The policy, rebuilt without pickle; ``model.predict`` is the algorithm's ``predict``."""
    venv: VecEnv


def _build_stack(
    run_dir: Path, stack: StackConfig, normalize_path: Path | None, *, n_envs: int, seed: int, device: str, **kw: Any
) -> VecEnv:
    """The run's evaluation stack (VecNormalize frozen, with the statistics in ``normalize_path`` unless None)."""
    venv = build_vec_env(
        stack,
        n_envs=n_envs,
        seed=seed,
        vae=None if stack.pixels else run_dir / VAE_FILE,
        device=device,
        training=False,
        memory=run_dir / MEMORY_FILE if stack.memory else None,
        **kw,
    )
    normalizer = find_vec_normalize(venv)
    if normalizer is not None and normalize_path is not None:
        try:
            load_vec_normalize(normalizer, normalize_path)
        except BaseException:
            venv.close()
            raise
    return venv


def load_bundle(
    run_dir: str | Path,
    *,
    n_envs: int = 1,
    seed: int = 0,
    device: str = "auto",
    frame_tap: bool = False,
    policy: str = "final",
    subproc: bool = False,
    backend: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> Bundle:
    """Rebuild the evaluation stack of ``run_dir`` (VecNormalize frozen) and load the policy for it; never unpickles.

    ``subproc=True`` steps the envs in worker processes (encoding stays in this process).
    ``backend`` runs the same stack on another env backend (None: the one it trained on).
    ``policy="best"`` loads the best training evaluation's policy kept by ``--keep-best``.
    ``env_kwargs`` go to ``gym.make`` over the run's own (e.g. Atari without sticky actions).
    """
    run_dir = Path(run_dir)
    config = check_bundle(run_dir, policy)
    files = policy_files(run_dir, policy)
    stack = StackConfig.from_dict(config["stack"])
    if backend is not None:
        stack = dataclasses.replace(stack, backend=backend)
    if env_kwargs:
        stack = dataclasses.replace(stack, env_kwargs={**stack.env_kwargs, **env_kwargs})
    spec = get_algorithm(config["algo"])
    venv = _build_stack(run_dir, stack, files.vec_normalize, n_envs=n_envs, seed=seed, device=device,
                        subproc=subproc, frame_tap=frame_tap)  # fmt: skip
    try:
        model = load_policy(
            files.spec, files.weights, device, vae=run_dir / VAE_FILE if stack.encoder == "finetune" else None
        )
    except PolicyFileError as exc:
        venv.close()
        raise BundleError(str(exc)) from None
    mismatch = _mismatch(model, spec, venv)
    if mismatch:
        venv.close()
        raise BundleError(
            f"{files.spec} {mismatch}: it is another run's policy, or this backend's spaces differ from training's. "
            "Restore the run's own files, or evaluate on the backend it trained on"
        )
    venv.seed(seed)  # loading seeds the global generators with the training seed, as SB3 does; envs take the caller's
    return Bundle(run_dir=run_dir, config=config, stack=stack, algorithm=spec, model=model, venv=venv)


def _mismatch(model: LoadedPolicy, spec: AlgorithmSpec, venv: VecEnv) -> str | None:
    """What in the policy file does not fit the run's config and stack, in words; None when all fits."""
    if model.algorithm.name != spec.name:
        return f"holds a {model.algorithm.name} policy, but config.json says {spec.name}"
    for what, ours, theirs in (
        ("observations", model.observation_space, venv.observation_space),
        ("actions", model.action_space, venv.action_space),
    ):
        if ours != theirs:
            return f"describes {what} {ours}, but the run's stack gives {theirs}"
    return None


def convert_bundle(run_dir: str | Path, device: str = "cpu") -> list[Path]:
    """Write the policy files of ``run_dir``'s final policy and kept best policy from their SB3 zips; returns them.

    TRUSTED FILES ONLY: this loads the zips, which unpickle with cloudpickle and can run any code. It
    is for run directories written before train-agent wrote policy files, by you or people you trust.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    check_copies(run_dir, config)
    spec = get_algorithm(config["algo"])
    stack = dataclasses.replace(StackConfig.from_dict(config["stack"]), backend="gymnasium")  # the spaces evaluate sees
    if not policy_files(run_dir).model.is_file():
        raise BundleError(f"{run_dir} has no {MODEL_FILE} to convert: training did not finish")
    venv = _build_stack(run_dir, stack, None, n_envs=1, seed=0, device=device)  # for the spaces; no statistics
    extractor_vae = run_dir / VAE_FILE if stack.encoder == "finetune" else None
    written: list[Path] = []
    for policy in (p for p in POLICIES if p == "final" or read_best(run_dir) is not None):
        files = policy_files(run_dir, policy)
        model = load_model(files.model, spec, config["hyperparams"]["algo_kwargs"], venv, device,
                           extractor_vae=extractor_vae)  # fmt: skip
        save_policy(model, files.spec, files.weights)
        if policy == "best":
            best = read_best(run_dir)
            best["files"] |= {"policy": files.spec.name, "policy_weights": files.weights.name}
            write_json_atomic(run_dir / BEST_DIR / BEST_FILE, best)
        written += [files.spec, files.weights]
    venv.close()
    return written


def write_learning_curve(run_dir: Path, title: str) -> Path | None:
    """Plot ``evaluations.npz`` (mean ± std return against agent steps) to ``learning_curve.png``."""
    path = run_dir / EVALUATIONS_FILE
    if not path.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with np.load(path, allow_pickle=False) as data:
        steps, results = data["timesteps"], data["results"]
    if len(steps) == 0:
        return None
    mean, std = results.mean(axis=1), results.std(axis=1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, mean, marker="o")
    ax.fill_between(steps, mean - std, mean + std, alpha=0.3)
    ax.set(xlabel="agent steps", ylabel="eval return (mean ± std)", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = run_dir / CURVE_FILE
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return out


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_json_atomic(run_dir / SUMMARY_FILE, summary)


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.bundle convert RUN_DIR...``: add the pickle-free policy files to older run directories."""
    parser = argparse.ArgumentParser(prog="python -m agents.bundle", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser(
        "convert",
        help="write policy.json + policy.safetensors from a run directory's SB3 zips (trusted files only)",
        description=(
            "Write policy.json and policy.safetensors (and best/'s) from RUN_DIR's SB3 model.zip, so that evaluate "
            "and collect --policy load it without pickle. This command itself loads the zips with cloudpickle, "
            "which can run arbitrary code: convert only run directories you or people you trust made."
        ),
    )
    convert.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="train-agent run directories")
    convert.add_argument("--device", default="cpu", help="device to load the models on (default: cpu)")
    args = parser.parse_args(argv)
    try:
        for run_dir in args.run_dirs:
            for path in convert_bundle(run_dir, args.device):
                print(f"wrote {path}")
    except UserError as exc:
        print(f"{parser.prog} convert: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

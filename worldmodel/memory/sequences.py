"""Latent sequences: a dataset's episodes encoded by a VAE, ``worldmodel encode DATA --vae CKPT --out LATENTS``.

The memory model trains on these instead of frames. Layout of a latents directory::

    LATENTS/
      latents.json                 format, the VAE's SHA-256, the dataset, and the shards done
      <shard>.mu.npy               float32 (F, z) posterior means, one row per frame of the dataset shard
      <shard>.logvar.npy           float32 (F, z) posterior log-variances
      <shard>.steps.npz            actions, rewards, terminated, truncated and episode lengths

One set of files per dataset shard, so encoding resumes shard by shard: each file is
written atomically, the steps file last, and ``latents.json`` records a shard only after
all three exist. Running ``encode`` again on a grown dataset encodes only the new
shards. The directory is tied to one VAE by its checkpoint's SHA-256: opening it with
another VAE, or encoding into it with another VAE, is refused naming both.

>>> import tempfile, pathlib
>>> import numpy as np
>>> from worldmodel.vae.checkpoint import save_vae
>>> from worldmodel.data import DatasetWriter
>>> from worldmodel.frames import FrameSpec
>>> from worldmodel.vae.model import ConvVAE, VAEConfig
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> save_vae(tmp / "vae.safetensors", ConvVAE(VAEConfig(16, 16, latent_dim=4, width_multiplier=0.25)),
...          FrameSpec(16, 16))
>>> with DatasetWriter(tmp / "data", env_id="Demo-v0", frame_spec=FrameSpec(16, 16)) as w:
...     w.add_episode(np.zeros((6, 16, 16, 3), np.uint8), np.arange(5), np.ones(5), np.eye(5, dtype=bool)[4],
...                   np.zeros(5, bool), seed=0, episode_index=0)
>>> latents = encode_dataset(tmp / "data", tmp / "vae.safetensors", tmp / "latents", device="cpu")
>>> episode = latents.episode(0)
>>> episode.mu.shape, episode.actions.tolist(), episode.terminated.tolist()
((6, 4), [0, 1, 2, 3, 4], [False, False, False, False, True])
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from worldmodel.common.atomic import TEMP_SUFFIX, atomic_path, write_json_atomic
from worldmodel.common.configargs import add_config_arguments, config_from_args
from worldmodel.common.errors import UserError
from worldmodel.data.format import check_frame_spec
from worldmodel.data.reader import FrameDataset
from worldmodel.vae.checkpoint import file_sha256

COMMAND_HELP = "encode a dataset's episodes with a VAE into latent sequences"
"""One line for ``worldmodel --help``."""

FORMAT_NAME = "worldmodel.latents"
FORMAT_VERSION = 1
MANIFEST = "latents.json"
_STEP_KEYS = ("actions", "rewards", "terminated", "truncated")


class LatentsError(UserError, ValueError):
    """A latents directory that cannot be read or written as asked; the message names both sides and the fix."""


@dataclass(frozen=True)
class LatentEpisode:
    """One encoded episode of ``T`` steps: ``T + 1`` posteriors (memory-mapped), ``T`` of the rest."""

    mu: np.ndarray
    """float32 ``(T + 1, z)`` posterior means of its frames, the final frame included."""
    logvar: np.ndarray
    """float32 ``(T + 1, z)`` posterior log-variances."""
    actions: np.ndarray
    """``(T, ...)`` as the env took them."""
    rewards: np.ndarray
    """float32 ``(T,)``."""
    terminated: np.ndarray
    """bool ``(T,)``: the episode ended in a terminal state with this step."""
    truncated: np.ndarray
    """bool ``(T,)``: the episode was cut off (time limit) with this step."""


def _shard_files(out: Path, name: str) -> tuple[Path, Path, Path]:
    return out / f"{name}.mu.npy", out / f"{name}.logvar.npy", out / f"{name}.steps.npz"


def _read_manifest(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LatentsError(f"cannot read {path}: {exc}; delete {out} and encode again") from exc
    if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
        raise LatentsError(
            f"{path} is not a {FORMAT_NAME} v{FORMAT_VERSION} manifest (format {manifest.get('format')!r}, version "
            f"{manifest.get('version')!r}); encode into another directory"
        )
    return manifest


def _check_vae(manifest: dict[str, Any], vae_sha256: str, out: Path, vae_name: str) -> None:
    if manifest["vae_sha256"] != vae_sha256:
        raise LatentsError(
            f"{out} holds latents of the VAE with SHA-256 {manifest['vae_sha256']} ({manifest['vae_path']}), but "
            f"{vae_name} has SHA-256 {vae_sha256}; encode with that VAE into another directory, or pass the VAE the "
            "latents were made with"
        )


def _new_manifest(
    vae_sha256: str, vae_path: Path | str, latent_dim: int, env_id: str, action_shape: list[int], action_dtype: str
) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "vae_sha256": vae_sha256,
        "vae_path": str(vae_path),
        "latent_dim": latent_dim,
        "env_id": env_id,
        "action_shape": action_shape,
        "action_dtype": action_dtype,
        "shards": [],
    }


def _write_shard(out: Path, name: str, episodes: list[LatentEpisode]) -> None:
    """The three files of one shard of ``episodes``, each atomically, the steps file (the commit marker) last."""
    mu_path, logvar_path, steps_path = _shard_files(out, name)
    for path, key in ((mu_path, "mu"), (logvar_path, "logvar")):
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, np.concatenate([getattr(ep, key) for ep in episodes]).astype(np.float32))
    steps = {key: np.concatenate([getattr(ep, key) for ep in episodes]) for key in _STEP_KEYS}
    steps["length"] = np.array([len(ep.rewards) for ep in episodes], np.int64)
    with atomic_path(steps_path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **steps)


def write_latents(
    out: str | os.PathLike, episodes: list[LatentEpisode], *, vae_sha256: str, env_id: str, vae_path: str = ""
) -> LatentSequences:
    """Write latent sequences made elsewhere (another encoder, a synthetic toy) as a complete latents directory.

    >>> import tempfile
    >>> ep = LatentEpisode(np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32), np.array([0, 1]),
    ...                    np.zeros(2, np.float32), np.array([False, True]), np.zeros(2, bool))
    >>> write_latents(tempfile.mkdtemp(), [ep, ep], vae_sha256="0" * 64, env_id="Toy-v0").lengths.tolist()
    [2, 2]
    """
    out = Path(out)
    if _read_manifest(out) is not None:
        raise LatentsError(f"{out} already holds latents; write into a new directory")
    out.mkdir(parents=True, exist_ok=True)
    actions = episodes[0].actions
    manifest = _new_manifest(vae_sha256, vae_path, episodes[0].mu.shape[1], env_id, list(actions.shape[1:]),
                             str(actions.dtype))  # fmt: skip
    _write_shard(out, "episodes", episodes)
    content = file_sha256(_shard_files(out, "episodes")[0]) + file_sha256(_shard_files(out, "episodes")[2])
    manifest["shards"] = [{"name": "episodes", "frames_sha256": None, "num_frames": sum(len(ep.mu) for ep in episodes),
                           "num_episodes": len(episodes)}]  # fmt: skip
    manifest["dataset_id"] = hashlib.sha256(content.encode()).hexdigest()[:16]
    write_json_atomic(out / MANIFEST, manifest)
    return LatentSequences.open(out)


def encode_dataset(
    data_dir: str | os.PathLike,
    vae: str | os.PathLike,
    out: str | os.PathLike,
    *,
    device: str = "auto",
    precision: str = "fp32",
    batch_size: int = 256,
    progress: bool = False,
) -> LatentSequences:
    """Encode every dataset shard not yet in ``out`` with the VAE checkpoint ``vae``; return the whole set.

    Resumable: shards already encoded (same frames checksum) are kept; shards no longer in
    the dataset are dropped from the manifest. Refuses a directory made with another VAE
    or from another env's dataset.
    """
    from tqdm import tqdm

    from worldmodel.vae.encoder import LatentEncoder

    out, vae = Path(out), Path(vae)
    ds = FrameDataset.open(data_dir)
    encoder = LatentEncoder(vae, device=device, precision=precision)  # a missing or foreign file raises here
    vae_sha256 = file_sha256(vae)
    check_frame_spec(ds.frame_spec, encoder.frame_spec, consumer=f"the VAE {vae}")
    shards = ds.manifest["shards"]
    action_shape, action_dtype = shards[0]["action_shape"], shards[0]["action_dtype"]
    if not np.issubdtype(np.dtype(action_dtype), np.number):
        raise LatentsError(f"{data_dir} stores actions of dtype {action_dtype}; the memory model needs numeric actions")
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f".*{TEMP_SUFFIX}"):  # left by a killed run
        stale.unlink(missing_ok=True)
    manifest = _read_manifest(out) or _new_manifest(vae_sha256, vae, encoder.latent_dim, ds.env_id, action_shape,
                                                    action_dtype)  # fmt: skip
    _check_vae(manifest, vae_sha256, out, f"--vae {vae}")
    if (manifest["env_id"], manifest["action_shape"], manifest["action_dtype"]) != (
        ds.env_id, action_shape, action_dtype
    ):  # fmt: skip
        raise LatentsError(
            f"{out} holds latents of {manifest['env_id']} episodes (actions {manifest['action_dtype']} "
            f"{manifest['action_shape']}), but {data_dir} holds {ds.env_id} episodes (actions {action_dtype} "
            f"{action_shape}); encode into another directory"
        )
    done = {s["name"]: s for s in manifest["shards"]}
    wanted = []
    for shard in shards:
        old = done.get(shard["name"])
        ok = old is not None and old["frames_sha256"] == shard["frames_sha256"]
        wanted.append(old if ok and all(p.exists() for p in _shard_files(out, shard["name"])) else None)
    first_episode = np.concatenate([[0], np.cumsum([s["num_episodes"] for s in shards])])
    todo = [i for i, entry in enumerate(wanted) if entry is None]
    bar = tqdm(total=sum(shards[i]["num_frames"] for i in todo), unit="frame", desc="encode", disable=not progress,
               file=sys.stderr)  # fmt: skip
    for i in todo:
        shard = shards[i]
        episodes = [ds.episode(e) for e in range(first_episode[i], first_episode[i + 1])]
        encoded = []
        for ep in episodes:
            mu, logvar = [], []
            for start in range(0, len(ep.frames), batch_size):
                m, lv = encoder.posterior(np.array(ep.frames[start : start + batch_size]))  # (b, z) each
                mu.append(m)
                logvar.append(lv)
                bar.update(len(m))
            steps = {key: getattr(ep, key) for key in _STEP_KEYS}
            encoded.append(LatentEpisode(np.concatenate(mu), np.concatenate(logvar), **steps))
        _write_shard(out, shard["name"], encoded)
        wanted[i] = {"name": shard["name"], "frames_sha256": shard["frames_sha256"],
                     "num_frames": shard["num_frames"], "num_episodes": shard["num_episodes"]}  # fmt: skip
        manifest["shards"] = [entry for entry in wanted if entry is not None]
        manifest["dataset_id"] = None  # complete only when every shard is done
        write_json_atomic(out / MANIFEST, manifest)
    bar.close()
    manifest["shards"] = wanted
    manifest["dataset_id"] = ds.dataset_id
    manifest["data_dir"] = str(data_dir)
    write_json_atomic(out / MANIFEST, manifest)
    return LatentSequences.open(out, vae_sha256=vae_sha256)


class LatentSequences:
    """Read-only view of a latents directory: per-episode posteriors (memory-mapped) and steps.

    Episode rows ``0 .. num_episodes - 1`` follow the dataset's order. Open with :meth:`open`.
    """

    def __init__(self, out: Path, manifest: dict[str, Any]) -> None:
        self.path = out
        self.manifest = manifest
        self.vae_sha256: str = manifest["vae_sha256"]
        self.latent_dim: int = manifest["latent_dim"]
        self.dataset_id: str | None = manifest.get("dataset_id")
        self.action_shape = tuple(manifest["action_shape"])
        self.action_dtype = np.dtype(manifest["action_dtype"])
        self._episodes: list[tuple[int, int, int]] = []  # (shard, first frame, first step) per episode
        self._steps: list[dict[str, np.ndarray]] = []
        self._mmaps: dict[tuple[int, str], np.ndarray] = {}
        lengths = []
        for s, shard in enumerate(manifest["shards"]):
            _, _, steps_path = _shard_files(out, shard["name"])
            try:
                with np.load(steps_path, allow_pickle=False) as f:
                    steps = {key: f[key] for key in (*_STEP_KEYS, "length")}
            except (OSError, ValueError, KeyError) as exc:
                raise LatentsError(
                    f"cannot read {steps_path}: {exc}; run `worldmodel encode` again to redo it"
                ) from exc
            self._steps.append(steps)
            frame, step = 0, 0
            for length in steps["length"].tolist():
                self._episodes.append((s, frame, step))
                lengths.append(length)
                frame, step = frame + length + 1, step + length
        self.lengths = np.array(lengths, np.int64)
        """``(num_episodes,)`` steps per episode."""

    @classmethod
    def open(cls, path: str | os.PathLike, *, vae_sha256: str | None = None) -> LatentSequences:
        """Open a latents directory; with ``vae_sha256``, refuse one made with another VAE."""
        path = Path(path)
        manifest = _read_manifest(path)
        if manifest is None:
            raise LatentsError(
                f"{path} holds no {MANIFEST}; make it with `worldmodel encode DATA --vae CKPT --out {path}`"
            )
        if vae_sha256 is not None:
            _check_vae(manifest, vae_sha256, path, "the VAE given")
        if manifest.get("dataset_id") is None:
            raise LatentsError(f"{path} is only partly encoded; run the same `worldmodel encode` command again")
        return cls(path, manifest)

    @property
    def num_episodes(self) -> int:
        return len(self.lengths)

    def _array(self, shard: int, kind: str) -> np.ndarray:
        key = (shard, kind)
        if key not in self._mmaps:
            mu_path, logvar_path, _ = _shard_files(self.path, self.manifest["shards"][shard]["name"])
            path = mu_path if kind == "mu" else logvar_path
            try:
                self._mmaps[key] = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise LatentsError(f"cannot read {path}: {exc}; run `worldmodel encode` again to redo it") from exc
        return self._mmaps[key]

    def episode(self, episode: int) -> LatentEpisode:
        """Everything stored for episode row ``episode``; its posteriors stay memory-mapped."""
        if not 0 <= episode < self.num_episodes:
            raise IndexError(f"episode must lie in [0, {self.num_episodes}), got {episode}")
        s, frame, step = self._episodes[episode]
        steps = int(self.lengths[episode])
        per_step = {key: self._steps[s][key][step : step + steps] for key in _STEP_KEYS}
        return LatentEpisode(
            mu=self._array(s, "mu")[frame : frame + steps + 1],
            logvar=self._array(s, "logvar")[frame : frame + steps + 1],
            **per_step,
        )


# ---------------------------------------------------------------------------------------------
# Command line


@dataclass(frozen=True)
class EncodeConfig:
    """Settings of ``worldmodel encode``."""

    data_dir: str
    """Dataset directory written by `worldmodel collect`."""
    vae: str
    """VAE checkpoint whose posteriors to store."""
    out: str
    """Latents directory (created; an existing one made with the same VAE is brought up to date)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to run the VAE: auto picks CUDA when available."""
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    """Encoder precision (fp32 stores exactly what the VAE computes)."""
    batch_size: int = 256
    """Frames per forward pass."""
    progress: bool = True
    """Show a progress bar."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``worldmodel encode``."""
    add_config_arguments(parser, EncodeConfig, positional=("data_dir",))


def run(args: argparse.Namespace) -> int:
    """``worldmodel encode DATA --vae CKPT --out LATENTS``: print a summary as JSON."""
    config: EncodeConfig = config_from_args(EncodeConfig, args)
    latents = encode_dataset(
        config.data_dir,
        config.vae,
        config.out,
        device=config.device,
        precision=config.precision,
        batch_size=config.batch_size,
        progress=config.progress,
    )
    summary = {
        "out": str(latents.path),
        "episodes": latents.num_episodes,
        "steps": int(latents.lengths.sum()),
        "latent_dim": latents.latent_dim,
        "vae_sha256": latents.vae_sha256,
        "dataset_id": latents.dataset_id,
    }
    print(json.dumps(summary, indent=2))
    return 0

"""Crash-safe, memory-mapped rollout datasets: shards written by collectors, read by training.

Layout of a dataset directory::

    DATA_DIR/
      manifest.json                      merged view of every collector's shards (rebuildable)
      collectors/<collector_id>.json     one manifest per collector: the source of truth
      shards/<collector_id>-<seq>.frames.npy   uint8 (F, h, w, c), uncompressed, memory-mappable
      shards/<collector_id>-<seq>.meta.npz     actions, rewards, flags, states, episode table, info

A shard holds whole episodes. Each episode of ``T`` steps contributes ``T + 1`` frames
(its final frame included) and ``T`` actions, rewards and flags. Files are written under a
hidden temporary name and renamed when complete: frames first, then the meta file (the
commit marker, which also records the frames' SHA-256), then the collector manifest. A
crash therefore never leaves a half-written shard visible, and a committed shard missing
from its manifest is adopted on the collector's next start or by :func:`rebuild_manifest`.
Each collector holds a lock on its own id and writes only its own manifest; readers merge
all collector manifests, so concurrent collectors never lose each other's updates.

Checksums are SHA-256 (about 0.7 GB/s on one core here, so hashing a 64 MiB shard costs
~0.1 s while collecting it takes minutes). Opening always checks each frames file's size
and ``.npy`` header (truncation, wrong shape); the full checksum is verified once per shard
and remembered in ``DATA_DIR/.verified.json`` (keyed by size and mtime), or every time
with ``verify="full"``.

>>> import tempfile
>>> import numpy as np
>>> spec = FrameSpec(height=8, width=8)
>>> data_dir = tempfile.mkdtemp()
>>> with DatasetWriter(data_dir, env_id="Demo-v0", frame_spec=spec) as writer:
...     for i in range(3):
...         writer.add_episode(np.full((5, 8, 8, 3), i, np.uint8), np.zeros((4, 2), np.float32),
...                            np.ones(4), np.zeros(4, bool), np.eye(4, dtype=bool)[3], seed=i, episode_index=i)
>>> ds = FrameDataset.open(data_dir)
>>> ds.num_frames, ds.num_episodes, ds.frames(np.array([0, 14])).shape
(15, 3, (2, 8, 8, 3))
>>> train, val = ds.split_by_episode(0.34, seed=0)
>>> len(train), len(val)
(10, 5)
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from worldmodel.common.atomic import TEMP_SUFFIX, atomic_path
from worldmodel.vae.checkpoint import file_sha256
from worldmodel.common.errors import UserError
from worldmodel.frames import FrameSpec, check_frames

FORMAT_NAME = "worldmodel.data.dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
COLLECTORS = "collectors"
SHARDS = "shards"
FRAMES_SUFFIX = ".frames.npy"
META_SUFFIX = ".meta.npz"
VERIFIED_CACHE = ".verified.json"
DEFAULT_SHARD_MIB = 64
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

Verify = Literal["auto", "full", "none"]


class DatasetError(UserError, ValueError):
    """A dataset that cannot be read or written as asked; the message names the file and the fix."""


def check_frame_spec(dataset_spec: FrameSpec, expected_spec: FrameSpec, *, consumer: str = "this consumer") -> None:
    """Raise :class:`DatasetError` unless a dataset's frame spec equals the one a consumer expects.

    >>> check_frame_spec(FrameSpec(), FrameSpec())
    >>> check_frame_spec(FrameSpec(), FrameSpec(grayscale=True), consumer="the VAE")
    Traceback (most recent call last):
    ...
    worldmodel.data.dataset.DatasetError: the dataset's frames were made with FrameSpec(height=64, width=64, crop=None, \
grayscale=False, interpolation='area') but the VAE expects FrameSpec(height=64, width=64, crop=None, grayscale=True, \
interpolation='area'); collect a dataset with the expected frame spec, or use a consumer made for this one
    """
    if dataset_spec != expected_spec:
        raise DatasetError(
            f"the dataset's frames were made with {dataset_spec} but {consumer} expects {expected_spec}; "
            "collect a dataset with the expected frame spec, or use a consumer made for this one"
        )


def default_collector_id() -> str:
    """This machine's host name, made safe for file names."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip(".-")
    return name or "collector"


@dataclass(frozen=True)
class Episode:
    """One stored episode: ``T + 1`` frames (memory-mapped) and ``T`` actions, rewards and flags."""

    frames: np.ndarray
    """uint8 ``(T + 1, h, w, c)``, the final frame included."""
    actions: np.ndarray
    """``(T, ...)`` as the env took them."""
    rewards: np.ndarray
    """float32 ``(T,)``."""
    terminated: np.ndarray
    """bool ``(T,)``."""
    truncated: np.ndarray
    """bool ``(T,)``."""
    states: np.ndarray | None
    """float32 ``(T + 1, d)`` true low-dimensional state per frame, or None."""
    seed: int
    """The seed its env reset used."""
    episode_index: int
    """Its index in the collection run (seed = run seed + episode_index)."""


# ---------------------------------------------------------------------------------------------
# Files


def _lock(path: Path, *, blocking: bool) -> int | None:
    """An exclusive ``flock`` on ``path``: the open fd, or None if busy and not ``blocking``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = _lock(path, blocking=True)
    assert fd is not None
    try:
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[Path]:
    """:func:`atomic_path`, then readable by all (``mkstemp`` makes files private): datasets are shared."""
    with atomic_path(path) as tmp:
        yield tmp
        os.chmod(tmp, 0o644)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with _atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(
            f"cannot read manifest {path}: {exc}; rebuild it from the shards with "
            f"`python -m worldmodel.data.dataset {path.parent.parent if path.parent.name == COLLECTORS else path.parent} "
            "--rebuild`"
        ) from exc


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of a ``.npy`` file, read without loading it."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if fortran:
            raise ValueError("Fortran-ordered array")
        return shape, dtype, f.tell()


def _meta_info(meta: Any) -> dict[str, Any]:
    return json.loads(bytes(meta["info"]).decode())


def _shard_entry(name: str, frames_path: Path, meta_path: Path, frames_sha256: str) -> dict[str, Any]:
    """The manifest entry of a committed shard, read from its meta file."""
    with np.load(meta_path, allow_pickle=False) as meta:
        info = _meta_info(meta)
        actions = meta["actions"]
        states_dim = int(meta["states"].shape[1]) if "states" in meta.files else None
        episodes = {
            "episode_index": meta["episode_index"].tolist(),
            "seed": meta["seed"].tolist(),
            "length": meta["length"].tolist(),
            "return": meta["return"].tolist(),
        }
    lengths = episodes["length"]
    return {
        "name": name,
        "env_id": info["env_id"],
        "frame_spec": info["frame_spec"],
        "num_frames": int(sum(lengths) + len(lengths)),
        "num_steps": int(sum(lengths)),
        "num_episodes": len(lengths),
        "frames_bytes": frames_path.stat().st_size,
        "frames_sha256": frames_sha256,
        "meta_sha256": file_sha256(meta_path),
        "action_shape": list(actions.shape[1:]),
        "action_dtype": str(actions.dtype),
        "state_dim": states_dim,
        "episodes": episodes,
    }


def _merge(data_dir: Path) -> dict[str, Any]:
    """The merged manifest of every collector manifest in ``data_dir`` (the source of truth)."""
    collectors = sorted((data_dir / COLLECTORS).glob("*.json"))
    if not collectors:
        if (data_dir / MANIFEST).exists():
            return _read_json(data_dir / MANIFEST)
        raise DatasetError(
            f"{data_dir} holds no dataset (no {COLLECTORS}/*.json or {MANIFEST}); collect one with "
            f"`worldmodel collect ENV_ID --out {data_dir}`"
        )
    shards: list[dict[str, Any]] = []
    ids = []
    for path in collectors:
        manifest = _read_json(path)
        ids.append(manifest["collector_id"])
        shards.extend(manifest["shards"])
    shards.sort(key=lambda s: s["name"])
    first = shards[0] if shards else _read_json(collectors[0])
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "env_id": first["env_id"],
        "frame_spec": first["frame_spec"],
        "collectors": ids,
        "num_shards": len(shards),
        "num_frames": sum(s["num_frames"] for s in shards),
        "num_steps": sum(s["num_steps"] for s in shards),
        "num_episodes": sum(s["num_episodes"] for s in shards),
        "shards": shards,
    }


def merge_manifests(data_dir: str | os.PathLike) -> dict[str, Any]:
    """Rewrite ``DATA_DIR/manifest.json`` from the collector manifests (under a lock) and return it."""
    data_dir = Path(data_dir)
    with _locked(data_dir / ".manifest.lock"):
        for stale in data_dir.glob(f".{MANIFEST}.*{TEMP_SUFFIX}"):  # left by a killed lock holder
            stale.unlink(missing_ok=True)
        merged = _merge(data_dir)
        _write_json(data_dir / MANIFEST, merged)
    return merged


def rebuild_manifest(data_dir: str | os.PathLike) -> dict[str, Any]:
    """Rebuild every collector manifest and ``manifest.json`` from the committed shards alone.

    Shards whose frames are missing or fail their checksum are left out with a warning.
    Do not run it while collectors write into ``data_dir``.
    """
    data_dir = Path(data_dir)
    by_collector: dict[str, list[dict[str, Any]]] = {}
    header: dict[str, dict[str, Any]] = {}
    for meta_path in sorted((data_dir / SHARDS).glob("*" + META_SUFFIX)):
        name = meta_path.name[: -len(META_SUFFIX)]
        frames_path = meta_path.with_name(name + FRAMES_SUFFIX)
        try:
            with np.load(meta_path, allow_pickle=False) as meta:
                info = _meta_info(meta)
            if not frames_path.exists() or file_sha256(frames_path) != info["frames_sha256"]:
                raise ValueError(f"{frames_path.name} is missing or does not match its checksum")
            entry = _shard_entry(name, frames_path, meta_path, info["frames_sha256"])
        except (OSError, ValueError, KeyError) as exc:
            warnings.warn(f"rebuild_manifest: leaving out shard {name}: {exc}", stacklevel=2)
            continue
        by_collector.setdefault(info["collector_id"], []).append(entry)
        header[info["collector_id"]] = {"env_id": info["env_id"], "frame_spec": info["frame_spec"]}
    if not by_collector:
        raise DatasetError(f"no committed shards under {data_dir / SHARDS}; nothing to rebuild")
    for old in (data_dir / COLLECTORS).glob("*.json"):
        if old.stem not in by_collector:
            old.unlink()
    for collector_id, shards in by_collector.items():
        _write_json(
            data_dir / COLLECTORS / f"{collector_id}.json",
            _collector_manifest(collector_id, **header[collector_id], attrs={"rebuilt": True}, shards=shards),
        )
    return merge_manifests(data_dir)


def _collector_manifest(
    collector_id: str, *, env_id: str, frame_spec: dict[str, Any], attrs: dict[str, Any], shards: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "collector_id": collector_id,
        "env_id": env_id,
        "frame_spec": frame_spec,
        "attrs": attrs,
        "shards": shards,
    }


# ---------------------------------------------------------------------------------------------
# Writing


class DatasetWriter:
    """Append whole episodes to a dataset directory, in shards of about ``shard_mib`` MiB of frames.

    ``collector_id`` (default: the host name, with ``-1``, ``-2``, ... appended while another
    process holds it) prefixes this writer's shard names and names its manifest. Opening
    removes this collector's leftover temporary files and adopts its committed shards that a
    crash kept out of its manifest. ``attrs`` (JSON-friendly) is stored in the collector
    manifest, e.g. the collection config. Episodes are buffered in memory and written when a
    shard fills, on :meth:`flush` and on :meth:`close` (also after an exception in a ``with``).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        *,
        env_id: str,
        frame_spec: FrameSpec,
        collector_id: str | None = None,
        shard_mib: float = DEFAULT_SHARD_MIB,
        attrs: dict[str, Any] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.env_id = env_id
        self.frame_spec = frame_spec
        self.attrs = dict(attrs or {})
        self.shard_frames = max(1, int(shard_mib * 2**20) // int(np.prod(frame_spec.shape)))
        if collector_id is not None and not _ID_RE.match(collector_id):
            raise DatasetError(f"collector id {collector_id!r} must match {_ID_RE.pattern} (a file-name prefix)")
        self._check_existing()  # both before anything is created
        (self.data_dir / SHARDS).mkdir(parents=True, exist_ok=True)
        (self.data_dir / COLLECTORS).mkdir(exist_ok=True)
        self.collector_id, self._lock_fd = self._acquire(collector_id)
        self._manifest_path = self.data_dir / COLLECTORS / f"{self.collector_id}.json"
        self._shards: list[dict[str, Any]] = (
            _read_json(self._manifest_path)["shards"] if self._manifest_path.exists() else []
        )
        self._recover()
        self._next_seq = 1 + max((int(s["name"].rsplit("-", 1)[1]) for s in self._shards), default=-1)
        self._buffer: list[Episode] = []
        self._buffered_frames = 0
        self._action_layout: tuple[tuple[int, ...], np.dtype] | None = None
        self._state_dim: int | None = None
        self._write_manifest()

    # -- opening ----------------------------------------------------------------------------------
    def _check_existing(self) -> None:
        try:
            merged = _merge(self.data_dir)
        except DatasetError:
            return  # a new dataset
        if merged["env_id"] != self.env_id or FrameSpec.from_dict(merged["frame_spec"]) != self.frame_spec:
            raise DatasetError(
                f"{self.data_dir} holds {merged['env_id']} frames with spec "
                f"{FrameSpec.from_dict(merged['frame_spec'])}, but this writer has {self.env_id} with "
                f"{self.frame_spec}; write into another directory"
            )

    def _acquire(self, collector_id: str | None) -> tuple[str, int]:
        if collector_id is not None:
            fd = _lock(self.data_dir / COLLECTORS / f".{collector_id}.lock", blocking=False)
            if fd is None:
                raise DatasetError(
                    f"collector id {collector_id!r} is in use by another process writing into {self.data_dir}; "
                    "give each collector its own id"
                )
            return collector_id, fd
        base = default_collector_id()
        for n in range(1000):
            candidate = base if n == 0 else f"{base}-{n}"
            fd = _lock(self.data_dir / COLLECTORS / f".{candidate}.lock", blocking=False)
            if fd is not None:
                return candidate, fd
        raise DatasetError(f"no free collector id in {self.data_dir}; pass collector_id")

    def _recover(self) -> None:
        """Remove this collector's temporary and uncommitted files; adopt its committed orphans."""
        prefix = f"{self.collector_id}-"
        for tmp in (self.data_dir / SHARDS).glob(f".{prefix}*{TEMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
        for tmp in (self.data_dir / COLLECTORS).glob(f".{self.collector_id}.json.*{TEMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
        known = {s["name"] for s in self._shards}
        for frames_path in sorted((self.data_dir / SHARDS).glob(f"{prefix}*{FRAMES_SUFFIX}")):
            name = frames_path.name[: -len(FRAMES_SUFFIX)]
            if name in known or not re.fullmatch(re.escape(prefix) + r"\d+", name):
                continue
            meta_path = frames_path.with_name(name + META_SUFFIX)
            if not meta_path.exists():  # killed between the two renames: not committed
                frames_path.unlink()
                continue
            with np.load(meta_path, allow_pickle=False) as meta:
                sha = _meta_info(meta)["frames_sha256"]
            if file_sha256(frames_path) == sha:
                self._shards.append(_shard_entry(name, frames_path, meta_path, sha))
        self._shards.sort(key=lambda s: s["name"])

    # -- public -----------------------------------------------------------------------------------
    def existing_episodes(self) -> set[tuple[int, int]]:
        """``(episode_index, seed)`` of every episode already committed in the dataset, any collector."""
        try:
            shards = _merge(self.data_dir)["shards"]
        except DatasetError:
            shards = []
        return {
            (int(i), int(s))
            for shard in [*shards, *self._shards]
            for i, s in zip(shard["episodes"]["episode_index"], shard["episodes"]["seed"], strict=True)
        }

    @property
    def num_buffered_frames(self) -> int:
        """Frames added but not yet written to a shard."""
        return self._buffered_frames

    def add_episode(
        self,
        frames: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        *,
        seed: int,
        episode_index: int,
        states: np.ndarray | None = None,
    ) -> None:
        """Add one episode of ``T >= 1`` steps: ``T + 1`` preprocessed uint8 frames, ``T`` of the rest."""
        if self._lock_fd is None:
            raise DatasetError("this DatasetWriter is closed")
        check_frames(frames, self.frame_spec)
        steps = len(frames) - 1
        if steps < 1:
            raise ValueError(f"an episode needs at least 2 frames (reset and one step), got {len(frames)}")
        actions = np.asarray(actions)
        per_step = {
            "actions": actions,
            "rewards": np.asarray(rewards, np.float32),
            "terminated": np.asarray(terminated, bool),
            "truncated": np.asarray(truncated, bool),
        }
        for key, value in per_step.items():
            if len(value) != steps or (key != "actions" and value.ndim != 1):
                raise ValueError(
                    f"{key} must have shape ({steps}{', ...' if key == 'actions' else ''},) for "
                    f"{steps + 1} frames, got {value.shape}"
                )
        layout = (actions.shape[1:], actions.dtype)
        if self._action_layout is None:
            self._action_layout = layout
        elif layout != self._action_layout:
            raise ValueError(
                f"actions of shape {layout[0]} and dtype {layout[1]} differ from earlier episodes' "
                f"{self._action_layout[0]} {self._action_layout[1]}"
            )
        if states is not None:
            states = np.asarray(states, np.float32)
            if states.ndim != 2 or len(states) != steps + 1:
                raise ValueError(f"states must have shape ({steps + 1}, d), one per frame, got {states.shape}")
        state_dim = None if states is None else states.shape[1]
        if self._buffer and state_dim != self._state_dim:
            raise ValueError(f"states of dimension {state_dim} differ from earlier episodes' {self._state_dim}")
        self._state_dim = state_dim
        self._buffer.append(
            Episode(np.array(frames), **per_step, states=states, seed=int(seed), episode_index=int(episode_index))
        )
        self._buffered_frames += len(frames)
        if self._buffered_frames >= self.shard_frames:
            self.flush()

    def flush(self) -> None:
        """Write the buffered episodes as one shard and commit it to the manifests (no-op if none)."""
        if not self._buffer:
            return
        eps, self._buffer, self._buffered_frames = self._buffer, [], 0
        name = f"{self.collector_id}-{self._next_seq:06d}"
        self._next_seq += 1
        frames_path = self.data_dir / SHARDS / (name + FRAMES_SUFFIX)
        meta_path = self.data_dir / SHARDS / (name + META_SUFFIX)
        with _atomic_file(frames_path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.concatenate([e.frames for e in eps]))
            frames_sha256 = file_sha256(tmp)
        arrays = {
            "actions": np.concatenate([e.actions for e in eps]),
            "rewards": np.concatenate([e.rewards for e in eps]),
            "terminated": np.concatenate([e.terminated for e in eps]),
            "truncated": np.concatenate([e.truncated for e in eps]),
            "episode_index": np.array([e.episode_index for e in eps], np.int64),
            "seed": np.array([e.seed for e in eps], np.int64),
            "length": np.array([len(e.rewards) for e in eps], np.int64),
            "return": np.array([float(e.rewards.sum(dtype=np.float64)) for e in eps], np.float64),
        }
        if self._state_dim is not None:
            arrays["states"] = np.concatenate([e.states for e in eps])  # type: ignore[misc]
        info = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "env_id": self.env_id,
            "frame_spec": self.frame_spec.to_dict(),
            "collector_id": self.collector_id,
            "frames_sha256": frames_sha256,
        }
        arrays["info"] = np.frombuffer(json.dumps(info).encode(), np.uint8)
        with _atomic_file(meta_path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        self._shards.append(_shard_entry(name, frames_path, meta_path, frames_sha256))
        self._write_manifest()

    def _write_manifest(self) -> None:
        _write_json(
            self._manifest_path,
            _collector_manifest(
                self.collector_id,
                env_id=self.env_id,
                frame_spec=self.frame_spec.to_dict(),
                attrs=self.attrs,
                shards=self._shards,
            ),
        )
        merge_manifests(self.data_dir)

    def close(self) -> None:
        """Flush and release the collector id. Idempotent."""
        if self._lock_fd is None:
            return
        try:
            self.flush()
        finally:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Reading


class FrameDataset:
    """Read-only view of a dataset: memory-mapped frames, random gathers, episode-wise splits.

    Global frame indices run over shards in name order, episodes in order within a shard,
    ``T + 1`` frames per episode. Episode numbers (``episode_of``, ``episode``) are rows
    ``0 .. num_episodes - 1`` of that order, unique even when several collection runs used the
    same ``episode_index``. Open with :meth:`open`.
    """

    def __init__(self, data_dir: Path, manifest: dict[str, Any]) -> None:
        self.data_dir = data_dir
        self.manifest = manifest
        shards = manifest["shards"]
        if not shards:
            raise DatasetError(f"{data_dir} holds no complete shard yet; collect episodes first")
        self.env_id: str = manifest["env_id"]
        self.frame_spec = FrameSpec.from_dict(manifest["frame_spec"])
        self._names = [s["name"] for s in shards]
        for key in ("env_id", "frame_spec", "action_shape", "action_dtype", "state_dim"):
            values = {json.dumps(s[key]) for s in shards}
            if len(values) > 1:
                raise DatasetError(
                    f"shards of {data_dir} disagree on {key}: {sorted(values)}; keep one kind per dataset directory"
                )
        self.state_dim: int | None = shards[0]["state_dim"]
        counts = np.array([s["num_frames"] for s in shards], np.int64)
        self._shard_start = np.concatenate([[0], np.cumsum(counts)])
        self.num_frames = int(self._shard_start[-1])
        ep = [s["episodes"] for s in shards]
        self._ep_length = np.concatenate([np.asarray(e["length"], np.int64) for e in ep])
        self._ep_shard = np.repeat(np.arange(len(shards)), [len(e["length"]) for e in ep])
        self._ep_start = np.concatenate([[0], np.cumsum(self._ep_length + 1)])[:-1]
        self.episode_index = np.concatenate([np.asarray(e["episode_index"], np.int64) for e in ep])
        """Per episode row: its index in its collection run."""
        self.episode_seed = np.concatenate([np.asarray(e["seed"], np.int64) for e in ep])
        """Per episode row: the seed its env reset used."""
        self.episode_return = np.concatenate([np.asarray(e["return"], np.float64) for e in ep])
        """Per episode row: the sum of its rewards."""
        self.num_episodes = len(self._ep_length)
        self._open_caches()

    def _open_caches(self) -> None:
        self._frames_mmap: dict[int, np.ndarray] = {}
        self._meta = functools.lru_cache(maxsize=32)(self._load_meta)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (e.g. for DataLoader workers): memory maps and caches are reopened lazily."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_frames_mmap", "_meta")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open_caches()

    @classmethod
    def open(
        cls, data_dir: str | os.PathLike, *, skip_bad_shards: bool = False, verify: Verify = "auto"
    ) -> FrameDataset:
        """Open the dataset in ``data_dir``, checking every shard (see the module docstring).

        ``verify``: ``"auto"`` checks each shard's SHA-256 once and caches the result, ``"full"``
        every time, ``"none"`` only sizes and headers. A bad shard raises :class:`DatasetError`
        naming it, or with ``skip_bad_shards`` is left out with a warning.
        """
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise DatasetError(f"dataset directory {data_dir} does not exist; collect one with `worldmodel collect`")
        manifest = _merge(data_dir)
        if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
            raise DatasetError(f"{data_dir} is not a {FORMAT_NAME} v{FORMAT_VERSION} dataset")
        cache_path = data_dir / VERIFIED_CACHE
        try:
            cache = json.loads(cache_path.read_text()) if verify == "auto" and cache_path.exists() else {}
        except (OSError, json.JSONDecodeError):
            cache = {}
        good, new_cache = [], {}
        for shard in manifest["shards"]:
            try:
                new_cache[shard["name"]] = _check_shard(data_dir, shard, verify, cache.get(shard["name"]))
                good.append(shard)
            except DatasetError as exc:
                if not skip_bad_shards:
                    raise
                warnings.warn(f"skipping a bad shard: {exc}", stacklevel=2)
        if verify == "auto" and new_cache != cache:
            with contextlib.suppress(OSError):  # a read-only dataset just verifies again next time
                _write_json(cache_path, new_cache)
        if len(good) < len(manifest["shards"]):
            manifest = {**manifest, "shards": good, "num_shards": len(good),
                        "num_frames": sum(s["num_frames"] for s in good),
                        "num_steps": sum(s["num_steps"] for s in good),
                        "num_episodes": sum(s["num_episodes"] for s in good)}  # fmt: skip
        return cls(data_dir, manifest)

    @property
    def dataset_id(self) -> str:
        """A stable content id: a hash of the shard names and checksums, independent of merge order."""
        digest = hashlib.sha256()
        for shard in self.manifest["shards"]:
            digest.update(f"{shard['name']}:{shard['frames_sha256']}:{shard['meta_sha256']};".encode())
        return digest.hexdigest()[:16]

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return (f"FrameDataset({str(self.data_dir)!r}, env_id={self.env_id!r}, frames={self.num_frames}, "
                f"episodes={self.num_episodes}, frame_spec={self.frame_spec})")  # fmt: skip

    # -- frames -----------------------------------------------------------------------------------
    def _frames_of(self, shard: int) -> np.ndarray:
        mmap = self._frames_mmap.get(shard)
        if mmap is None:
            path = self.data_dir / SHARDS / (self._names[shard] + FRAMES_SUFFIX)
            mmap = self._frames_mmap[shard] = np.load(path, mmap_mode="r", allow_pickle=False)
        return mmap

    def _check_indices(self, indices: np.ndarray, n: int, what: str) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"{what} indices must lie in [0, {n}), got min {idx.min()} max {idx.max()}")
        return idx

    def _by_shard(self, idx: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Per touched shard: its number, output positions and local frame indices (ascending)."""
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        shard = np.searchsorted(self._shard_start, sorted_idx, side="right") - 1
        cuts = np.flatnonzero(np.diff(shard)) + 1
        for start, pos, local in zip(np.r_[0, cuts], np.split(order, cuts), np.split(sorted_idx, cuts), strict=True):
            if len(pos):
                s = int(shard[start])
                yield s, pos, local - self._shard_start[s]

    def frames(self, indices: np.ndarray) -> np.ndarray:
        """uint8 ``(len(indices), h, w, c)`` frames at global ``indices`` (one gather per shard touched)."""
        idx = self._check_indices(indices, self.num_frames, "frame")
        out = np.empty((len(idx), *self.frame_spec.shape), np.uint8)
        for s, pos, local in self._by_shard(idx):
            out[pos] = self._frames_of(s)[local]
        return out

    # -- per-frame metadata -----------------------------------------------------------------------
    def _load_meta(self, shard: int) -> dict[str, np.ndarray]:
        path = self.data_dir / SHARDS / (self._names[shard] + META_SUFFIX)
        try:
            with np.load(path, allow_pickle=False) as meta:
                return {k: meta[k] for k in meta.files if k != "info"}
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read shard {path}: {exc}") from exc

    def states(self, indices: np.ndarray) -> np.ndarray | None:
        """float32 ``(len(indices), state_dim)`` true states at global frame ``indices``, or None."""
        if self.state_dim is None:
            return None
        idx = self._check_indices(indices, self.num_frames, "frame")
        out = np.empty((len(idx), self.state_dim), np.float32)
        for s, pos, local in self._by_shard(idx):
            out[pos] = self._meta(s)["states"][local]
        return out

    def episode_of(self, indices: np.ndarray) -> np.ndarray:
        """int64 episode row (``0 .. num_episodes - 1``) of each global frame index."""
        idx = self._check_indices(indices, self.num_frames, "frame")
        return np.searchsorted(self._ep_start, idx, side="right") - 1

    def episode_frames(self, episode: int) -> np.ndarray:
        """Global frame indices of episode row ``episode``: ``T + 1`` consecutive integers."""
        start = int(self._ep_start[episode])
        return np.arange(start, start + int(self._ep_length[episode]) + 1, dtype=np.int64)

    def episode(self, episode: int) -> Episode:
        """Everything stored for episode row ``episode``; its frames stay memory-mapped."""
        self._check_indices(np.array([episode]), self.num_episodes, "episode")
        s = int(self._ep_shard[episode])
        frame0 = int(self._ep_start[episode] - self._shard_start[s])
        first_row = int(np.searchsorted(self._ep_shard, s))
        step0 = int(self._ep_length[first_row:episode].sum())
        steps, meta = int(self._ep_length[episode]), self._meta(s)
        per_step = {k: meta[k][step0 : step0 + steps] for k in ("actions", "rewards", "terminated", "truncated")}
        return Episode(
            frames=self._frames_of(s)[frame0 : frame0 + steps + 1],
            **per_step,
            states=meta["states"][frame0 : frame0 + steps + 1] if "states" in meta else None,
            seed=int(self.episode_seed[episode]),
            episode_index=int(self.episode_index[episode]),
        )

    def split_by_episode(self, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Sorted int64 global frame indices ``(train, val)``; each episode lies wholly on one side.

        At least one validation episode when ``val_fraction > 0`` and there are >= 2 episodes;
        at least one training episode always.
        """
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
        n = self.num_episodes
        n_val = round(val_fraction * n)
        if val_fraction > 0 and n >= 2:
            n_val = max(n_val, 1)
        n_val = min(n_val, n - 1)
        is_val = np.zeros(n, bool)
        is_val[np.random.default_rng(seed).permutation(n)[:n_val]] = True
        frame_is_val = np.repeat(is_val, self._ep_length + 1)
        return np.flatnonzero(~frame_is_val).astype(np.int64), np.flatnonzero(frame_is_val).astype(np.int64)


def _check_shard(data_dir: Path, shard: dict[str, Any], verify: Verify, cached: list[Any] | None) -> list[Any]:
    """Raise :class:`DatasetError` if a shard's files are missing, truncated or corrupt; return its cache key."""
    name = shard["name"]
    frames_path = data_dir / SHARDS / (name + FRAMES_SUFFIX)
    meta_path = data_dir / SHARDS / (name + META_SUFFIX)
    fix = (f"delete {SHARDS}/{name}.* and run the same `worldmodel collect` command again to re-collect its "
           "episodes (then rebuild the manifest), or open the dataset with skip_bad_shards=True")  # fmt: skip
    for path in (frames_path, meta_path):
        if not path.exists():
            raise DatasetError(f"shard {name}: {path} is missing; {fix}")
    try:
        shape, dtype, offset = _npy_header(frames_path)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"shard {name}: {frames_path} has no valid .npy header ({exc}); {fix}") from exc
    spec = FrameSpec.from_dict(shard["frame_spec"])
    expected_shape = (shard["num_frames"], *spec.shape)
    if shape != expected_shape or dtype != np.uint8:
        raise DatasetError(f"shard {name}: {frames_path} holds {dtype} {shape}, expected uint8 {expected_shape}; {fix}")
    stat = frames_path.stat()
    if stat.st_size != offset + int(np.prod(shape)) or stat.st_size != shard["frames_bytes"]:
        raise DatasetError(
            f"shard {name}: {frames_path} is {stat.st_size} bytes, expected {shard['frames_bytes']} "
            f"(truncated or overwritten); {fix}"
        )
    key = [shard["frames_sha256"], shard["meta_sha256"], stat.st_size, stat.st_mtime_ns, meta_path.stat().st_mtime_ns]
    if verify == "none" or (verify == "auto" and cached == key):
        return key
    for path, expected in ((frames_path, shard["frames_sha256"]), (meta_path, shard["meta_sha256"])):
        if file_sha256(path) != expected:
            raise DatasetError(f"shard {name}: {path} does not match its SHA-256 checksum (corrupt); {fix}")
    return key


def main(argv: list[str] | None = None) -> int:
    """``python -m worldmodel.data.dataset DATA_DIR [--rebuild] [--verify]``: describe, verify or rebuild."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m worldmodel.data.dataset", description=main.__doc__)
    parser.add_argument("data_dir")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the manifests from the shards first")
    parser.add_argument("--verify", action="store_true", help="check every shard's SHA-256, ignoring the cache")
    args = parser.parse_args(argv)
    if args.rebuild:
        rebuild_manifest(args.data_dir)
    ds = FrameDataset.open(args.data_dir, verify="full" if args.verify else "auto")
    summary = {
        "env_id": ds.env_id,
        "dataset_id": ds.dataset_id,
        "frame_spec": ds.frame_spec.to_dict(),
        "shards": len(ds.manifest["shards"]),
        "episodes": ds.num_episodes,
        "frames": ds.num_frames,
        "state_dim": ds.state_dim,
        "mean_return": float(ds.episode_return.mean()),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

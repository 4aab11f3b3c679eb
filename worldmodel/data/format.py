"""The on-disk format of a rollout dataset: its layout, shard files, locks and checks.

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
from its manifest is adopted on the collector's next start or by
:func:`~worldmodel.data.manifest.rebuild_manifest`. Each collector holds a lock on its own
id and writes only its own manifest; readers merge all collector manifests, so concurrent
collectors never lose each other's updates.

Checksums are SHA-256 (about 0.7 GB/s on one core here, so hashing a 64 MiB shard costs
~0.1 s while collecting it takes minutes). :func:`check_shard` always checks a frames
file's size and ``.npy`` header (truncation, wrong shape), and its full checksum when asked.

>>> shard_paths(Path("data"), "host-000003")
(PosixPath('data/shards/host-000003.frames.npy'), PosixPath('data/shards/host-000003.meta.npz'))
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from worldmodel.common.atomic import atomic_path
from worldmodel.common.errors import UserError
from worldmodel.frames import FrameSpec
from worldmodel.vae.checkpoint import file_sha256

FORMAT_NAME = "worldmodel.dataset"  # every dataset manifest on disk carries it: never rename it
"""The format name stored in every manifest and shard (kept from the module's old name: datasets carry it)."""
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
COLLECTORS = "collectors"
SHARDS = "shards"
FRAMES_SUFFIX = ".frames.npy"
META_SUFFIX = ".meta.npz"
VERIFIED_CACHE = ".verified.json"
DAMAGED = "damaged"
"""Folder of a dataset where damaged shards are set aside (see :mod:`worldmodel.data.repair`)."""
DEFAULT_SHARD_MIB = 64
COLLECTOR_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
"""What a collector id may look like: it prefixes file names."""

Verify = Literal["auto", "full", "none"]


class DatasetError(UserError, ValueError):
    """A dataset that cannot be read or written as asked; the message names the file and the fix."""


def check_frame_spec(dataset_spec: FrameSpec, expected_spec: FrameSpec, *, consumer: str = "this consumer") -> None:
    """Raise :class:`DatasetError` unless a dataset's frame spec equals the one a consumer expects.

    >>> check_frame_spec(FrameSpec(), FrameSpec())
    >>> check_frame_spec(FrameSpec(), FrameSpec(grayscale=True), consumer="the VAE")
    Traceback (most recent call last):
    ...
    worldmodel.data.format.DatasetError: the dataset's frames were made with FrameSpec(height=64, width=64, crop=None, \
grayscale=False, interpolation='area') but the VAE expects FrameSpec(height=64, width=64, crop=None, grayscale=True, \
interpolation='area'); collect a dataset with the expected frame spec, or use a consumer made for this one
    """
    if dataset_spec != expected_spec:
        raise DatasetError(
            f"the dataset's frames were made with {dataset_spec} but {consumer} expects {expected_spec}; "
            "collect a dataset with the expected frame spec, or use a consumer made for this one"
        )


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
# Files and locks


def shard_paths(data_dir: Path, name: str) -> tuple[Path, Path]:
    """The frames and meta files of shard ``name``."""
    return data_dir / SHARDS / (name + FRAMES_SUFFIX), data_dir / SHARDS / (name + META_SUFFIX)


def lock(path: Path, *, blocking: bool) -> int | None:
    """An exclusive ``flock`` on ``path``: the open fd, or None if busy and not ``blocking``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold :func:`lock` on ``path`` (waiting for it) for the ``with`` block."""
    fd = lock(path, blocking=True)
    assert fd is not None
    try:
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """:func:`atomic_path`, then readable by all (``mkstemp`` makes files private): datasets are shared."""
    with atomic_path(path) as tmp:
        yield tmp
        os.chmod(tmp, 0o644)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically, readable by all."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """A manifest's contents; :class:`DatasetError` saying how to rebuild it if it cannot be read."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read manifest {path}: {exc}; {_rebuild_hint(path)}") from exc


SHARD_KEYS = ("name", "env_id", "frame_spec", "num_frames", "num_steps", "num_episodes", "frames_bytes",
              "frames_sha256", "meta_sha256", "action_shape", "action_dtype", "state_dim", "episodes")  # fmt: skip
"""What every shard entry of a manifest holds (see :func:`shard_entry`)."""
EPISODE_KEYS = ("episode_index", "seed", "length", "return")


def read_manifest(path: Path) -> dict[str, Any]:
    """A collector manifest or ``manifest.json``, checked to hold whole shard entries; :class:`DatasetError`
    saying how to rebuild it if not."""
    manifest = read_json(path)
    shards = manifest.get("shards") if isinstance(manifest, dict) else None
    problem = None
    header = ("env_id", "frame_spec", *(("collector_id",) if path.parent.name == COLLECTORS else ()))
    if not isinstance(shards, list):
        problem = "it holds no list of shards"
    elif missing_header := [k for k in header if k not in manifest]:
        problem = f"it lacks {', '.join(missing_header)}"
    else:
        for i, shard in enumerate(shards):
            episodes = shard.get("episodes") if isinstance(shard, dict) else None
            missing = [k for k in SHARD_KEYS if k not in shard] if isinstance(shard, dict) else list(SHARD_KEYS)
            missing += [f"episodes.{k}" for k in EPISODE_KEYS if isinstance(episodes, dict) and k not in episodes]
            if missing or not isinstance(episodes, dict):
                problem = f"its shard entry {i} lacks {', '.join(missing) or 'its episode table'}"
                break
    if problem is not None:
        raise DatasetError(f"manifest {path} is damaged: {problem}; {_rebuild_hint(path)}")
    return manifest


def _rebuild_hint(path: Path) -> str:
    data_dir = path.parent.parent if path.parent.name == COLLECTORS else path.parent
    return f"rebuild it from the shards with `python -m worldmodel.data {data_dir} --rebuild`"


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of a ``.npy`` file, read without loading it."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if fortran:
            raise ValueError("Fortran-ordered array")
        return shape, dtype, f.tell()


# ---------------------------------------------------------------------------------------------
# Shards


def meta_info(meta: Any) -> dict[str, Any]:
    """The JSON ``info`` record of an open meta file (env id, frame spec, collector, frames checksum)."""
    return json.loads(bytes(meta["info"]).decode())


def shard_entry(name: str, frames_path: Path, meta_path: Path, frames_sha256: str) -> dict[str, Any]:
    """The manifest entry of a committed shard, read from its meta file."""
    with np.load(meta_path, allow_pickle=False) as meta:
        info = meta_info(meta)
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


def check_shard(data_dir: Path, shard: dict[str, Any], verify: Verify, cached: list[Any] | None) -> list[Any]:
    """Raise :class:`DatasetError` if a shard's files are missing, truncated or corrupt; return its cache key.

    ``verify``: ``"full"`` checks both SHA-256 checksums, ``"auto"`` only when the key differs
    from ``cached`` (the key of the last good check), ``"none"`` never.
    """
    name = shard["name"]
    frames_path, meta_path = shard_paths(data_dir, name)
    fix = ("run the same `worldmodel collect` command again: it moves the shard to DATA_DIR/damaged/ and collects "
           "its episodes again (or open the dataset with skip_bad_shards=True)")  # fmt: skip
    for path in (frames_path, meta_path):
        if not path.exists():
            raise DatasetError(f"shard {name}: {path} is missing; {fix}")
    try:
        shape, dtype, offset = npy_header(frames_path)
    except Exception as exc:  # numpy parses a damaged header with Python's tokenizer: it raises more than ValueError
        detail = " ".join(str(exc).split())
        raise DatasetError(f"shard {name}: {frames_path} has no valid .npy header ({detail}); {fix}") from exc
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

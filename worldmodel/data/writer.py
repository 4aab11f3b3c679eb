"""Write rollouts into a dataset directory: whole episodes, in shards, crash-safe (see :mod:`worldmodel.data.format`).

>>> import tempfile
>>> import numpy as np
>>> from worldmodel.data.reader import FrameDataset
>>> data_dir = tempfile.mkdtemp()
>>> with DatasetWriter(data_dir, env_id="Demo-v0", frame_spec=FrameSpec(height=8, width=8)) as writer:
...     for i in range(3):
...         writer.add_episode(np.full((5, 8, 8, 3), i, np.uint8), np.zeros((4, 2), np.float32),
...                            np.ones(4), np.zeros(4, bool), np.eye(4, dtype=bool)[3], seed=i, episode_index=i)
...     writer.num_buffered_frames  # written as one shard on close
15
>>> FrameDataset.open(data_dir).num_episodes
3
"""

from __future__ import annotations

import json
import os
import re
import socket
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from worldmodel.common.atomic import TEMP_SUFFIX
from worldmodel.data.format import (
    COLLECTOR_ID_RE,
    COLLECTORS,
    DAMAGED,
    DEFAULT_SHARD_MIB,
    FORMAT_NAME,
    FORMAT_VERSION,
    FRAMES_SUFFIX,
    META_SUFFIX,
    SHARDS,
    DatasetError,
    Episode,
    atomic_file,
    lock,
    meta_info,
    read_manifest,
    shard_entry,
    shard_paths,
    write_json,
)
from worldmodel.data.manifest import collector_manifest, merge_manifests, merged_manifest
from worldmodel.frames import FrameSpec, check_frames
from worldmodel.vae.checkpoint import file_sha256


def default_collector_id() -> str:
    """This machine's host name, made safe for file names."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip(".-")
    return name or "collector"


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
        self.check(self.data_dir, env_id, frame_spec, collector_id)  # before anything is created
        (self.data_dir / SHARDS).mkdir(parents=True, exist_ok=True)
        (self.data_dir / COLLECTORS).mkdir(exist_ok=True)
        self.collector_id, self._lock_fd = self._acquire(collector_id)
        self._manifest_path = self.data_dir / COLLECTORS / f"{self.collector_id}.json"
        self._shards: list[dict[str, Any]] = (
            read_manifest(self._manifest_path)["shards"] if self._manifest_path.exists() else []
        )
        self._recover()
        self._next_seq = 1 + max((int(s["name"].rsplit("-", 1)[1]) for s in self._shards), default=-1)
        self._buffer: list[Episode] = []
        self._buffered_frames = 0
        self._action_layout: tuple[tuple[int, ...], np.dtype] | None = None
        self._state_dim: int | None = None
        self._write_manifest()

    # -- opening ----------------------------------------------------------------------------------
    @staticmethod
    def check(data_dir: Path, env_id: str, frame_spec: FrameSpec, collector_id: str | None) -> None:
        """Refuse, creating nothing, a writer that could not open: a bad collector id, or a dataset of other frames."""
        if collector_id is not None and not COLLECTOR_ID_RE.match(collector_id):
            raise DatasetError(
                f"collector id {collector_id!r} must match {COLLECTOR_ID_RE.pattern} (a file-name prefix)"
            )
        try:
            merged = merged_manifest(data_dir)
        except DatasetError:
            return  # a new dataset
        if merged["env_id"] != env_id or FrameSpec.from_dict(merged["frame_spec"]) != frame_spec:
            raise DatasetError(
                f"{data_dir} holds {merged['env_id']} frames with spec "
                f"{FrameSpec.from_dict(merged['frame_spec'])}, but this writer has {env_id} with "
                f"{frame_spec}; write into another directory"
            )

    def _acquire(self, collector_id: str | None) -> tuple[str, int]:
        if collector_id is not None:
            fd = lock(self.data_dir / COLLECTORS / f".{collector_id}.lock", blocking=False)
            if fd is None:
                raise DatasetError(
                    f"collector id {collector_id!r} is in use by another process writing into {self.data_dir}; "
                    "give each collector its own id"
                )
            return collector_id, fd
        base = default_collector_id()
        for n in range(1000):
            candidate = base if n == 0 else f"{base}-{n}"
            fd = lock(self.data_dir / COLLECTORS / f".{candidate}.lock", blocking=False)
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
            try:
                with np.load(meta_path, allow_pickle=False) as meta:
                    sha = meta_info(meta)["frames_sha256"]
                intact = file_sha256(frames_path) == sha
            except Exception:  # a damaged meta file fails in many ways (BadZipFile, EOFError, KeyError, ...)
                intact = False
            if intact:
                self._shards.append(shard_entry(name, frames_path, meta_path, sha))
                continue
            (self.data_dir / DAMAGED).mkdir(exist_ok=True)  # set aside, not adopted: its episodes are collected again
            for path in (frames_path, meta_path):
                path.replace(self.data_dir / DAMAGED / path.name)
            warnings.warn(f"shard {name} was committed damaged: moved to {self.data_dir / DAMAGED}/", stacklevel=2)
        self._shards.sort(key=lambda s: s["name"])

    # -- public -----------------------------------------------------------------------------------
    def existing_episodes(self) -> set[tuple[int, int]]:
        """``(episode_index, seed)`` of every episode already committed in the dataset, any collector."""
        try:
            shards = merged_manifest(self.data_dir)["shards"]
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
        frames_path, meta_path = shard_paths(self.data_dir, name)
        with atomic_file(frames_path) as tmp:
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
        with atomic_file(meta_path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        self._shards.append(shard_entry(name, frames_path, meta_path, frames_sha256))
        self._write_manifest()

    def _write_manifest(self) -> None:
        write_json(
            self._manifest_path,
            collector_manifest(
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

"""Read a rollout dataset: memory-mapped frames, random gathers, episodes and episode-wise splits.

Opening merges the collector manifests (:mod:`worldmodel.data.manifest`) and checks every
shard's size and ``.npy`` header; the full SHA-256 checksum is verified once per shard and
remembered in ``DATA_DIR/.verified.json`` (keyed by size and mtime), or every time with
``verify="full"`` (see :func:`~worldmodel.data.format.check_shard`).

>>> import tempfile
>>> import numpy as np
>>> from worldmodel.data.writer import DatasetWriter
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
import functools
import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from worldmodel.data.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    VERIFIED_CACHE,
    DatasetError,
    Episode,
    Verify,
    check_shard,
    shard_paths,
    write_json,
)
from worldmodel.data.manifest import merged_manifest
from worldmodel.frames import FrameSpec


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
        names = manifest.get("state_names")
        self.state_names: tuple[str, ...] | None = tuple(names) if names and len(names) == self.state_dim else None
        """Names of the true-state columns, as every collector recorded them (None when unnamed)."""
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
        manifest = merged_manifest(data_dir)
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
                new_cache[shard["name"]] = check_shard(data_dir, shard, verify, cache.get(shard["name"]))
                good.append(shard)
            except DatasetError as exc:
                if not skip_bad_shards:
                    raise
                warnings.warn(f"skipping a bad shard: {exc}", stacklevel=2)
        if verify == "auto" and new_cache != cache:
            with contextlib.suppress(OSError):  # a read-only dataset just verifies again next time
                write_json(cache_path, new_cache)
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
            path, _ = shard_paths(self.data_dir, self._names[shard])
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
        _, path = shard_paths(self.data_dir, self._names[shard])
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

    def previous_in_episode(self, indices: np.ndarray) -> np.ndarray:
        """int64 global index of the frame before each of ``indices`` in its episode (itself for a first frame)."""
        idx = self._check_indices(indices, self.num_frames, "frame")
        first = self._ep_start[self.episode_of(idx)] == idx
        return np.where(first, idx, idx - 1)

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

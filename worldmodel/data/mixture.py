"""Several :class:`~worldmodel.data.reader.FrameDataset` s as one frame source, and epochs mixed in proportions.

:class:`FrameMixture` numbers the frames of its datasets one after the other (dataset
``k``'s local frame ``i`` is global index ``offsets[k] + i``) and gathers any set of global
indices, so the trainer's batch gathering works unchanged on one dataset or several.
:func:`mixed_order` draws one epoch of global indices with each dataset's share of the
frames fixed by ``weights`` (small datasets are repeated, large ones subsampled); it
depends only on the generator it is given, so an epoch seeded by ``(seed, epoch)`` is the
same on every DDP rank and after a resume.

>>> import numpy as np
>>> order = mixed_order([np.arange(10), np.arange(100, 104)], (0.5, 0.5), 20, np.random.default_rng(0))
>>> int((order < 100).sum()), int((order >= 100).sum())
(10, 10)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np

from worldmodel.data.format import DatasetError
from worldmodel.data.reader import FrameDataset
from worldmodel.frames import FrameSpec


def allocate(total: int, weights: Sequence[float]) -> np.ndarray:
    """Split ``total`` into integer counts proportional to ``weights`` (largest remainders get the rest).

    >>> allocate(10, (1, 1, 1)).tolist()
    [4, 3, 3]
    """
    w = np.asarray(weights, dtype=np.float64)
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(np.int64)
    rest = total - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:rest]] += 1
    return counts


def mixed_order(
    sources: Sequence[np.ndarray], weights: Sequence[float], count: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` indices drawn from ``sources`` (index arrays) with shares ``weights``, in random order.

    Each source contributes exactly its :func:`allocate` share, taken from consecutive
    random permutations of it (no repeat before every index was used once).
    """
    counts = allocate(count, weights)
    labels = rng.permutation(np.repeat(np.arange(len(sources), dtype=np.int64), counts))
    order = np.empty(count, dtype=np.int64)
    for k, (source, n) in enumerate(zip(sources, counts, strict=True)):
        if n == 0:
            continue
        reps = -(-int(n) // len(source))
        order[labels == k] = np.concatenate([rng.permutation(source) for _ in range(reps)])[:n]
    return order


class FrameMixture:
    """Frames of several datasets with one frame spec, under global indices (see the module docstring).

    ``names`` label the datasets in errors and metrics (default: their directories).
    Raises :class:`~worldmodel.data.format.DatasetError` naming both datasets when frame specs differ.
    """

    def __init__(self, datasets: Sequence[FrameDataset], names: Sequence[str] | None = None) -> None:
        if not datasets:
            raise DatasetError("no dataset given; pass at least one DATA_DIR")
        self.datasets = list(datasets)
        self.names = list(names) if names is not None else [str(ds.data_dir) for ds in datasets]
        first = self.datasets[0]
        for name, ds in zip(self.names[1:], self.datasets[1:], strict=True):
            if ds.frame_spec != first.frame_spec:
                raise DatasetError(
                    f"datasets {self.names[0]} and {name} hold frames of different frame specs ({first.frame_spec} "
                    f"vs {ds.frame_spec}); mix only datasets collected with the same --size, --crop and --grayscale"
                )
        self.offsets = np.cumsum([0] + [ds.num_frames for ds in self.datasets]).astype(np.int64)
        dims = {ds.state_dim for ds in self.datasets}
        self.state_dim: int | None = dims.pop() if len(dims) == 1 else None
        names = {ds.state_names for ds in self.datasets}
        self.state_names: tuple[str, ...] | None = names.pop() if len(names) == 1 else None

    @property
    def frame_spec(self) -> FrameSpec:
        return self.datasets[0].frame_spec

    @property
    def env_id(self) -> str:
        return self.datasets[0].env_id

    @property
    def num_frames(self) -> int:
        return int(self.offsets[-1])

    @property
    def dataset_id(self) -> str:
        """The dataset's own id for one dataset; for several, an id of their ids in order."""
        ids = [ds.dataset_id for ds in self.datasets]
        if len(ids) == 1:
            return ids[0]
        return "mix-" + hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]

    def source_of(self, indices: np.ndarray) -> np.ndarray:
        """The dataset number of each global index."""
        return np.searchsorted(self.offsets, indices, side="right") - 1

    def _gather(self, indices: np.ndarray, what: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if len(self.datasets) == 1:
            return getattr(self.datasets[0], what)(indices)
        source = self.source_of(indices)
        out = np.empty((len(indices), *shape), dtype=dtype)
        for k in np.unique(source):
            mask = source == k
            out[mask] = getattr(self.datasets[k], what)(indices[mask] - self.offsets[k])
        return out

    def frames(self, indices: np.ndarray) -> np.ndarray:
        """uint8 frames ``(len(indices), h, w, c)`` at global ``indices``."""
        return self._gather(indices, "frames", self.frame_spec.shape, np.uint8)

    def states(self, indices: np.ndarray) -> np.ndarray | None:
        """float32 true states at global ``indices``; None unless every dataset has states of one size."""
        if self.state_dim is None:
            return None
        return self._gather(indices, "states", (self.state_dim,), np.float32)

    def previous_in_episode(self, indices: np.ndarray) -> np.ndarray:
        """Global index of the frame before each of ``indices`` in its episode (itself for a first frame)."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty(len(indices), np.int64)
        source = self.source_of(indices)
        for k in np.unique(source):
            mask = source == k
            out[mask] = self.datasets[k].previous_in_episode(indices[mask] - self.offsets[k]) + self.offsets[k]
        return out

    def split_by_episode(self, val_fraction: float, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per dataset, its ``(train, val)`` episode split (:meth:`FrameDataset.split_by_episode`) in global indices."""
        splits = []
        for ds, offset in zip(self.datasets, self.offsets, strict=False):
            train, val = ds.split_by_episode(val_fraction, seed=seed)
            splits.append((train + offset, val + offset))
        return splits

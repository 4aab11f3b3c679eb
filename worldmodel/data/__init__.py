"""Rollout datasets: shards written by collectors, memory-mapped frames read by training.

- :mod:`~worldmodel.data.format`: the on-disk layout, shard files, locks and checks;
- :mod:`~worldmodel.data.manifest`: collector manifests, their merge and rebuild;
- :mod:`~worldmodel.data.writer`: :class:`DatasetWriter` appends episodes in shards;
- :mod:`~worldmodel.data.reader`: :class:`FrameDataset` reads them memory-mapped;
- :mod:`~worldmodel.data.repair`: damaged shards set aside, so that collecting again replaces them;
- :mod:`~worldmodel.data.mixture`: several datasets as one frame source.

``python -m worldmodel.data DATA_DIR [--rebuild] [--verify]`` describes, verifies or rebuilds one.
"""

from worldmodel.data.format import DatasetError, Episode, check_frame_spec
from worldmodel.data.manifest import merge_manifests, rebuild_manifest
from worldmodel.data.reader import FrameDataset
from worldmodel.data.repair import set_aside_damaged_shards
from worldmodel.data.writer import DatasetWriter

__all__ = [
    "DatasetError",
    "DatasetWriter",
    "Episode",
    "FrameDataset",
    "check_frame_spec",
    "merge_manifests",
    "rebuild_manifest",
    "set_aside_damaged_shards",
]

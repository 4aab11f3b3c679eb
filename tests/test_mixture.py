"""worldmodel.data.mixture: global indices over several datasets, and epochs mixed in proportions."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_blob_dataset

from worldmodel.data import DatasetError, FrameDataset
from worldmodel.data.mixture import FrameMixture, allocate, mixed_order


def test_allocate_sums_to_total_and_follows_weights():
    for total, weights in [(208, (0.75, 0.25)), (7, (1, 2, 4)), (5, (0, 1))]:
        counts = allocate(total, weights)
        assert counts.sum() == total
        assert np.all(np.abs(counts - total * np.array(weights) / sum(weights)) < 1)


def test_mixed_order_shares_repeats_and_determinism():
    small, large = np.arange(10), np.arange(100, 200)
    order = mixed_order([small, large], (0.5, 0.5), 60, np.random.default_rng(3))
    from_small = order[order < 100]
    assert len(from_small) == 30 and np.array_equal(np.bincount(from_small, minlength=10), np.full(10, 3))
    from_large = order[order >= 100]
    assert len(np.unique(from_large)) == 30  # subsampled without repeats
    again = mixed_order([small, large], (0.5, 0.5), 60, np.random.default_rng(3))
    assert np.array_equal(order, again)


def test_frame_mixture_gathers_from_each_dataset(tmp_path):
    a = FrameDataset.open(write_blob_dataset(tmp_path / "a", episodes=2))
    b = FrameDataset.open(write_blob_dataset(tmp_path / "b", episodes=3, seed=7))
    mix = FrameMixture([a, b])
    idx = np.array([0, 5, a.num_frames + 1, a.num_frames + b.num_frames - 1])
    expected = np.concatenate([a.frames(idx[:2]), b.frames(idx[2:] - a.num_frames)])
    assert np.array_equal(mix.frames(idx), expected)
    assert np.array_equal(mix.states(idx), np.concatenate([a.states(idx[:2]), b.states(idx[2:] - a.num_frames)]))
    assert mix.source_of(idx).tolist() == [0, 0, 1, 1]
    (train_a, val_a), (train_b, val_b) = mix.split_by_episode(0.5, seed=0)
    assert set(mix.source_of(np.concatenate([train_a, val_a]))) == {0}
    assert set(mix.source_of(np.concatenate([train_b, val_b]))) == {1}
    assert mix.dataset_id != a.dataset_id and FrameMixture([a]).dataset_id == a.dataset_id


def test_frame_specs_must_agree(tmp_path):
    a = FrameDataset.open(write_blob_dataset(tmp_path / "a", episodes=2))
    b = FrameDataset.open(write_blob_dataset(tmp_path / "b", episodes=2, size=8))
    with pytest.raises(DatasetError, match="datasets first and second hold frames of different frame specs"):
        FrameMixture([a, b], ["first", "second"])

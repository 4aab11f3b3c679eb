import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from worldmodel.data import DatasetError, DatasetWriter, FrameDataset, check_frame_spec, rebuild_manifest
from worldmodel.data.__main__ import main as dataset_main
from worldmodel.data.format import COLLECTORS, MANIFEST, SHARDS
from worldmodel.frames import FrameSpec

SPEC = FrameSpec(height=8, width=8)


def make_episode(rng: np.random.Generator, steps: int, state_dim: int | None = 3):
    frames = rng.integers(0, 256, (steps + 1, *SPEC.shape), dtype=np.uint8)
    actions = rng.normal(size=(steps, 2)).astype(np.float32)
    rewards = rng.normal(size=steps).astype(np.float32)
    terminated = np.zeros(steps, bool)
    terminated[-1] = True
    truncated = np.zeros(steps, bool)
    states = None if state_dim is None else rng.normal(size=(steps + 1, state_dim)).astype(np.float32)
    return frames, actions, rewards, terminated, truncated, states


def write(data_dir, episodes, *, shard_mib=64.0, collector_id="c", first_index=0):
    with DatasetWriter(
        data_dir, env_id="Demo-v0", frame_spec=SPEC, collector_id=collector_id, shard_mib=shard_mib
    ) as w:
        for i, (frames, actions, rewards, term, trunc, states) in enumerate(episodes, start=first_index):
            w.add_episode(frames, actions, rewards, term, trunc, seed=100 + i, episode_index=i, states=states)


@pytest.fixture
def episodes():
    rng = np.random.default_rng(0)
    return [make_episode(rng, int(steps)) for steps in rng.integers(3, 12, size=7)]


@pytest.fixture
def dataset_dir(tmp_path, episodes):
    # 16 frames per shard: several shards, episodes never split across them.
    write(tmp_path, episodes, shard_mib=16 * SPEC.height * SPEC.width * 3 / 2**20)
    return tmp_path


def test_round_trip_across_shards(dataset_dir, episodes):
    ds = FrameDataset.open(dataset_dir)
    assert ds.manifest["num_shards"] > 1
    all_frames = np.concatenate([e[0] for e in episodes])
    all_states = np.concatenate([e[5] for e in episodes])
    assert (ds.num_frames, ds.num_episodes, ds.state_dim) == (len(all_frames), len(episodes), 3)
    assert ds.env_id == "Demo-v0" and ds.frame_spec == SPEC
    idx = np.random.default_rng(1).integers(0, ds.num_frames, 50)
    np.testing.assert_array_equal(ds.frames(idx), all_frames[idx])
    np.testing.assert_array_equal(ds.states(idx), all_states[idx])
    owner = np.repeat(np.arange(len(episodes)), [len(e[0]) for e in episodes])
    np.testing.assert_array_equal(ds.episode_of(idx), owner[idx])
    for row, (frames, actions, rewards, term, _trunc, states) in enumerate(episodes):
        ep = ds.episode(row)
        np.testing.assert_array_equal(ep.frames, frames)
        np.testing.assert_array_equal(ep.actions, actions)
        np.testing.assert_array_equal(ep.rewards, rewards)
        np.testing.assert_array_equal(ep.terminated, term)
        np.testing.assert_array_equal(ep.states, states)
        assert (ep.seed, ep.episode_index) == (100 + row, row)
        np.testing.assert_array_equal(ds.frames(ds.episode_frames(row)), frames)
    np.testing.assert_allclose(ds.episode_return, [e[2].sum() for e in episodes], rtol=1e-6)
    with pytest.raises(IndexError, match=r"\[0, "):
        ds.frames(np.array([ds.num_frames]))


def test_pickles_for_dataloader_workers(dataset_dir):
    ds = FrameDataset.open(dataset_dir)
    ds.frames(np.arange(3))  # opens a memory map
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone.frames(np.arange(ds.num_frames)), ds.frames(np.arange(ds.num_frames)))
    assert clone.dataset_id == ds.dataset_id


def test_manifest_is_consistent_and_id_stable(dataset_dir):
    manifest = json.loads((dataset_dir / MANIFEST).read_text())
    ds = FrameDataset.open(dataset_dir)
    assert manifest["num_frames"] == ds.num_frames and manifest["version"] == 1
    assert all(len(s["frames_sha256"]) == 64 for s in manifest["shards"])
    assert FrameDataset.open(dataset_dir).dataset_id == ds.dataset_id


def test_split_by_episode(dataset_dir):
    ds = FrameDataset.open(dataset_dir)
    train, val = ds.split_by_episode(0.3, seed=0)
    assert train.dtype == val.dtype == np.int64
    assert len(val) > 0 and len(train) + len(val) == ds.num_frames
    assert not set(ds.episode_of(train)) & set(ds.episode_of(val))
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(ds.num_frames))
    again, _ = ds.split_by_episode(0.3, seed=0)
    np.testing.assert_array_equal(train, again)
    # a tiny fraction still gives one validation episode
    assert len(set(ds.episode_of(ds.split_by_episode(0.01, seed=1)[1]))) == 1


def shard_file(data_dir, suffix=".frames.npy"):
    return sorted((data_dir / SHARDS).glob("*" + suffix))[1]


def test_truncated_shard_is_named_and_can_be_skipped(dataset_dir):
    bad = shard_file(dataset_dir)
    size = bad.stat().st_size
    with open(bad, "r+b") as f:
        f.truncate(size - 10)
    name = bad.name.split(".")[0]
    with pytest.raises(DatasetError, match=rf"shard {name}.*truncated.*skip_bad_shards"):
        FrameDataset.open(dataset_dir)
    with pytest.warns(UserWarning, match=name):
        ds = FrameDataset.open(dataset_dir, skip_bad_shards=True)
    assert ds.manifest["num_shards"] == json.loads((dataset_dir / MANIFEST).read_text())["num_shards"] - 1
    ds.frames(np.arange(ds.num_frames))  # the rest reads fine


@pytest.mark.parametrize("suffix", [".frames.npy", ".meta.npz"])
def test_corrupt_shard_fails_its_checksum(dataset_dir, suffix):
    FrameDataset.open(dataset_dir)  # verified once and cached
    bad = shard_file(dataset_dir, suffix)
    data = bytearray(bad.read_bytes())
    data[-5] ^= 0xFF
    bad.write_bytes(data)  # same size, new mtime
    with pytest.raises(DatasetError, match=rf"shard {bad.name.split('.')[0]}.*SHA-256"):
        FrameDataset.open(dataset_dir)
    with pytest.raises(DatasetError, match="SHA-256"):
        FrameDataset.open(dataset_dir, verify="full")


def test_missing_dataset_and_empty_dir_are_clear(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        FrameDataset.open(tmp_path / "nope")
    with pytest.raises(DatasetError, match="worldmodel collect"):
        FrameDataset.open(tmp_path)


def test_crash_leftovers_are_cleaned_and_orphans_adopted(tmp_path, episodes):
    write(tmp_path, episodes[:2])
    shards = tmp_path / SHARDS
    committed = sorted(p.name for p in shards.iterdir())
    # a shard committed (meta renamed) but killed before its manifest update
    write(tmp_path, episodes[2:4], collector_id="other", first_index=2)
    for path in shards.glob("other-*"):
        path.rename(shards / path.name.replace("other-000000", "c-000001"))
    (tmp_path / COLLECTORS / "other.json").unlink()
    # a frames file renamed but its meta never written, and temporary files
    (shards / "c-000002.frames.npy").write_bytes(b"partial")
    (shards / ".c-000003.frames.npy.abcd.tmp").write_bytes(b"partial")
    (tmp_path / COLLECTORS / ".c.json.abcd.tmp").write_text("{")
    write(tmp_path, episodes[4:5], first_index=4)
    names = sorted(p.name for p in shards.iterdir())
    assert names == [*committed, "c-000001.frames.npy", "c-000001.meta.npz", "c-000002.frames.npy",
                     "c-000002.meta.npz"]  # fmt: skip
    assert not list(tmp_path.rglob("*.tmp"))
    ds = FrameDataset.open(tmp_path)
    assert sorted(ds.episode_index.tolist()) == [0, 1, 2, 3, 4]


def test_two_collectors_share_a_dataset(tmp_path, episodes):
    a = DatasetWriter(tmp_path, env_id="Demo-v0", frame_spec=SPEC, collector_id="a")
    with pytest.raises(DatasetError, match="in use"):
        DatasetWriter(tmp_path, env_id="Demo-v0", frame_spec=SPEC, collector_id="a")
    b = DatasetWriter(tmp_path, env_id="Demo-v0", frame_spec=SPEC, collector_id="b")
    for i, writer in enumerate((a, b, a, b)):
        frames, actions, rewards, term, trunc, states = episodes[i]
        writer.add_episode(frames, actions, rewards, term, trunc, seed=i, episode_index=i, states=states)
        writer.flush()
    a.close()
    b.close()
    ds = FrameDataset.open(tmp_path)
    assert ds.num_episodes == 4 and sorted(ds.manifest["collectors"]) == ["a", "b"]
    assert json.loads((tmp_path / MANIFEST).read_text())["num_episodes"] == 4
    with DatasetWriter(tmp_path, env_id="Demo-v0", frame_spec=SPEC) as w:
        assert w.existing_episodes() == {(i, i) for i in range(4)}


def test_rebuild_manifest(dataset_dir):
    before = FrameDataset.open(dataset_dir)
    for path in (dataset_dir / COLLECTORS).glob("*.json"):
        path.unlink()
    (dataset_dir / MANIFEST).unlink()
    rebuild_manifest(dataset_dir)
    after = FrameDataset.open(dataset_dir)
    assert after.dataset_id == before.dataset_id and after.num_frames == before.num_frames


def test_frame_spec_and_env_mismatch(dataset_dir):
    with pytest.raises(DatasetError, match=r"Demo-v0.*Other-v0.*another directory"):
        DatasetWriter(dataset_dir, env_id="Other-v0", frame_spec=SPEC)
    with pytest.raises(DatasetError, match="grayscale=True"):
        check_frame_spec(FrameDataset.open(dataset_dir).frame_spec, FrameSpec(height=8, width=8, grayscale=True))


def test_add_episode_validates(tmp_path, episodes):
    frames, actions, rewards, term, trunc, states = episodes[0]
    with DatasetWriter(tmp_path, env_id="Demo-v0", frame_spec=SPEC) as w:
        with pytest.raises(ValueError, match="rewards must have shape"):
            w.add_episode(frames, actions, rewards[:-1], term, trunc, seed=0, episode_index=0)
        with pytest.raises(ValueError, match="expected frames of shape"):
            w.add_episode(frames[:, :4], actions, rewards, term, trunc, seed=0, episode_index=0)
        with pytest.raises(ValueError, match="states must have shape"):
            w.add_episode(frames, actions, rewards, term, trunc, seed=0, episode_index=0, states=states[:-1])


RSS_SCRIPT = """
import sys, numpy as np
from worldmodel.data import FrameDataset

def rss_anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024

ds = FrameDataset.open(sys.argv[1], verify="none")
rng = np.random.default_rng(0)
ds.frames(rng.integers(0, ds.num_frames, 256))
before = rss_anon()
for _ in range(2 * ds.num_frames // 256):
    ds.frames(rng.integers(0, ds.num_frames, 256))
print(before, rss_anon())
"""


def test_reader_anonymous_memory_is_bounded(tmp_path):
    spec = FrameSpec()
    frame_bytes = int(np.prod(spec.shape))
    growth = {}
    for scale in (1, 4):
        data_dir = tmp_path / f"x{scale}"
        with DatasetWriter(data_dir, env_id="Demo-v0", frame_spec=spec, shard_mib=8) as w:
            for i in range(10 * scale):
                frames = np.full((200, *spec.shape), i, np.uint8)
                w.add_episode(frames, np.zeros((199, 1)), np.zeros(199), np.zeros(199), np.zeros(199),
                              seed=i, episode_index=i)  # fmt: skip
        out = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(data_dir)], capture_output=True, text=True,
                             check=True, timeout=60)  # fmt: skip
        before, after = map(int, out.stdout.split())
        growth[scale] = after - before
    # reading 4x the data (98 MB, twice over) grows anonymous memory by a few batches at most, as 1x does
    assert max(growth.values()) < 16 * 2**20 < 4 * 2000 * frame_bytes, growth
    assert growth[4] - growth[1] < 2 * 2**20, growth


def test_command_line_rebuilds_and_describes(dataset_dir, capsys):
    (dataset_dir / MANIFEST).unlink()
    for path in (dataset_dir / COLLECTORS).glob("*.json"):
        path.unlink()
    assert dataset_main([str(dataset_dir), "--rebuild", "--verify"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 7 and summary["env_id"] == "Demo-v0"
    out = subprocess.run([sys.executable, "-m", "worldmodel.data", str(dataset_dir), "--verify"], capture_output=True,
                         text=True, check=True, timeout=120)  # fmt: skip
    assert json.loads(out.stdout) == summary


def test_unreadable_manifest_names_the_rebuild_command(dataset_dir):
    (dataset_dir / COLLECTORS / "c.json").write_text("{")
    with pytest.raises(DatasetError, match=rf"`python -m worldmodel.data {dataset_dir} --rebuild`"):
        FrameDataset.open(dataset_dir)


def test_verify_on_a_damaged_shard_is_one_line_and_exit_2(dataset_dir, capsys):
    frames = sorted((Path(dataset_dir) / SHARDS).glob("*.frames.npy"))[0]
    frames.write_bytes(frames.read_bytes()[:500])
    assert dataset_main([str(dataset_dir), "--verify"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "truncated" in err and "run the same `worldmodel collect` command again" in err

"""Setting damaged shards aside, so that collecting again replaces their episodes.

A shard whose files are missing, truncated or fail their SHA-256 (a disk fault, a copy cut
short) is moved, with whatever of its files exist, to ``DATA_DIR/damaged/`` (nothing is
deleted) and dropped from its collector's manifest; the dataset then lacks its episodes,
which ``worldmodel collect`` with the same settings collects again.

>>> import tempfile
>>> set_aside_damaged_shards(tempfile.mkdtemp())  # no dataset yet: nothing to do
[]
"""

from __future__ import annotations

import os
from pathlib import Path

from worldmodel.data.format import (
    COLLECTORS,
    DAMAGED,
    VERIFIED_CACHE,
    DatasetError,
    check_shard,
    read_json,
    read_manifest,
    shard_paths,
    write_json,
)
from worldmodel.data.manifest import merge_manifests


def set_aside_damaged_shards(data_dir: str | os.PathLike) -> list[str]:
    """Move every shard that fails its checks to ``DATA_DIR/damaged/``; one line per shard moved.

    Checks sizes and headers always and SHA-256 checksums once per shard (cached as the
    reader caches them). Do not run it while another collector writes into ``data_dir``.
    """
    data_dir = Path(data_dir)
    manifests = sorted((data_dir / COLLECTORS).glob("*.json"))
    try:
        cache = read_json(data_dir / VERIFIED_CACHE) if (data_dir / VERIFIED_CACHE).is_file() else {}
    except DatasetError:  # an unreadable cache only means checking again
        cache = {}
    moved: list[str] = []
    for manifest_path in manifests:
        manifest = read_manifest(manifest_path)
        kept = []
        for shard in manifest["shards"]:
            try:
                cache[shard["name"]] = check_shard(data_dir, shard, "auto", cache.get(shard["name"]))
                kept.append(shard)
            except DatasetError as exc:
                moved.append(f"{exc.args[0].split(';')[0]}: moved to {data_dir / DAMAGED}/; its "
                             f"{shard['num_episodes']} episodes are missing now and collected again")  # fmt: skip
                (data_dir / DAMAGED).mkdir(exist_ok=True)
                for path in shard_paths(data_dir, shard["name"]):
                    if path.exists():
                        path.replace(data_dir / DAMAGED / path.name)
                cache.pop(shard["name"], None)
        if len(kept) < len(manifest["shards"]):
            write_json(manifest_path, {**manifest, "shards": kept})
    if moved:
        write_json(data_dir / VERIFIED_CACHE, cache)
        merge_manifests(data_dir)
    return moved

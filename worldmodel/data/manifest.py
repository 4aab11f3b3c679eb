"""Dataset manifests: each collector's own, merged into ``manifest.json``, or rebuilt from the shards.

The collector manifests under ``collectors/`` are the source of truth (see
:mod:`worldmodel.data.format`); ``manifest.json`` is their merge, rewritten under a lock
after every shard a collector commits, and :func:`rebuild_manifest` recovers all of them
from the committed shards alone.

>>> m = collector_manifest("host", env_id="Demo-v0", frame_spec={}, attrs={}, shards=[])
>>> m["format"], m["version"], m["collector_id"]
('worldmodel.dataset', 1, 'host')
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from worldmodel.common.atomic import TEMP_SUFFIX
from worldmodel.data.format import (
    COLLECTORS,
    DAMAGED,
    FORMAT_NAME,
    FORMAT_VERSION,
    FRAMES_SUFFIX,
    MANIFEST,
    META_SUFFIX,
    SHARDS,
    DatasetError,
    locked,
    meta_info,
    read_json,
    read_manifest,
    shard_entry,
    write_json,
)
from worldmodel.vae.checkpoint import file_sha256


def collector_manifest(
    collector_id: str, *, env_id: str, frame_spec: dict[str, Any], attrs: dict[str, Any], shards: list[dict[str, Any]]
) -> dict[str, Any]:
    """The manifest of one collector: its id, env, frame spec, ``attrs`` and committed ``shards``."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "collector_id": collector_id,
        "env_id": env_id,
        "frame_spec": frame_spec,
        "attrs": attrs,
        "shards": shards,
    }


def merged_manifest(data_dir: Path) -> dict[str, Any]:
    """The merged manifest of every collector manifest in ``data_dir`` (the source of truth)."""
    collectors = sorted((data_dir / COLLECTORS).glob("*.json"))
    if not collectors:
        if (data_dir / MANIFEST).exists():
            return read_manifest(data_dir / MANIFEST)
        raise DatasetError(
            f"{data_dir} holds no dataset (no {COLLECTORS}/*.json or {MANIFEST}); collect one with "
            f"`worldmodel collect ENV_ID --out {data_dir}`"
        )
    shards: list[dict[str, Any]] = []
    ids, names = [], set()
    for path in collectors:
        manifest = read_manifest(path)
        ids.append(manifest["collector_id"])
        shards.extend(manifest["shards"])
        names.add(tuple(manifest.get("attrs", {}).get("state_names") or ()))
    shards.sort(key=lambda s: s["name"])
    first = shards[0] if shards else read_json(collectors[0])
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
        "state_names": list(names.pop()) if len(names) == 1 and () not in names else None,
        "shards": shards,
    }


def merge_manifests(data_dir: str | os.PathLike) -> dict[str, Any]:
    """Rewrite ``DATA_DIR/manifest.json`` from the collector manifests (under a lock) and return it."""
    data_dir = Path(data_dir)
    with locked(data_dir / ".manifest.lock"):
        for stale in data_dir.glob(f".{MANIFEST}.*{TEMP_SUFFIX}"):  # left by a killed lock holder
            stale.unlink(missing_ok=True)
        merged = merged_manifest(data_dir)
        write_json(data_dir / MANIFEST, merged)
    return merged


def rebuild_manifest(data_dir: str | os.PathLike) -> dict[str, Any]:
    """Rebuild every collector manifest and ``manifest.json`` from the committed shards alone.

    Shards whose frames are missing or fail their checksum, or whose meta file is unreadable, are
    moved to ``DATA_DIR/damaged/`` (as :mod:`worldmodel.data.repair` does) with a warning, so that
    collecting again replaces their episodes. Do not run it while collectors write into ``data_dir``.
    """
    data_dir = Path(data_dir)
    by_collector: dict[str, list[dict[str, Any]]] = {}
    header: dict[str, dict[str, Any]] = {}
    for meta_path in sorted((data_dir / SHARDS).glob("*" + META_SUFFIX)):
        name = meta_path.name[: -len(META_SUFFIX)]
        frames_path = meta_path.with_name(name + FRAMES_SUFFIX)
        try:
            with np.load(meta_path, allow_pickle=False) as meta:
                info = meta_info(meta)
            if not frames_path.exists() or file_sha256(frames_path) != info["frames_sha256"]:
                raise ValueError(f"{frames_path.name} is missing or does not match its checksum")
            entry = shard_entry(name, frames_path, meta_path, info["frames_sha256"])
        except Exception as exc:  # a damaged meta file fails in many ways (BadZipFile, EOFError, ...)
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())
            (data_dir / DAMAGED).mkdir(exist_ok=True)
            for path in (frames_path, meta_path):
                if path.exists():
                    path.replace(data_dir / DAMAGED / path.name)
            warnings.warn(
                f"rebuild_manifest: shard {name} is damaged ({detail}): moved to {data_dir / DAMAGED}/; its "
                "episodes are missing now and collected again by the same `worldmodel collect` command",
                stacklevel=2,
            )
            continue
        by_collector.setdefault(info["collector_id"], []).append(entry)
        header[info["collector_id"]] = {"env_id": info["env_id"], "frame_spec": info["frame_spec"]}
    if not by_collector:
        raise DatasetError(
            f"no intact committed shards under {data_dir / SHARDS}; nothing to rebuild. Collect the episodes "
            f"(again) with `worldmodel collect ENV_ID --out {data_dir}`"
        )
    for old in (data_dir / COLLECTORS).glob("*.json"):
        if old.stem not in by_collector:
            old.unlink()
    for collector_id, shards in by_collector.items():
        write_json(
            data_dir / COLLECTORS / f"{collector_id}.json",
            collector_manifest(collector_id, **header[collector_id], attrs={"rebuilt": True}, shards=shards),
        )
    return merge_manifests(data_dir)

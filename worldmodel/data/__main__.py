"""``python -m worldmodel.data DATA_DIR [--rebuild] [--verify]``: describe, verify or rebuild a dataset.

Prints a JSON summary of the dataset (env, id, frame spec, shards, episodes, frames). A dataset
it cannot open ends with one line naming the problem and the fix, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from worldmodel.data.format import DatasetError
from worldmodel.data.manifest import rebuild_manifest
from worldmodel.data.reader import FrameDataset


def main(argv: list[str] | None = None) -> int:
    """``python -m worldmodel.data DATA_DIR [--rebuild] [--verify]``: describe, verify or rebuild."""
    parser = argparse.ArgumentParser(prog="python -m worldmodel.data", description=main.__doc__)
    parser.add_argument("data_dir")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the manifests from the shards first")
    parser.add_argument("--verify", action="store_true", help="check every shard's SHA-256, ignoring the cache")
    args = parser.parse_args(argv)
    try:
        if args.rebuild:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    rebuild_manifest(args.data_dir)
                finally:
                    for warning in caught:  # one line each: the shards set aside
                        if issubclass(warning.category, UserWarning):
                            print(f"{parser.prog}: {warning.message}", file=sys.stderr)
        ds = FrameDataset.open(args.data_dir, verify="full" if args.verify else "auto")
    except (DatasetError, OSError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
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

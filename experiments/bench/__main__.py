"""``python -m experiments.bench``: run every benchmark; each writes its section of the benchmarks' report.

Benchmarks run one after another (never two at once: they would distort each other's
figures). ``--only NAME ...`` runs a subset; the other sections keep their last committed run
(each is its own generated part of ``experiments/reports/benchmarks/README.md``: see
:func:`experiments.pipeline.machine.write_section`).
"""

from __future__ import annotations

import argparse
import importlib

from experiments.pipeline.machine import BENCHMARKS_REPORT

BENCHMARKS = (
    "collect",
    "dataset_read",
    "train_vae",
    "latent_wrapper",
    "envpool",
    "atari",
    "memory",
    "tqc",
    "gpu",
    "busy_neighbour",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__)
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    args = parser.parse_args(argv)
    for name in args.only or BENCHMARKS:
        print(f"== benchmark {name} ==", flush=True)
        print(importlib.import_module(f"experiments.bench.{name}").run(), flush=True)
    print(f"wrote {BENCHMARKS_REPORT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m experiments.bench``: run every benchmark and write experiments/reports/benchmarks.md.

Benchmarks run one after another (never two at once: they would distort each other's
figures). ``--only NAME ...`` runs a subset and keeps the other sections from their
last committed run; ``--assemble`` runs none and only rewrites benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib

from experiments.pipeline.machine import SECTIONS_DIR
from worldmodel.common.atomic import atomic_path

BENCHMARKS = ("collect", "dataset_read", "train_vae", "latent_wrapper", "envpool", "memory", "tqc", "gpu")
REPORTS = SECTIONS_DIR.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__)
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    parser.add_argument("--assemble", action="store_true", help="run nothing: rewrite benchmarks.md from the sections")
    args = parser.parse_args(argv)
    for name in () if args.assemble else args.only or BENCHMARKS:
        print(f"== benchmark {name} ==", flush=True)
        print(importlib.import_module(f"experiments.bench.{name}").run(), flush=True)
    sections = []
    for name in BENCHMARKS:
        section = SECTIONS_DIR / f"{name}.md"
        sections.append(section.read_text() if section.exists() else f"## {name}\n\nNot run yet.\n")
    header = (
        "# Benchmarks\n\nMade by `make bench` (`python -m experiments.bench`); each section states its "
        "machine and date and compares against a baseline measured in the same run.\n\n"
    )
    with atomic_path(REPORTS / "benchmarks.md") as tmp:
        tmp.write_text(header + "\n".join(sections))
    print(f"wrote {REPORTS / 'benchmarks.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmarks. Each module ``experiments/bench/<name>.py`` exposes ``run() -> str`` returning a
markdown section (what was measured, machine, date, a table with ratios against a baseline
measured in the same run) and can be run alone with ``python -m experiments.bench.<name>``.
``python -m experiments.bench`` runs them all; each writes its section of
``experiments/reports/benchmarks/README.md``.
"""

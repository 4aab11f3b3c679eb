"""Orchestration the commands use: the staged pipeline, its records and report, ``iterate``, carrying runs in git."""

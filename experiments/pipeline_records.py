"""The files a pipeline output directory holds, and how to read them.

:mod:`experiments.pipeline` writes these records and :mod:`experiments.report` (and the
other experiments) read them; both import them from here, so the pipeline can call the
report without the report importing the pipeline back.

>>> import tempfile
>>> out = Path(tempfile.mkdtemp())
>>> read_stages(out), read_json(out / PIPELINE_FILE)
({}, None)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agents.bundle import BEST_DIR, BEST_FILE, MODEL_FILE, POLICIES
from agents.evaluate import BEST_EVALUATION_FILE, EVALUATION_FILE, evaluation_file

__all__ = [  # the run-directory names the pipeline's readers use, re-exported from the agents layer
    "BEST_EVALUATION_FILE",
    "EVALUATION_FILE",
    "PIPELINE_FILE",
    "POLICIES",
    "STAGES_FILE",
    "VIDEO_FILE",
    "evaluation_file",
    "evaluation_predates_model",
    "read_json",
    "read_stages",
]

STAGES_FILE = "stages.json"
"""``OUT/stages.json``: per stage, its status, wall-clock, env frames, agent steps, steps/s and peak memory."""
PIPELINE_FILE = "pipeline.json"
"""``OUT/pipeline.json``: the config and every command that ran the pipeline."""
VIDEO_FILE = "eval.mp4"
"""An agent run's evaluation video."""


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing or unreadable (not written yet, or cut short)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_stages(out: str | Path) -> dict[str, Any]:
    """``OUT/stages.json`` as a dict (empty when missing)."""
    return read_json(Path(out) / STAGES_FILE) or {}


def evaluation_predates_model(run_dir: Path, evaluation_file: str = EVALUATION_FILE) -> bool:
    """Whether the run's evaluation was made before its agent was trained further (so it is stale); for the best
    policy's evaluation, before a better policy was kept."""
    policy = f"{BEST_DIR}/{BEST_FILE}" if evaluation_file == BEST_EVALUATION_FILE else MODEL_FILE
    path, model = run_dir / evaluation_file, run_dir / policy
    return model.is_file() and path.is_file() and path.stat().st_mtime < model.stat().st_mtime

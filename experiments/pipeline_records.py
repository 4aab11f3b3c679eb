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

STAGES_FILE = "stages.json"
"""``OUT/stages.json``: per stage, its status, wall-clock, env frames, agent steps, steps/s and peak memory."""
PIPELINE_FILE = "pipeline.json"
"""``OUT/pipeline.json``: the config and every command that ran the pipeline."""
EVALUATION_FILE = "evaluation.json"
"""An agent run's ``worldmodel evaluate`` results."""
BEST_EVALUATION_FILE = "evaluation-best.json"
"""Its ``worldmodel evaluate --policy best`` results."""
POLICIES = ("final", "best")
"""The policies of a run an evaluation may score (see ``train-agent --keep-best``)."""


def evaluation_file(policy: str = "final") -> str:
    """The name of the evaluation file of ``policy`` in a run directory.

    >>> evaluation_file("best")
    'evaluation-best.json'
    """
    return {"final": EVALUATION_FILE, "best": BEST_EVALUATION_FILE}[policy]


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
    policy = "best/best.json" if evaluation_file == BEST_EVALUATION_FILE else "model.zip"
    path, model = run_dir / evaluation_file, run_dir / policy
    return model.is_file() and path.is_file() and path.stat().st_mtime < model.stat().st_mtime

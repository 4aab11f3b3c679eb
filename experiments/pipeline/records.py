"""The files a pipeline output directory holds, and how to read them.

:mod:`experiments.pipeline.stages` writes these records and :mod:`experiments.pipeline.report` (and the
other experiments) read them; both import them from here, so the pipeline can call the
report without the report importing the pipeline back.

>>> import tempfile
>>> out = Path(tempfile.mkdtemp())
>>> read_stages(out), read_json(out / PIPELINE_FILE)
({}, None)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from agents.bundle import BEST_DIR, BEST_FILE, EVALUATIONS_FILE, MODEL_FILE, POLICIES
from agents.evaluate import BEST_EVALUATION_FILE, EVALUATION_FILE, evaluation_file
from worldmodel.common.atomic import atomic_dir

__all__ = [  # the run-directory names the pipeline's readers use, re-exported from the agents layer
    "BEST_EVALUATION_FILE",
    "EVALUATION_FILE",
    "PIPELINE_FILE",
    "POLICIES",
    "STAGES_FILE",
    "VIDEO_FILE",
    "copy_records",
    "current_evaluation",
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
NO_STICKY_EVALUATION_FILE = "evaluation-nosticky.json"
"""An Atari agent's final policy scored without sticky actions (``experiments.atari``), beside its evaluation.json."""
SCORES = (EVALUATION_FILE, BEST_EVALUATION_FILE, NO_STICKY_EVALUATION_FILE)
"""A run's final-evaluation files: each left out of the records when it predates the policy it scored."""
RUN_RECORDS = (
    "config.json",
    "summary.json",
    *SCORES,
    EVALUATIONS_FILE,
    f"{BEST_DIR}/{BEST_FILE}",
)
"""The files of an agent run that its report reads: no weights, a few kB in all."""
PIPELINE_RECORDS = (PIPELINE_FILE, STAGES_FILE, "vae/summary.json")
"""The files of a pipeline output, beside its runs', that its report reads."""


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


def current_evaluation(run_dir: Path, evaluation_file: str = EVALUATION_FILE) -> dict[str, Any] | None:
    """The run's evaluation in ``evaluation_file``; None when missing, unreadable, or made before the policy it scores
    was last written (:func:`evaluation_predates_model`)."""
    return None if evaluation_predates_model(run_dir, evaluation_file) else read_json(run_dir / evaluation_file)


def copy_records(out: str | Path, dest: str | Path) -> Path:
    """Copy what a report reads of the pipeline output ``out`` (:data:`PIPELINE_RECORDS` and each agent run's
    :data:`RUN_RECORDS`, with their times) to ``dest``, in the same layout; returns ``dest``.

    ``dest`` is then a pipeline output without weights, data or videos: small enough to commit beside the report,
    and enough to write the report again or to compare other runs with these once ``out`` is gone. Evaluations older
    than their model are left out, as the report leaves them out. ``dest`` is replaced as a whole.
    """
    out, dest = Path(out), Path(dest)
    sources = [(out / name, Path(name)) for name in PIPELINE_RECORDS]
    for run_dir in sorted((out / "agents").glob("*__seed*")):
        stale = {name for name in SCORES if evaluation_predates_model(run_dir, name)}
        sources += [(run_dir / name, Path("agents", run_dir.name, name)) for name in RUN_RECORDS if name not in stale]
    with atomic_dir(dest) as tmp:
        for source, target in sources:
            if source.is_file():
                (tmp / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, tmp / target)  # with its time: staleness checks compare evaluation and model times
    return dest

"""An evaluation's progress on disk, so that an interrupted ``worldmodel evaluate`` resumes.

A 100-track CarRacing evaluation takes 20 minutes on one core; stopped at minute 19 it used
to start over. Now, after every finished episode, ``evaluate`` writes beside its output
(atomically) the return and length of each env's finished episodes. Run again with the same
settings on the same policy file, it runs only what is left: episode *i* resets from
``seed + i`` (:mod:`agents.evaluate`), so the resumed evaluation runs exactly the tracks an
uninterrupted one would: the same returns for a deterministic policy, fresh samples on the
same tracks for a sampled one. A progress file of other settings, or of another policy file,
is replaced, not mixed in.

>>> log = EpisodeLog.empty(2)
>>> log.finished[0].append((812.5, 1000))
>>> EpisodeLog.from_dict(log.to_dict()) == log, log.count(), log.is_done(np.array([1, 0]))
(True, 1, True)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from worldmodel.common.atomic import write_json_atomic
from worldmodel.common.sealed import CHECKSUM_KEY, seal_matches, sealed

PROGRESS_SUFFIX = ".progress.json"
"""``evaluation.json``'s progress is in ``evaluation.progress.json`` until it is written."""


def progress_path(out: str | Path) -> Path:
    """Where the evaluation writing ``out`` keeps its progress.

    >>> progress_path("runs/x/evaluation-best.json").name
    'evaluation-best.progress.json'
    """
    out = Path(out)
    return out.with_name(out.stem + PROGRESS_SUFFIX)


@dataclass
class EpisodeLog:
    """The episodes each env of an evaluation has finished."""

    finished: list[list[tuple[float, int]]]
    """Per env, (return, length) of each finished episode, in order."""

    @classmethod
    def empty(cls, n_envs: int) -> EpisodeLog:
        """No episode finished yet on any of ``n_envs`` envs."""
        return cls([[] for _ in range(n_envs)])

    def count(self) -> int:
        """Episodes finished over all envs."""
        return sum(len(done) for done in self.finished)

    def is_done(self, targets: np.ndarray) -> bool:
        """Whether every env has finished its target number of episodes."""
        return all(len(done) >= target for done, target in zip(self.finished, targets, strict=True))

    def to_dict(self) -> dict[str, Any]:
        return {"finished": [[list(episode) for episode in done] for done in self.finished]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpisodeLog:
        finished = [[(float(r), int(length)) for r, length in done] for done in data["finished"]]
        return cls(finished)


class EvaluationProgress:
    """The progress file of one evaluation: its settings and the policy's :class:`EpisodeLog`.

    A random baseline is not kept: its actions come from one generator shared by every env,
    so it cannot restart exactly at an episode; it runs whole after the policy's episodes.
    """

    def __init__(self, path: Path, settings: dict[str, Any], targets: np.ndarray) -> None:
        """``targets``: the episodes each env of the evaluation is to finish."""
        self.path, self.settings = path, settings
        stored = _stored_log(path, settings, targets) if path.is_file() else None
        self.log = stored if stored is not None else EpisodeLog.empty(len(targets))
        self.resumed = stored is not None

    def save(self) -> None:
        """Write the log (atomically)."""
        write_json_atomic(self.path, sealed({"settings": self.settings, "log": self.log.to_dict()}))

    def remove(self) -> None:
        """Delete the file once the evaluation's results are written."""
        self.path.unlink(missing_ok=True)


def _stored_log(path: Path, settings: dict[str, Any], targets: np.ndarray) -> EpisodeLog | None:
    """The log in the progress file ``path`` if it is this evaluation's and possible; None, saying why, if not.

    Possible: one entry per env, and no env with more finished episodes than its target (a damaged
    file must not crash every rerun).
    """
    n_envs = len(targets)
    try:
        stored = json.loads(path.read_text())
        if seal_matches(stored) is not True:
            raise ValueError(f"its content does not match its checksum ({CHECKSUM_KEY}): damaged, edited or cut short")
        if stored["settings"] != settings:
            print(f"{path} holds another evaluation's progress (other settings or policy file): starting over")
            return None
        log = EpisodeLog.from_dict(stored["log"])
        if len(log.finished) != n_envs:
            raise ValueError(f"it logs {len(log.finished)} envs, not {n_envs}")
        for k, (done, target) in enumerate(zip(log.finished, targets, strict=True)):
            if len(done) > target:
                raise ValueError(f"env {k} has {len(done)} finished episodes, more than the {target} it is to play")
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as error:  # json's is a ValueError
        print(
            f"{path} is not a readable evaluation progress file ({type(error).__name__}: {error}): starting over; "
            "the file is replaced after the first finished episode"
        )
        return None
    return log

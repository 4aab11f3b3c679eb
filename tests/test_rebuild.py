"""experiments.rebuild: the committed reports are written again, figures included, from their records alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from experiments import rebuild

REPO = Path(rebuild.__file__).resolve().parents[1]


def _generated(text: str) -> str:
    """The part of a report between its generated markers (the prose around it is written by hand)."""
    return text.split("<!-- generated: begin -->", 1)[1].split("<!-- generated: end -->", 1)[0]


@pytest.mark.parametrize(
    ("name", "figure", "row"),
    [
        ("carracing-recipe-seed2", "screening_curves.png", "| algorithm | TQC (zoo-style AE recipe) | `tqc` |"),
        ("carracing-recipe-4m", "learning_curves.png", "| **ppo on latents, 3 seed(s)** | all | **563.5**"),
        ("carracing-recipe-tqc-1m", "learning_curves.png", "| **tqc on latents, 3 seed(s)** | all | **667.5**"),
    ],
)
def test_a_committed_report_is_written_again_from_its_records(name, figure, row, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the reports name files relative to the repository
    committed = REPO / rebuild.REPORTS_DIR / name / "README.md"
    before = committed.read_text()
    assert rebuild.main([name, "--into", str(tmp_path)]) == 0
    assert f"wrote {tmp_path / name / 'README.md'}" in capsys.readouterr().out
    assert (tmp_path / name / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / name / "README.md").read_text()
    text = text.replace(os.path.relpath(tmp_path, REPO), str(rebuild.REPORTS_DIR))  # --into's folder in its place
    assert row in before and _generated(text) == _generated(before)  # word for word: no clock, no stale figure
    assert committed.read_text() == before  # --into: the committed report is left as it is


def test_a_report_without_records_is_left_as_it_is(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert rebuild.main(["carracing-compare", "--into", str(tmp_path)]) == 0
    assert "carracing-compare: no records a writer reads, left as it is" in capsys.readouterr().out
    assert not (tmp_path / "carracing-compare").exists()
    with pytest.raises(SystemExit):
        rebuild.main(["no-such-report", "--into", str(tmp_path)])

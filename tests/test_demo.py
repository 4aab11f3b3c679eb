"""experiments.demo's report section on the shipped pretrained bundle."""

from __future__ import annotations

from pathlib import Path

from experiments import demo


def test_pretrained_section_names_the_bundle_by_a_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(Path(demo.__file__).parents[1])
    report = tmp_path / "report.md"
    report.write_text("# report\n")
    result = {"algo": "ppo", "mode": "latents", "mean_return": 800.0, "std_return": 10.0, "episodes": 2, "seed": 7}
    demo._append_pretrained(report, result)
    text = report.read_text()
    assert "The shipped bundle `experiments/pretrained/carracing` (ppo on latents): return 800.0 ± 10.0" in text
    assert str(demo.PRETRAINED_DIR) not in text

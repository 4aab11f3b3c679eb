"""experiments.demo: its report section on the shipped pretrained bundle, and its backend."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("installed", [True, False])
def test_demo_trains_on_envpool_where_installed_else_on_gymnasium(tmp_path, monkeypatch, capsys, installed):
    if installed:
        pytest.importorskip("envpool")
    seen = {}

    def stop_at_the_pipeline(config, command):
        seen["config"] = config
        raise demo.StageError("stopped by the test")

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(demo, "run_pipeline", stop_at_the_pipeline)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "envpool" and not installed else real_find_spec(name, *a),
    )
    assert demo.run_demo(tmp_path) == 1
    config = seen["config"]
    if installed:
        assert (config.backend, config.agent_env_frames) == ("envpool", demo.DEMO_AGENT_FRAMES)
    else:
        assert (config.backend, config.agent_env_frames) == ("gymnasium", demo.GYMNASIUM_AGENT_FRAMES)
        assert "envpool is not installed" in capsys.readouterr().out

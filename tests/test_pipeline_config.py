"""experiments.pipeline.config and .settings: the sections, and configs recorded flat before them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from experiments.pipeline.config import PipelineConfig
from experiments.pipeline.settings import FLAT_NAMES, SECTIONS, nest

REPORTS = Path(__file__).resolve().parents[1] / "experiments" / "reports"
FLAT_RECORDS = sorted(REPORTS.glob("*/records/pipeline.json"))
"""The committed reports' pipeline records, written with the flat config."""


def test_flat_names_name_every_section_field_once():
    fields = [(name, f.name) for name, settings in SECTIONS.items() for f in dataclasses.fields(settings)]
    assert sorted(FLAT_NAMES.values()) == sorted(fields)
    top = {f.name for f in dataclasses.fields(PipelineConfig)}
    assert not top & (set(FLAT_NAMES) - set(SECTIONS))  # a flat name is never also a top-level field


@pytest.mark.parametrize("path", FLAT_RECORDS, ids=lambda path: path.parts[-3])
def test_a_committed_flat_record_loads_with_every_value_in_its_section(path):
    flat = json.loads(path.read_text())["config"]
    assert "agent_env_frames" in flat and "agent" not in flat  # written before the sections
    config = PipelineConfig.from_dict(flat)
    for name, value in flat.items():
        section, field = FLAT_NAMES.get(name, (None, name))
        loaded = getattr(getattr(config, section) if section else config, field)
        assert loaded == (tuple(value) if isinstance(value, list) else value), name
    assert PipelineConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config  # as a new record holds it


def test_nesting_keeps_sections_and_lets_flat_names_change_them():
    nested = PipelineConfig("E", out="o").to_dict()
    assert nest(nested) == nested
    changed = PipelineConfig.from_dict(nested | {"agent_env_frames": 7, "vae": "v.safetensors", "report_name": "r"})
    assert (changed.agent.env_frames, changed.vae.pretrained, changed.report.name) == (7, "v.safetensors", "r")
    assert changed.agent.eval_freq == PipelineConfig("E", out="o").agent.eval_freq  # the rest of the section kept
    with pytest.raises(TypeError, match="no_such_field"):
        PipelineConfig.from_dict(nested | {"no_such_field": 1})

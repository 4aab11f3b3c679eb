import json
import subprocess
import sys

import pytest

from worldmodel.checkpoint import save_vae
from worldmodel.cli import COMMANDS, build_parser, main
from worldmodel.frames import FrameSpec
from worldmodel.vae import ConvVAE


def test_info_prints_checkpoint_description(tmp_path, tiny_config, capsys):
    path = tmp_path / "vae.safetensors"
    save_vae(path, ConvVAE(tiny_config), FrameSpec(height=16, width=16), step=7)
    assert main(["info", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["vae_config"]["latent_dim"] == 4 and out["metadata"] == {"step": 7}
    assert out["frame_spec"]["height"] == 16


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "worldmodel", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "info" in result.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_prints_its_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0 and f"usage: worldmodel {command}" in capsys.readouterr().out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_states_each_default_once(command):
    parser = build_parser(selected=command)
    subparser = next(a for a in parser._subparsers._group_actions).choices[command]
    helps = [action.help or "" for action in subparser._actions]
    assert [text for text in helps if text.count("default:") > 1 or "(None:" in text] == []

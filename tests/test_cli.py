import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from worldmodel.cli import DEBUG_ENV, build_parser, commands, is_user_error, main
from worldmodel.frames import FrameSpec
from worldmodel.vae.checkpoint import save_vae
from worldmodel.vae.model import ConvVAE

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = commands()


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


def test_each_layer_registers_its_commands():
    assert COMMANDS == {
        "collect": "envs.collect",
        "encode": "worldmodel.memory.sequences",
        "evaluate": "agents.evaluate",
        "info": "worldmodel.vae.info",
        "iterate": "experiments.pipeline.iterate",
        "train-agent": "agents.train",
        "train-memory": "worldmodel.memory.train",
        "train-vae": "worldmodel.vae.train",
        "tune": "agents.tune",
    }


def test_an_installed_package_adds_a_command(tmp_path, monkeypatch, capsys):
    (tmp_path / "thirdparty_cmd.py").write_text(
        'COMMAND_HELP = "say hello"\n'
        "def add_arguments(parser):\n    parser.add_argument('name')\n"
        "def run(args):\n    print(f'hello {args.name}')\n    return 0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registered = {**COMMANDS, "hello": "thirdparty_cmd"}
    monkeypatch.setattr("worldmodel.cli.entry_point_modules", lambda group: registered)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "hello" in (listing := capsys.readouterr().out) and "say hello" in listing
    assert main(["hello", "world"]) == 0
    assert capsys.readouterr().out == "hello world\n"


def test_no_registered_commands_is_one_line_naming_the_fix(monkeypatch, capsys):
    monkeypatch.setattr("worldmodel.cli.entry_point_modules", lambda group: {})
    assert main(["info", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no worldmodel commands are registered" in err and "pip install -e ." in err


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


# Bad inputs a user can give, per subcommand: (argv, fragments the one-line error must hold: the problem and
# the fix). Placeholders: {vae} a 32x32 VAE for DotTarget, {data} a 16x16 dataset; in the working directory
# `empty/` is an empty directory and `notes.txt` a text file.
DOT = "worldmodel/DotTarget-v0"
BAD_INPUTS = {
    "info": [
        (["missing.safetensors"], ["missing.safetensors does not exist", "written by `worldmodel train-vae`"]),
        (["empty"], ["empty is a directory", "RUN_DIR/best.safetensors"]),
        (["notes.txt"], ["not a readable safetensors file", "Re-copy it or retrain"]),
    ],
    "collect": [
        (["NoSuchEnv-v0", "--out", "data"], ["`NoSuchEnv` doesn't exist", "gymnasium.pprint_registry()"]),
        ([DOT, "--out", "data", "--policy", "brownian"], ["needs a bounded Box action space", "use the random"]),
        ([DOT, "--out", "data", "--env-kwargs", '{"bogus": 1}'], ["'bogus'", "check --env-kwargs"]),
        ([DOT, "--out", "data", "--policy", "empty"], ["empty has no config.json", "worldmodel train-agent --out"]),
        ([DOT, "--out", "data", "--collector-id", "a/b"], ["collector id 'a/b' must match", "a file-name prefix"]),
    ],
    "train-vae": [
        (["missing", "--out", "run"], ["missing does not exist", "collect one with"]),
        (["empty", "--out", "run"], ["empty holds no dataset", "collect one with"]),
        (
            ["{data}", "--out", "run", "--image-size", "32"],
            ["does not match the dataset's frames", "drop --image-size"],
        ),
        (["{data}", "--out", "run", "--resume"], ["holds no resume.safetensors", "drop --resume"]),
        (["{data}", "--out", "run", "--batch-size", "16", "--init", "nope.safetensors"], ["does not exist", "pass a"]),
    ],
    "train-agent": [
        ([DOT, "--vae", "missing.safetensors", "--out", "run"], ["does not exist", "fix the --vae path"]),
        ([DOT, "--out", "run"], ["training on latents needs --vae", "or pass --pixels"]),
        ([DOT, "--vae", "{vae}", "--algo", "sac", "--out", "run"], ["sac needs continuous actions", "a2c, dqn, ppo"]),
        ([DOT, "--vae", "{vae}", "--algo", "nope", "--out", "run"], ["unknown algorithm 'nope'", "choose one of"]),
        (["NoSuch-v0", "--vae", "{vae}", "--out", "run"], ["`NoSuch` doesn't exist", "gymnasium.pprint_registry()"]),
        (
            [DOT, "--vae", "{vae}", "--out", "run", "--resume"],
            ["run has no config.json", "worldmodel train-agent --out"],
        ),
    ],
    "tune": [
        ([DOT, "--vae", "{vae}", "--algo", "a2c", "--out", "st"], ["search spaces for ppo, recurrentppo", "not 'a2c'"]),
        ([DOT, "--vae", "{vae}", "--out", "st", "--budget-frames", "100"], ["less than one rollout", "raise --budget"]),
        ([DOT, "--vae", "{vae}", "--out", "st", "--fixed", "nope=1"], ["--fixed nope=1", "NAME=VALUE with NAME a"]),
        ([DOT, "--out", "st"], ["training on latents needs --vae", "written by `worldmodel train-vae`"]),
    ],
    "evaluate": [
        (["empty"], ["empty has no config.json", "pass the RUN_DIR given to `worldmodel train-agent --out`"]),
        (["missing", "--video", "v.mp4"], ["missing has no config.json", "pass the RUN_DIR"]),
    ],
    "encode": [
        (["missing", "--vae", "{vae}", "--out", "lat"], ["missing does not exist", "collect one with"]),
        (["empty", "--vae", "{vae}", "--out", "lat"], ["empty holds no dataset", "collect one with"]),
        (["{data}", "--vae", "missing.safetensors", "--out", "lat"], ["missing.safetensors does not exist", "pass a"]),
    ],
    "train-memory": [
        (["missing", "--vae", "{vae}", "--out", "run"], ["missing does not exist", "collect one with `worldmodel"]),
        (["empty", "--vae", "{vae}", "--out", "run"], ["empty holds no dataset", "collect one with"]),
        (["{data}", "--vae", "missing.safetensors", "--out", "run"], ["does not exist", "pass the VAE checkpoint"]),
    ],
    "iterate": [
        (["NoSuch-v0", "--out", "it"], ["`NoSuch` doesn't exist", "gymnasium.pprint_registry()"]),
        ([DOT, "--out", "it", "--rounds", "0"], ["need rounds >= 1", "got 0"]),
        ([DOT, "--out", "it", "--algo", "sac", "--collect-policy", "random"], ["sac needs continuous", "dqn, ppo"]),
        ([DOT, "--out", "it", "--collect-policy", "brownian"], ["needs a bounded Box action space", "use the random"]),
    ],
}


def _fill(args, **paths):
    """``args`` with each ``{name}`` replaced by ``paths[name]``."""
    for name, path in paths.items():
        args = [a.replace("{" + name + "}", path) for a in args]
    return args


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An otherwise empty working directory holding `empty/` and `notes.txt`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    return tmp_path


@pytest.mark.parametrize(
    ("command", "args", "fragments"),
    [(command, args, fragments) for command, cases in BAD_INPUTS.items() for args, fragments in cases],
    ids=[f"{command}-{i}" for command, cases in BAD_INPUTS.items() for i in range(len(cases))],
)
def test_bad_input_ends_in_one_line_and_leaves_nothing_behind(
    command, args, fragments, workdir, toy_vae_path, blob_dataset, capsys
):
    argv = [command, *_fill(args, vae=toy_vae_path, data=blob_dataset)]
    before = _files(workdir)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"worldmodel {command}: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err
    assert _files(workdir) == before


def test_missing_envpool_is_a_one_line_error(workdir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "envpool", None)
    assert main(["collect", "CarRacing-v3", "--out", "data", "--backend", "envpool"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("worldmodel collect: error: --backend envpool needs the envpool package: pip install")
    assert _files(workdir) == ["empty", "notes.txt"]


def test_every_subcommand_has_bad_inputs_tested():
    assert set(BAD_INPUTS) == set(COMMANDS) and all(len(cases) >= 2 for cases in BAD_INPUTS.values())


def test_debug_shows_the_traceback(workdir, monkeypatch):
    from agents.bundle import BundleError

    with pytest.raises(BundleError, match=r"empty has no config\.json"):
        main(["evaluate", "empty", "--debug"])
    with pytest.raises(BundleError):
        main(["--debug", "evaluate", "empty"])
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(BundleError):
        main(["evaluate", "empty"])


def test_a_bug_keeps_its_traceback(workdir, monkeypatch):
    import agents.evaluate

    def broken(args):
        raise KeyError("returns")

    monkeypatch.setattr(agents.evaluate, "run", broken)
    with pytest.raises(KeyError):
        main(["evaluate", "empty"])
    assert not is_user_error(KeyError("x")) and not is_user_error(RuntimeError("CUDA error"))


@pytest.mark.parametrize(
    "args",
    [
        ["evaluate", "empty"],
        ["train-agent", DOT, "--vae", "{vae}", "--algo", "sac", "--out", "run"],  # must leave no empty run/
    ],
)
def test_end_to_end_exit_status_and_stderr(args, workdir, toy_vae_path):
    argv = [sys.executable, "-m", "worldmodel", *_fill(args, vae=toy_vae_path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop(DEBUG_ENV, None)
    before = _files(workdir)
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith(f"worldmodel {args[0]}: error: ")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert _files(workdir) == before


def test_a_command_whose_optional_package_is_missing_names_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now fails as if not installed
    monkeypatch.delitem(sys.modules, "agents.tune", raising=False)
    out = tmp_path / "study"
    assert main(["tune", "worldmodel/DotTarget-v0", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and err.startswith("worldmodel tune: error: it needs optuna")
    assert "pip install 'worldmodel[tune]'" in err
    assert not out.exists()

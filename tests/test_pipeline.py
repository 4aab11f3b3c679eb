"""experiments.pipeline.stages on the toy env with tiny budgets: stages run, are skipped, and resume."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from agents.bundle import check_bundle
from agents.resume import TrainingStopped
from experiments.pipeline import carry
from experiments.pipeline import stages as pipeline
from experiments.pipeline.config import PipelineConfig, plan
from experiments.pipeline.records import STAGES_FILE
from experiments.pipeline.settings import (
    AgentSettings,
    CollectSettings,
    EvaluateSettings,
    ReportSettings,
    RunSettings,
    VaeSettings,
)
from experiments.pipeline.stages import (
    INTERRUPTED,
    StageError,
    evaluate_config,
    run_pipeline,
    stage_command,
)
from worldmodel.common.errors import UserError
from worldmodel.vae.checkpoint import file_sha256

TINY = PipelineConfig(
    "worldmodel/DotTarget-v0",
    out="tiny",
    collect=CollectSettings(episodes=4, policy="random", max_steps=25, n_envs=2),
    vae=VaeSettings(epochs=1, batch_size=32, latent_dim=4, width_multiplier=0.25),
    agent=AgentSettings(env_frames=512, n_envs=2, eval_freq=256, eval_episodes=1, checkpoint_freq=256),
    runs=RunSettings(seeds=(0, 1), pixels=False),
    evaluate=EvaluateSettings(episodes=2),
    isolate=False,
    progress=False,
)


def updated(config: PipelineConfig, **changes) -> PipelineConfig:
    """``config`` with ``changes``: fields, or some fields of a section as a dict (``runs={"seeds": (0,)}``)."""
    sections = {
        name: dataclasses.replace(getattr(config, name), **c) for name, c in changes.items() if isinstance(c, dict)
    }
    return dataclasses.replace(config, **(changes | sections))


def tiny_config(out, **changes) -> PipelineConfig:
    """:data:`TINY` into ``out``, its report in ``out/reports/tiny``, with ``changes`` (see :func:`updated`)."""
    return updated(
        dataclasses.replace(TINY, out=str(out), report=ReportSettings("tiny", dir=str(out / "reports"))), **changes
    )


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline")
    config = tiny_config(out)
    return config, run_pipeline(config, command="pytest tiny", log=lambda msg: None)


def test_every_stage_runs_and_is_recorded(pipeline_run):
    config, stages = pipeline_run
    assert list(stages) == [s.name for s in plan(config)]
    assert not any("pixels" in name for name in stages)
    assert json.loads((config.data_dir.parent / STAGES_FILE).read_text()) == stages
    for name, record in stages.items():
        assert record["status"] == "done" and record["wall_s"] > 0 and record["peak_rss_mib"] > 50, name
    latent = stages["train-agent/ppo/seed0"]
    assert latent["agent_steps"] == latent["env_frames"] >= 512
    assert latent["steps_per_s"] == pytest.approx(latent["agent_steps"] / latent["training_wall_s"], rel=0.05)
    assert stages["collect"]["dataset_episodes"] == 4
    evaluation = json.loads((config.data_dir.parent / "agents" / "ppo__seed1" / "evaluation.json").read_text())
    assert evaluation["episodes"] == 2 and evaluation["seed"] == config.evaluate.seed
    assert (config.data_dir.parent / "agents" / "ppo__seed0" / "eval.mp4").is_file()
    assert not (config.data_dir.parent / "agents" / "ppo__seed1" / "eval.mp4").exists()  # first seed only
    pipeline = json.loads((config.data_dir.parent / "pipeline.json").read_text())
    assert pipeline["commands"] == ["pytest tiny"] and pipeline["machines"]
    assert pipeline["config"]["agent"]["env_frames"] == 512  # recorded by section
    assert PipelineConfig.from_dict(pipeline["config"]) == config


def test_second_run_skips_finished_stages(pipeline_run):
    config, first = pipeline_run
    messages: list[str] = []
    again = run_pipeline(config, log=messages.append)
    skipped = {m.split(":")[0].removeprefix("[pipeline] ") for m in messages if "skipped" in m}
    assert skipped == {s.name for s in plan(config)} - {"report"}  # the report is always rewritten
    for name in skipped:
        assert again[name]["wall_s"] == first[name]["wall_s"] and "skipped" in again[name]


@pytest.mark.slow
def test_pixel_baseline_gets_the_same_env_frames(tmp_path, pipeline_run):
    config, _ = pipeline_run
    out = tmp_path / "copy"
    shutil.copytree(config.data_dir.parent, out)
    messages: list[str] = []
    stages = run_pipeline(tiny_config(out, runs={"pixels": True}), log=messages.append)
    ran = {m.split(":")[0].removeprefix("[pipeline] ") for m in messages if "running" in m}
    assert ran == {"train-agent/pixels-ppo/seed0", "evaluate/pixels-ppo/seed0", "report"}
    latent, pixels = stages["train-agent/ppo/seed0"], stages["train-agent/pixels-ppo/seed0"]
    # The same env-frame budget: pixel agents (frame skip 2) take half the agent steps for it. An episode that
    # ends on the first frame of a skipped step plays one frame of its two, so frames may fall a few short.
    assert pixels["agent_steps"] * 2 >= 512 and latent["env_frames"] >= 512
    assert pixels["agent_steps"] * 2 == pytest.approx(pixels["env_frames"], abs=4)
    assert (out / "agents" / "pixels-ppo__seed0" / "eval.mp4").is_file()


def test_larger_budget_resumes_the_agent_and_reevaluates(tmp_path, pipeline_run):
    config, _ = pipeline_run
    out = tmp_path / "copy"
    shutil.copytree(config.data_dir.parent, out)
    bigger = tiny_config(out, agent={"env_frames": 1024}, runs={"seeds": (0,)})
    messages: list[str] = []
    stages = run_pipeline(bigger, log=messages.append)
    ran = {m.split(":")[0].removeprefix("[pipeline] ") for m in messages if "running" in m}
    assert ran == {"train-agent/ppo/seed0", "evaluate/ppo/seed0", "report"}
    summary = json.loads((out / "agents" / "ppo__seed0" / "summary.json").read_text())
    assert summary["resumed_from_step"] >= 512 and summary["agent_steps"] >= 1024
    assert stages["train-agent/ppo/seed0"]["agent_steps"] == summary["agent_steps"]


def test_more_episodes_extend_the_dataset(tmp_path, pipeline_run):
    config, _ = pipeline_run
    out = tmp_path / "copy"
    shutil.copytree(config.data_dir.parent, out)
    stages = run_pipeline(tiny_config(out, collect={"episodes": 5}), only=("collect",), log=lambda msg: None)
    assert stages["collect"]["episodes"] == 1 and stages["collect"]["dataset_episodes"] == 5


@pytest.mark.slow
def test_isolated_stage_failure_names_the_stage(tmp_path):
    config = tiny_config(tmp_path, env_id="worldmodel/NoSuchEnv-v0", isolate=True)
    with pytest.raises(StageError, match="stage collect failed"):
        run_pipeline(config, only=("collect",), log=lambda msg: None)


def test_a_stage_stopped_by_a_signal_says_so_and_how_to_resume(tmp_path, monkeypatch, capsys):
    config = tiny_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))

    def stopped(config, stage):
        raise TrainingStopped("stopped by a signal at step 300 of 512, with a resume checkpoint")

    monkeypatch.setitem(pipeline.RUNNERS, "collect", stopped)
    status = pipeline.main(["--run-stage", "collect", str(tmp_path / "config.json"), str(tmp_path / "result.json")])
    assert status == INTERRUPTED and not (tmp_path / "result.json").exists()
    assert "collect: interrupted: stopped by a signal at step 300" in capsys.readouterr().err
    stage_process = tmp_path / "stage-process"  # stands in for the stage's Python process, which exits so
    stage_process.write_text(f"#!/bin/sh\nexit {INTERRUPTED}\n")
    stage_process.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(stage_process))
    with pytest.raises(StageError, match=r"stage collect was stopped by a signal.*run the same command again"):
        pipeline.run_stage(dataclasses.replace(config, isolate=True), plan(config)[0])


def test_the_report_stage_shows_the_compared_pipelines_runs(tmp_path, pipeline_run):
    config, _ = pipeline_run
    other = tmp_path / "other"
    shutil.copytree(config.out, other, ignore=shutil.ignore_patterns("data", "vae"))
    for run_dir in (other / "agents").iterdir():
        run_dir.rename(run_dir.with_name(f"pixels-{run_dir.name}"))  # stand-ins for another pipeline's pixel runs
    report_stage = next(s for s in plan(config) if s.kind == "report")
    compared = updated(config, report={"compare_with": (str(other),), "dir": str(tmp_path / "reports")})
    text = Path(pipeline.RUNNERS["report"](compared, report_stage)["report"]).read_text()
    assert "| **ppo on latents, 2 seed(s)** |" in text and "| **ppo on pixels, 2 seed(s)** |" in text


def test_an_existing_vae_replaces_collection_and_vae_training(tmp_path, pipeline_run):
    config, _ = pipeline_run
    vae = tmp_path / "shipped.safetensors"
    shutil.copyfile(config.vae_dir / "best.safetensors", vae)
    reuse = tiny_config(
        tmp_path / "reuse", vae={"pretrained": str(vae)}, runs={"seeds": (0,)},
        evaluate={"video": False, "random_baseline": False},
    )  # fmt: skip
    stages = run_pipeline(reuse, log=lambda msg: None)
    assert list(stages) == ["train-agent/ppo/seed0", "evaluate/ppo/seed0", "report"]
    assert not (tmp_path / "reuse" / "data").exists() and not (tmp_path / "reuse" / "vae").exists()
    run_config = json.loads((tmp_path / "reuse" / "agents" / "ppo__seed0" / "config.json").read_text())
    assert run_config["agent"]["vae"] == str(vae)
    assert stages["train-agent/ppo/seed0"]["env_frames"] >= 512
    report = (tmp_path / "reuse" / "reports" / "tiny" / "README.md").read_text()
    assert f"read the existing checkpoint `{vae}`" in report


def test_a_missing_vae_is_refused_before_anything_is_made(tmp_path):
    config = tiny_config(tmp_path / "out", vae={"pretrained": str(tmp_path / "nothing.safetensors")})
    with pytest.raises(UserError, match=r"no VAE checkpoint at .*nothing\.safetensors: give an existing"):
        run_pipeline(config, log=lambda msg: None)
    assert not (tmp_path / "out").exists()


def test_a_compared_pipeline_not_there_is_named_in_the_report_not_refused(tmp_path, pipeline_run):
    config, _ = pipeline_run
    shutil.copytree(config.out, tmp_path / "copy")
    never = str(tmp_path / "never-ran")  # e.g. a preset's comparison on a machine that has not run it
    config = updated(config, out=str(tmp_path / "copy"), report={"compare_with": (never,), "dir": str(tmp_path)})
    logged: list[str] = []
    stages = run_pipeline(config, only=("report",), log=logged.append)
    assert any(msg.startswith(f"warning: compare_with names {never}, which holds no pipeline.json") for msg in logged)
    assert stages["report"]["status"] == "done" and stages["report"]["not_compared"] == [never]
    text = Path(stages["report"]["report"]).read_text()
    assert f"Not shown: the runs of `{os.path.relpath(never)}`, meant to be compared" in text


def continuing(tmp_path, config: PipelineConfig, source, **changes) -> PipelineConfig:
    """A pipeline over ``config``'s VAE whose one agent run continues ``source``'s to twice the budget."""
    long = tiny_config(
        tmp_path / "long", vae={"pretrained": str(config.vae_checkpoint)}, agent={"env_frames": 1024},
        runs={"continue_from": str(source), "seeds": (0,)}, evaluate={"video": False, "random_baseline": False},
    )  # fmt: skip
    return updated(long, **changes)


def test_a_longer_pipeline_trains_the_shorter_ones_agents_on(tmp_path, pipeline_run):
    config, _ = pipeline_run
    source = config.data_dir.parent
    long = continuing(tmp_path, config, source)
    assert stage_command(long, plan(long)[0]).startswith(f"cp -r {source}/agents/ppo__seed0 {tmp_path}/long/agents/")
    messages: list[str] = []
    run_pipeline(long, log=messages.append)
    assert any(m.startswith("[pipeline] evaluate/ppo/seed0: running") for m in messages)  # not the short run's
    run = tmp_path / "long" / "agents" / "ppo__seed0"
    summary = json.loads((run / "summary.json").read_text())
    short = json.loads((source / "agents" / "ppo__seed0" / "summary.json").read_text())
    assert summary["resumed_from_step"] == short["agent_steps"] < 1024 <= summary["agent_steps"]
    assert summary["elapsed_s"] > short["elapsed_s"]  # the wall-clock counts the shorter run's part too
    assert summary["curve"][: len(short["curve"])] == short["curve"]  # the learning curve starts as the short run's
    assert short == json.loads((source / "agents" / "ppo__seed0" / "summary.json").read_text())  # left as it was


def test_an_off_policy_run_continues_with_its_replay_buffer(tmp_path, pipeline_run):
    config, _ = pipeline_run
    hyperparams = tmp_path / "sac.yml"
    hyperparams.write_text(yaml.safe_dump({"default": {"learning_starts": 64, "batch_size": 32, "buffer_size": 2000}}))
    off_policy = {"env_id": "worldmodel/DotTargetContinuous-v0", "report": {"name": None}}
    agent, runs = {"n_envs": 1, "hyperparams": str(hyperparams)}, {"algos": ("sac",), "seeds": (0,)}
    short = tiny_config(
        tmp_path / "short", vae={"pretrained": str(config.vae_checkpoint)}, agent=agent, runs=runs,
        evaluate={"video": False, "random_baseline": False}, **off_policy,
    )  # fmt: skip
    run_pipeline(short, log=lambda msg: None)
    long = updated(continuing(tmp_path, short, tmp_path / "short", agent=agent, **off_policy), runs={"algos": ("sac",)})
    run_pipeline(long, log=lambda msg: None)
    before = json.loads((tmp_path / "short" / "agents" / "sac__seed0" / "summary.json").read_text())
    after = json.loads((tmp_path / "long" / "agents" / "sac__seed0" / "summary.json").read_text())
    assert after["resumed_from_step"] == after["replay_buffer_restored"] == before["agent_steps"] < after["agent_steps"]


def test_keep_best_scores_each_runs_best_training_policy_too(tmp_path, pipeline_run):
    config, _ = pipeline_run
    long = continuing(tmp_path, config, config.data_dir.parent, runs={"keep_best": True})  # the 1M -> 4M case
    best_stage = plan(long)[-2]
    assert best_stage.name == "evaluate-best/ppo/seed0"
    assert stage_command(long, best_stage).endswith(" --policy best")
    stages = run_pipeline(long, log=lambda msg: None)
    run = tmp_path / "long" / "agents" / "ppo__seed0"
    best = json.loads((run / "best" / "best.json").read_text())
    scored = json.loads((run / "evaluation-best.json").read_text())
    assert scored["policy_step"] == best["step"] and scored["episodes"] == long.evaluate.episodes
    assert stages["evaluate-best/ppo/seed0"]["mean_return"] == scored["mean_return"]
    report = (tmp_path / "long" / "reports" / "tiny" / "README.md").read_text()
    assert "### Best training-evaluation policies" in report and f"| {scored['mean_return']:.1f} ± " in report
    messages: list[str] = []
    run_pipeline(long, log=messages.append)
    assert "[pipeline] evaluate-best/ppo/seed0: outputs complete, skipped" in messages
    os.utime(run / "best" / "best.json")  # as if a better policy was kept since: its evaluation is stale
    run_pipeline(long, only=("evaluate-best/ppo/seed0",), log=messages.append)
    assert any(m.startswith("[pipeline] evaluate-best/ppo/seed0: running") for m in messages)
    assert json.loads((run / "evaluation-best.json").read_text())["returns"] == scored["returns"]  # same policy


def test_continuing_refuses_runs_it_cannot_extend(tmp_path, pipeline_run):
    config, _ = pipeline_run
    with pytest.raises(UserError, match="has no agents/ directory"):
        run_pipeline(continuing(tmp_path, config, tmp_path / "nowhere"), log=lambda msg: None)
    assert not (tmp_path / "long").exists()
    source = tmp_path / "short"
    shutil.copytree(config.data_dir.parent / "agents", source / "agents")
    run_config = source / "agents" / "ppo__seed0" / "config.json"
    stored = json.loads(run_config.read_text())
    stored["hyperparams"]["algo_kwargs"]["learning_rate"] = "lin_1e-3"
    run_config.write_text(json.dumps(stored))
    with pytest.raises(UserError, match=r"schedules \{'learning_rate': 'lin_1e-3'\}.*cannot be continued"):
        run_pipeline(continuing(tmp_path, config, source), log=lambda msg: None)
    (source / "agents" / "ppo__seed0" / "summary.json").unlink()  # killed before it finished
    with pytest.raises(UserError, match="holds no finished agent run to continue"):
        run_pipeline(continuing(tmp_path, config, source), log=lambda msg: None)
    assert not (tmp_path / "long" / "agents" / "ppo__seed0").exists()  # nothing half-copied


def test_stage_commands_are_cli_equivalents(tmp_path):
    config = tiny_config(tmp_path, runs={"pixels": True})
    commands = {s.name: stage_command(config, s) for s in plan(config)}
    assert commands["collect"].startswith("worldmodel collect worldmodel/DotTarget-v0 --out")
    assert "--timesteps 256" in commands["train-agent/pixels-ppo/seed0"]  # 512 frames / frame skip 2
    assert "--seed 1" in commands["train-agent/ppo/seed1"] and "--pixels" not in commands["train-agent/ppo/seed1"]


def test_backend_reaches_collection_and_training_but_not_the_final_evaluation(tmp_path):
    config = tiny_config(tmp_path, env_id="CarRacing-v3", backend="envpool")
    commands = {s.name: stage_command(config, s) for s in plan(config)}
    assert "--backend envpool" in commands["collect"]
    assert "--backend envpool" in commands["train-agent/ppo/seed0"]
    assert "--backend" not in commands["evaluate/ppo/seed0"]  # scores come from Gymnasium's env
    assert evaluate_config(config, next(s for s in plan(config) if s.kind == "evaluate")).backend == "gymnasium"


def test_parallel_jobs_train_and_evaluate_every_seed(tmp_path, pipeline_run):
    config, _ = pipeline_run
    shutil.copytree(config.out, tmp_path / "run")
    more = tiny_config(
        tmp_path / "run", agent={"env_frames": 768}, evaluate={"n_envs": 2}, report={"name": None}, jobs=2,
        isolate=True,
    )  # fmt: skip
    stages = run_pipeline(more, log=lambda msg: None)
    for seed in (0, 1):
        trained, evaluated = stages[f"train-agent/ppo/seed{seed}"], stages[f"evaluate/ppo/seed{seed}"]
        assert trained["agent_steps"] >= 768 and trained["status"] == "done"
        evaluation = json.loads((tmp_path / "run" / "agents" / f"ppo__seed{seed}" / "evaluation.json").read_text())
        assert evaluation["n_envs"] == 2 and len(evaluation["returns"]) == 2 == evaluated["episodes"]
    assert json.loads((tmp_path / "run" / STAGES_FILE).read_text()).keys() == stages.keys()


def fake_stages(monkeypatch, run) -> list[str]:
    """Stand ``run(stage)`` in for every stage's work; returns the log of ``start NAME`` / ``end NAME`` events."""
    events, lock = [], threading.Lock()

    def run_stage(config, stage):
        with lock:
            events.append(f"start {stage.name}")
        run(stage)
        with lock:
            events.append(f"end {stage.name}")
        return {"status": "done", "wall_s": 0.0}

    monkeypatch.setattr(pipeline, "is_done", lambda config, stage: False)
    monkeypatch.setattr(pipeline, "run_stage", run_stage)
    return events


def test_an_evaluation_runs_beside_the_trainings_still_under_way(tmp_path, monkeypatch):
    seed0_evaluating = threading.Event()

    def run(stage):
        if stage.name == "evaluate/ppo/seed0":
            seed0_evaluating.set()
        if stage.name == "train-agent/ppo/seed2":  # the last training holds one of the two jobs...
            assert seed0_evaluating.wait(timeout=10), "seed 0's evaluation waited for seed 2's training"

    events = fake_stages(monkeypatch, run)
    config = tiny_config(tmp_path / "run", runs={"seeds": (0, 1, 2), "keep_best": True}, jobs=2, isolate=True)
    stages = run_pipeline(config, log=lambda msg: None)
    assert list(stages) == [s.name for s in plan(config)] and len(events) == 2 * len(stages)
    for stage in plan(config):
        made_by = {"train-vae": "collect", "train-agent": "train-vae", "report": "evaluate-best/ppo/seed2"}
        maker = f"train-agent/ppo/seed{stage.seed}" if stage.kind == "evaluate" else made_by.get(stage.kind)
        if maker:  # ...and no stage starts before the one making its input has ended
            assert events.index(f"end {maker}") < events.index(f"start {stage.name}"), stage.name


def test_a_failed_stage_starts_nothing_new_and_lets_the_running_ones_finish(tmp_path, monkeypatch):
    def run(stage):
        if stage.name == "train-agent/ppo/seed0":
            raise StageError("stage train-agent/ppo/seed0 failed")
        if stage.name == "train-agent/ppo/seed1":
            time.sleep(0.5)  # still running when seed 0 fails

    events = fake_stages(monkeypatch, run)
    config = tiny_config(tmp_path / "run", runs={"seeds": (0, 1, 2)}, jobs=2, isolate=True)
    with pytest.raises(StageError, match="stage train-agent/ppo/seed0 failed"):
        run_pipeline(config, log=lambda msg: None)
    assert events[-1] == "end train-agent/ppo/seed1"  # the raise waited for it
    started = [e.removeprefix("start ") for e in events if e.startswith("start ")]
    assert started == ["collect", "train-vae", "train-agent/ppo/seed0", "train-agent/ppo/seed1"] or started == [
        "collect", "train-vae", "train-agent/ppo/seed1", "train-agent/ppo/seed0"
    ]  # fmt: skip
    assert set(json.loads((tmp_path / "run" / STAGES_FILE).read_text())) == {
        "collect", "train-vae", "train-agent/ppo/seed1"
    }  # fmt: skip


def test_finetune_runs_are_their_own_mode(tmp_path):
    config = tiny_config(tmp_path, runs={"finetune_seeds": (3,), "aux_recon_weight": 0.5})
    commands = {s.name: stage_command(config, s) for s in plan(config)}
    finetune = commands["train-agent/finetune-ppo/seed3"]
    assert "--encoder finetune" in finetune and "--aux-recon-weight 0.5" in finetune and "--seed 3" in finetune
    assert "--encoder" not in commands["train-agent/ppo/seed0"]
    assert "evaluate/finetune-ppo/seed3" in commands


def test_parallel_jobs_need_isolated_stages(tmp_path):
    with pytest.raises(ValueError, match="jobs must be >= 1, and 1 when isolate is off; got jobs=2"):
        tiny_config(tmp_path, jobs=2, isolate=False)
    with pytest.raises(ValueError, match="got jobs=0"):
        tiny_config(tmp_path, jobs=0, isolate=True)


def test_records_of_a_pipeline_running_alongside_survive(tmp_path, monkeypatch):
    from experiments.pipeline import stages as pipeline

    config = tiny_config(tmp_path / "run")

    def report_while_another_pipeline_finishes_a_stage(config, stage):
        # a second pipeline on the same OUT records a stage while this one runs
        path = tmp_path / "run" / STAGES_FILE
        stages = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps(stages | {"evaluate/ppo/seed0": {"status": "done", "wall_s": 1.0}}))
        return {}

    monkeypatch.setitem(pipeline.RUNNERS, "report", report_while_another_pipeline_finishes_a_stage)
    stages = run_pipeline(config, only=("report",), log=lambda msg: None)
    assert set(stages) == {"report", "evaluate/ppo/seed0"}
    assert json.loads((tmp_path / "run" / STAGES_FILE).read_text()) == stages


def test_carry_names_a_folder_without_runs_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "out" / "agents" / "ppo__seed0").mkdir(parents=True)  # a run dir with no config.json yet
    assert carry.main(["save", str(tmp_path / "out"), "--to", str(tmp_path / "carried")]) == 2
    assert "holds no agent runs to carry (agents/*__seed*/config.json)" in capsys.readouterr().err
    assert not (tmp_path / "carried").exists()
    assert carry.main(["restore", str(tmp_path / "out" / "agents"), "--out", str(tmp_path / "next")]) == 2
    assert "holds no carried agent runs: give a folder" in capsys.readouterr().err
    assert not (tmp_path / "next").exists()


def test_a_finished_runs_replay_buffer_is_left_out_and_an_unfinished_runs_refused(tmp_path, pipeline_run, capsys):
    config, _ = pipeline_run
    first = tiny_config(
        tmp_path / "first", vae={"pretrained": str(config.vae_checkpoint)}, runs={"seeds": (0,)},
        evaluate={"video": False, "random_baseline": False}, report={"name": None},
    )  # fmt: skip
    run_pipeline(first, only=("train-agent",), log=lambda msg: None)
    run = Path(first.out) / "agents" / "ppo__seed0"
    state_path = run / "checkpoints" / "state.json"
    state = json.loads(state_path.read_text())
    buffer = run / "checkpoints" / f"replay_buffer_{state['step']}.pkl"  # what an off-policy run's checkpoint holds
    buffer.write_bytes(bytes(int((carry.MAX_FILE_MIB + 1) * 2**20)))
    state_path.write_text(json.dumps({**state, "files": {**state["files"], "replay_buffer": buffer.name}}))

    carried = carry.save(first.out, tmp_path / "carried")
    assert "ppo__seed0: finished; its resume checkpoint holds a file over 4 MiB" in capsys.readouterr().out
    carried_run = carried / "agents" / "ppo__seed0"
    assert not (carried_run / "checkpoints").exists() and (carried_run / "model.zip").is_file()
    assert carry.restore(carried, tmp_path / "next") == ["ppo__seed0"]
    elsewhere = dataclasses.replace(first, out=str(tmp_path / "next"))
    train = next(stage for stage in pipeline.plan(elsewhere) if stage.kind == "train-agent")
    assert pipeline.is_done(elsewhere, train)  # the next machine evaluates it without training it again

    summary_path = run / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(json.dumps({**summary, "agent_steps": state["step"] - 1}))  # stopped before its end
    with pytest.raises(UserError, match=r"replay_buffer_\d+\.pkl \(5\.0 MiB\): larger than 4 MiB, too big to carry"):
        carry.save(first.out, tmp_path / "unfinished")
    assert not (tmp_path / "unfinished").exists()


def test_carried_runs_resume_on_a_machine_that_never_held_them(tmp_path, pipeline_run, monkeypatch):
    config, _ = pipeline_run
    first = tiny_config(
        tmp_path / "first", vae={"pretrained": str(config.vae_checkpoint)}, runs={"seeds": (0,), "keep_best": True},
        evaluate={"video": False, "random_baseline": False}, report={"name": None},
    )  # fmt: skip
    run_pipeline(first, only=("train-agent",), log=lambda msg: None)
    carried = carry.save(first.out, tmp_path / "carry" / "first")
    run = carried / "agents" / "ppo__seed0"
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == sorted(["state.json", *state["files"].values()])
    assert (
        not (run / "vae.safetensors").exists() and not (run / "tb").exists() and (run / "best" / "best.json").is_file()
    )
    assert (carried / "pipeline.json").is_file()
    shutil.rmtree(first.out)  # the next machine: no runs/
    assert carry.restore(carried, tmp_path / "next") == ["ppo__seed0"]
    restored = tmp_path / "next" / "agents" / "ppo__seed0"
    assert check_bundle(restored)["vae_sha256"] == file_sha256(config.vae_checkpoint)
    longer = updated(first, out=str(tmp_path / "next"), agent={"env_frames": 1024})
    stages = run_pipeline(longer, only=("train-agent",), log=lambda msg: None)
    summary = json.loads((restored / "summary.json").read_text())
    assert summary["resumed_from_step"] == state["step"] and summary["agent_steps"] >= 1024
    assert stages["train-agent/ppo/seed0"]["status"] == "done"
    assert carry.restore(carried, tmp_path / "next") == []  # the run here is further along: kept

    changed = tmp_path / "changed.safetensors"
    changed.write_bytes(Path(config.vae_checkpoint).read_bytes() + b"\0")
    stored = json.loads((run / "config.json").read_text())
    stored["agent"]["vae"] = str(changed)
    (run / "config.json").write_text(json.dumps(stored))
    with pytest.raises(UserError, match=r"ppo__seed0 trained on .*changed\.safetensors .* has changed since"):
        carry.restore(carried, tmp_path / "third")
    assert not (tmp_path / "third" / "agents" / "ppo__seed0").exists()
    monkeypatch.setattr(carry, "MAX_FILE_MIB", 0.01)  # a model larger than that stands in for a replay buffer
    with pytest.raises(UserError, match=r"model_\d+\.zip \(0\.\d MiB\).*: larger than 0.01 MiB, too big to carry"):
        carry.save(tmp_path / "next", tmp_path / "carry" / "next")
    assert not (tmp_path / "carry" / "next").exists()


def test_carried_files_identical_to_a_reports_records_are_kept_once_and_restored_from_there(tmp_path):
    run = tmp_path / "out" / "agents" / "ppo__seed0"  # a finished run as a report's records hold it, and its model
    (run / "best").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"agent": {"timesteps": 10}}))
    (run / "summary.json").write_text(json.dumps({"agent_steps": 10}))
    (run / "best" / "best.json").write_text(json.dumps({"files": {"model": "model_5.zip"}}))
    (run / "best" / "model_5.zip").write_bytes(b"best weights")
    (run / "model.zip").write_bytes(b"weights")
    (tmp_path / "out" / "pipeline.json").write_text("{}")
    records = tmp_path / "reports" / "tiny" / "records"
    shutil.copytree(tmp_path / "out", records, ignore=shutil.ignore_patterns("*.zip"))
    (records / "pipeline.json").write_text('{"changed": "since"}')  # not identical: carried too

    carried = carry.save(tmp_path / "out", tmp_path / "carry" / "tiny", records=records)
    assert sorted(str(p.relative_to(carried)) for p in carried.rglob("*") if p.is_file()) == [
        "agents/ppo__seed0/best/model_5.zip", "agents/ppo__seed0/model.zip", "pipeline.json", carry.SHARED_FILE,
    ]  # fmt: skip
    shared = json.loads((carried / carry.SHARED_FILE).read_text())
    assert shared["records"] == "../../reports/tiny/records"
    assert sorted(shared["sha256"]) == [
        "agents/ppo__seed0/best/best.json", "agents/ppo__seed0/config.json", "agents/ppo__seed0/summary.json",
    ]  # fmt: skip
    assert carry.restore(carried, tmp_path / "next") == ["ppo__seed0"]
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert (tmp_path / "next" / path.relative_to(tmp_path / "out")).read_bytes() == path.read_bytes()

    (records / "agents" / "ppo__seed0" / "summary.json").write_text(json.dumps({"agent_steps": 11}))
    with pytest.raises(UserError, match=r"agents/ppo__seed0/summary\.json .* has changed since"):
        carry.restore(carried, tmp_path / "third")
    assert not (tmp_path / "third").exists()

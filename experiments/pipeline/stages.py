"""The whole pipeline as resumable stages: collect -> train-vae -> train-agent(s) -> evaluate -> report.

:class:`PipelineConfig` states every budget (episodes and steps to collect, VAE epochs or
steps, agent budgets in env frames, seeds, evaluation episodes); :func:`run_pipeline` runs
the stages it implies into one output directory::

    OUT/pipeline.json        the config and every command that ran it
    OUT/stages.json          per stage: status, wall-clock, env frames, agent steps, steps/s, peak memory
    OUT/data/                the collected dataset (``worldmodel collect``)
    OUT/vae/                 the VAE run (``worldmodel train-vae``); neither exists when ``vae.pretrained`` names
                             an existing checkpoint, which every latent agent then reads
    OUT/agents/<mode>__seed<k>/   one ``worldmodel train-agent`` run per algorithm and seed
                                 (``<mode>`` is the algorithm, or ``pixels-<algo>`` for the baseline),
                                 with its ``evaluation.json`` from ``worldmodel evaluate`` (and, with
                                 ``runs.keep_best``, ``evaluation-best.json`` of its best training evaluation's policy)

A stage whose outputs are complete is skipped (the dataset holds every episode; the VAE
run has ``summary.json``; an agent run's ``summary.json`` reports its full budget; the
evaluation file covers the requested episodes and tracks). An interrupted stage resumes:
collection continues by itself, VAE and agent training continue from their last
checkpoint. Agent budgets are given in env frames, so latent and pixel agents with
different frame skips get the same amount of experience; agent steps follow from each
mode's frame skip. Each stage runs in a fresh process by default, so its peak memory
(``ru_maxrss`` of the process and its workers) is its own.

>>> config = PipelineConfig("worldmodel/DotTarget-v0", out="/tmp/p")
>>> [stage.name for stage in plan(config)][:4]
['collect', 'train-vae', 'train-agent/ppo/seed0', 'train-agent/ppo/seed1']
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from experiments.pipeline.config import PipelineConfig, Stage, plan
from experiments.pipeline.machine import describe_machine, peak_rss_mib
from experiments.pipeline.records import (
    PIPELINE_FILE,
    POLICIES,
    STAGES_FILE,
    VIDEO_FILE,
    evaluation_file,
    evaluation_predates_model,
    read_json,
    read_stages,
)
from worldmodel.common.atomic import write_json_atomic
from worldmodel.common.errors import UserError

# The library configs of each stage


def collect_config(config: PipelineConfig) -> Any:
    from envs.collect import CollectConfig

    extra = {"n_envs": config.collect.n_envs} if config.collect.n_envs else {}
    return CollectConfig(
        config.env_id,
        out=config.data_dir,
        episodes=config.collect.episodes,
        policy=config.collect.policy,
        max_steps=config.collect.max_steps,
        progress=config.progress,
        backend=config.backend,
        **extra,
    )


def vae_config(config: PipelineConfig, *, resume: bool = False) -> Any:
    from worldmodel.vae.train import TrainVAEConfig

    return TrainVAEConfig(
        str(config.data_dir),
        out=str(config.vae_dir),
        epochs=config.vae.epochs,
        steps=config.vae.steps,
        batch_size=config.vae.batch_size,
        latent_dim=config.vae.latent_dim,
        width_multiplier=config.vae.width_multiplier,
        kl_tolerance=config.vae.kl_tolerance,
        motion_weight=config.vae.motion_weight,
        device=config.device,  # type: ignore[arg-type]
        progress=config.progress,
        resume=resume,
    )


def agent_config(config: PipelineConfig, stage: Stage, *, resume: bool = False) -> Any:
    """The train-agent config of ``stage``, its timesteps set from the env-frame budget."""
    from agents.train import AgentConfig, resolve

    base = AgentConfig(
        config.env_id,
        vae=None if stage.pixels else str(config.vae_checkpoint),
        algo=stage.algo or "ppo",
        out=str(stage.run_dir(config)),
        n_envs=config.agent.n_envs,
        subproc=config.agent.subproc,
        seed=stage.seed or 0,
        hyperparams=config.agent.hyperparams,
        latent_history=config.agent.latent_history,
        standardize_latents=config.agent.standardize_latents,
        pixels=stage.pixels,
        encoder="finetune" if stage.finetune else "frozen",
        aux_recon_weight=config.runs.aux_recon_weight if stage.finetune else 0.0,
        device=config.device,
        eval_freq=config.agent.eval_freq,
        eval_episodes=config.agent.eval_episodes,
        checkpoint_freq=config.agent.checkpoint_freq,
        keep_best=config.runs.keep_best,
        resume=resume,
        progress_bar=config.progress,
        backend=config.backend,
    )
    frame_skip = resolve(base)[2].env_config().frame_skip
    env_frames = config.agent.env_frames
    if stage.pixels and config.agent.pixel_env_frames is not None:
        env_frames = config.agent.pixel_env_frames
    return dataclasses.replace(base, timesteps=max(1, env_frames // frame_skip))


def continued_source(config: PipelineConfig, stage: Stage) -> Path:
    """The run directory of ``config.runs.continue_from`` that ``stage`` continues."""
    assert config.runs.continue_from is not None
    return Path(config.runs.continue_from) / "agents" / stage.run_dir(config).name


def continued_run(config: PipelineConfig, stage: Stage) -> Path:
    """The finished run of ``config.runs.continue_from`` that ``stage`` continues, checked: a longer run of the same
    recipe must be able to start from it."""
    source = continued_source(config, stage)
    summary, stored = read_json(source / "summary.json"), read_json(source / "config.json")
    if summary is None or stored is None:
        raise UserError(
            f"{source} holds no finished agent run to continue; finish it first (run its pipeline again), "
            "or unset continue_from to train from scratch"
        )
    timesteps = agent_config(config, stage).timesteps
    if summary["agent_steps"] > timesteps:
        raise UserError(
            f"{source} already trained {summary['agent_steps']:,} agent steps, more than this budget's {timesteps:,}; "
            "raise agent_env_frames or unset continue_from"
        )
    kwargs = stored["hyperparams"]["algo_kwargs"]
    scheduled = {k: v for k in ("learning_rate", "clip_range", "clip_range_vf") if isinstance(v := kwargs.get(k), str)}
    if scheduled:
        raise UserError(
            f"{source} trained with schedules {scheduled}: a longer run would anneal them differently from its "
            "first part, so it cannot be continued; unset continue_from to train from scratch"
        )
    return source


def copy_continued_run(config: PipelineConfig, stage: Stage) -> None:
    """Copy the run ``stage`` continues into ``stage.run_dir`` (whole or not at all), without its final
    evaluation and video, which belong to the shorter run."""
    source, target = continued_run(config, stage), stage.run_dir(config)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial, ignore=shutil.ignore_patterns(*map(evaluation_file, POLICIES), VIDEO_FILE))
    os.replace(partial, target)


def check_inputs(config: PipelineConfig) -> None:
    """Refuse, before anything is created, what a later stage would: an env that cannot be made, or a
    collection policy or agent algorithm that cannot act in it (agents: with their preset's env keywords)."""
    from agents.algorithms import check_action_space
    from agents.train import resolve
    from envs.factory import make_env
    from envs.policies import policy_factory

    def action_space(env_config: Any) -> Any:
        env = make_env(env_config)
        env.close()
        return env.action_space

    if config.vae.pretrained is None:
        collect = collect_config(config)
        policy_factory(collect.policy)(action_space(collect.env_config))
    agents = {(s.algo, s.pixels): s for s in plan(config) if s.kind == "train-agent"}
    for stage in agents.values():
        spec, _, stack = resolve(agent_config(config, stage))
        check_action_space(spec, action_space(stack.env_config()), config.env_id)


def evaluate_config(config: PipelineConfig, stage: Stage) -> Any:
    from agents.evaluate import EvaluateConfig

    run_dir, settings = stage.run_dir(config), config.evaluate
    final = stage.policy == "final"
    return EvaluateConfig(
        str(run_dir),
        episodes=settings.episodes,
        seed=settings.seed,
        video=str(run_dir / VIDEO_FILE) if settings.video and stage.first and final else None,
        random_baseline=settings.random_baseline and stage == _first_eval(config),
        out=str(run_dir / evaluation_file(stage.policy)),
        device=config.device,
        n_envs=settings.n_envs,
        policy=stage.policy,
    )


def _first_eval(config: PipelineConfig) -> Stage:
    return next(s for s in plan(config) if s.kind == "evaluate")


def command_line(prog: str, obj: Any, positional: tuple[str, ...] = ()) -> str:
    """The command that runs ``obj`` (a config dataclass): ``prog``, positionals, then non-default options.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class C:
    ...     path: str
    ...     size: tuple[int, int] = (8, 8)
    ...     fast: bool = False
    >>> command_line("tool run", C("d", size=(4, 4), fast=True), ("path",))
    'tool run d --size 4 4 --fast'
    """
    parts = [prog]
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in positional:
            parts.append(shlex.quote(str(value)))
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING  # a required option: always written
        if value == default or (f.name in ("progress", "progress_bar") and not value):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (tuple, list)):
            parts += [flag, *(shlex.quote(str(v)) for v in value)]
        elif isinstance(value, dict):
            parts += [flag, shlex.quote(json.dumps(value))]
        elif value is not None:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def stage_command(config: PipelineConfig, stage: Stage) -> str:
    """The ``worldmodel`` command equivalent to ``stage`` (for reports and READMEs)."""
    if stage.kind == "collect":
        return command_line("worldmodel collect", collect_config(config), ("env_id",))
    if stage.kind == "train-vae":
        return command_line("worldmodel train-vae", vae_config(config), ("data_dir",))
    if stage.kind == "train-agent" and config.runs.continue_from:
        source = continued_source(config, stage)
        train = command_line("worldmodel train-agent", agent_config(config, stage, resume=True), ("env_id",))
        return f"cp -r {shlex.quote(str(source))} {shlex.quote(str(stage.run_dir(config)))} && {train}"
    if stage.kind == "train-agent":
        return command_line("worldmodel train-agent", agent_config(config, stage), ("env_id",))
    if stage.kind == "evaluate":
        return command_line("worldmodel evaluate", evaluate_config(config, stage), ("run_dir",))
    return f"python -m experiments.pipeline.report {shlex.quote(config.out)} --name {config.report.name}"


# Completion markers and running


def is_done(config: PipelineConfig, stage: Stage) -> bool:
    """Whether ``stage``'s outputs are complete (then it is skipped)."""
    if stage.kind == "collect":
        from worldmodel.data import DatasetError, FrameDataset

        try:
            return FrameDataset.open(config.data_dir, verify="none").num_episodes >= config.collect.episodes
        except DatasetError:
            return False
    if stage.kind == "train-vae":
        return (config.vae_dir / "summary.json").is_file()
    if stage.kind == "train-agent":
        summary = read_json(stage.run_dir(config) / "summary.json")
        return summary is not None and summary["agent_steps"] >= agent_config(config, stage).timesteps
    if stage.kind == "evaluate":
        wanted = evaluate_config(config, stage)
        run_dir = stage.run_dir(config)
        result = read_json(Path(wanted.out))
        return (
            result is not None
            and (run_dir / "model.zip").is_file()
            and not evaluation_predates_model(run_dir, evaluation_file(stage.policy))
            and result["episodes"] == wanted.episodes
            and result["seed"] == wanted.seed
            and result.get("n_envs", 1) == wanted.n_envs
            and (wanted.video is None or Path(wanted.video).is_file())
            and (not wanted.random_baseline or "random" in result)
        )
    return False  # the report is cheap: always rewritten


def _run_collect(config: PipelineConfig, stage: Stage) -> dict[str, Any]:
    from envs.collect import collect_rollouts

    summary = collect_rollouts(collect_config(config))
    return {
        "env_frames": summary.env_frames,
        "frames_stored": summary.new_frames,
        "episodes": summary.new_episodes,
        "dataset_frames": summary.frames,
        "dataset_episodes": summary.episodes,
        "mean_return": summary.mean_return,
        "disk_mib": round(summary.disk_bytes / 2**20, 1),
    }


def _run_vae(config: PipelineConfig, stage: Stage) -> dict[str, Any]:
    from worldmodel.vae.train import train_vae

    train_vae(vae_config(config, resume=(config.vae_dir / "resume.safetensors").is_file()))
    summary = json.loads((config.vae_dir / "summary.json").read_text())
    keys = ("steps", "epochs", "images_per_s", "val_psnr_db", "val_mse_per_pixel", "active_dims", "latent_dim")
    return {"vae_" + k: summary[k] for k in keys} | {"training_wall_s": summary["wall_s"]}


def _run_agent(config: PipelineConfig, stage: Stage) -> dict[str, Any]:
    from agents.train import train_agent

    run_dir = stage.run_dir(config)
    if config.runs.continue_from and not (run_dir / "config.json").is_file():
        copy_continued_run(config, stage)
    run_dir = train_agent(agent_config(config, stage, resume=(run_dir / "config.json").is_file()))
    summary = json.loads((run_dir / "summary.json").read_text())
    elapsed = max(summary["elapsed_s"], 1e-9)
    return {
        "agent_steps": summary["agent_steps"],
        "env_frames": summary["env_frames"],
        "training_wall_s": summary["elapsed_s"],
        "steps_per_s": round(summary["agent_steps"] / elapsed, 1),
        "frames_per_s": round(summary["env_frames"] / elapsed, 1),
        "last_eval": summary.get("last_eval"),
    }


def _run_evaluate(config: PipelineConfig, stage: Stage) -> dict[str, Any]:
    from agents.evaluate import evaluate_agent

    results = evaluate_agent(evaluate_config(config, stage))
    return {
        "agent_steps": int(sum(results["lengths"])),
        "mean_return": results["mean_return"],
        "std_return": results["std_return"],
        "episodes": results["episodes"],
    }


def compared_missing(config: PipelineConfig) -> list[str]:
    """The outputs in ``config.report.compare_with`` that hold no pipeline record (not run yet, or elsewhere)."""
    return [other for other in config.report.compare_with if not (Path(other) / PIPELINE_FILE).is_file()]


def _run_report(config: PipelineConfig, stage: Stage) -> dict[str, Any]:
    from experiments.pipeline.report import write_report

    missing = compared_missing(config)
    compare = [other for other in config.report.compare_with if other not in missing]
    name, report_dir = config.report.name or "report", config.report.dir
    path = write_report(config.out, name=name, report_dir=report_dir, compare=compare, not_found=missing)
    return {"report": str(path), "not_compared": missing}


RUNNERS: dict[str, Callable[[PipelineConfig, Stage], dict[str, Any]]] = {
    "collect": _run_collect,
    "train-vae": _run_vae,
    "train-agent": _run_agent,
    "evaluate": _run_evaluate,
    "report": _run_report,
}


INTERRUPTED = 130
"""Exit status of a stage process stopped by SIGINT or SIGTERM (as a shell reports Ctrl-C)."""


class StageError(UserError, RuntimeError):
    """A stage failed; its outputs so far are kept and running the pipeline again resumes it."""


def _run_isolated(config: PipelineConfig, stage: Stage) -> tuple[dict[str, Any], float]:
    """Run ``stage`` in a fresh Python process; returns its record and its peak RSS (with its workers), MiB."""
    with tempfile.TemporaryDirectory(prefix="pipeline-stage-") as tmp:
        config_path, result_path = Path(tmp) / "config.json", Path(tmp) / "result.json"
        config_path.write_text(json.dumps(config.to_dict()))
        argv = [sys.executable, "-m", "experiments.pipeline.stages", "--run-stage", stage.name, str(config_path)]
        proc = subprocess.Popen([*argv, str(result_path)])
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except KeyboardInterrupt:
            proc.wait()  # it got the same Ctrl-C and stops cleanly
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode == INTERRUPTED:
            raise StageError(
                f"stage {stage.name} was stopped by a signal (exit code {INTERRUPTED}); its outputs so far are kept "
                "(an agent's training writes a resume checkpoint first): run the same command again to resume"
            )
        if proc.returncode != 0:
            raise StageError(
                f"stage {stage.name} failed (exit code {proc.returncode}; its error is printed above). "
                "Its outputs so far are kept: fix the cause and run the same command again to resume"
            )
        scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20
        return json.loads(result_path.read_text()), round(usage.ru_maxrss * scale, 1)


def run_stage(config: PipelineConfig, stage: Stage) -> dict[str, Any]:
    """Run one stage (in this process, or isolated) and return its ``stages.json`` record."""
    started = time.monotonic()
    if config.isolate:
        record, peak = _run_isolated(config, stage)
        record["peak_rss_mib"] = peak
    else:
        record = RUNNERS[stage.kind](config, stage)
        rss = peak_rss_mib()
        record["peak_rss_mib"] = max(rss["self"], rss["children"])
        record["peak_rss_note"] = "in-process: the pipeline process's peak so far"
    wall = time.monotonic() - started
    record.update({"status": "done", "wall_s": round(wall, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    if "agent_steps" in record and "steps_per_s" not in record:
        record["steps_per_s"] = round(record["agent_steps"] / max(wall, 1e-9), 1)
    if "env_frames" in record and "frames_per_s" not in record:
        record["frames_per_s"] = round(record["env_frames"] / max(wall, 1e-9), 1)
    return record


@contextlib.contextmanager
def _locked(out: Path):
    """Hold ``OUT/.lock`` exclusively: pipelines started at once on one OUT update its JSON files in turn."""
    with open(out / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _update_stage(out: Path, name: str, update: Callable[[dict[str, Any] | None], dict[str, Any]]) -> None:
    """Replace stage ``name``'s record in ``stages.json`` by ``update(old record)``, keeping every other record.

    Read, change and write happen under the lock, so records that another pipeline on the
    same OUT wrote meanwhile (e.g. evaluations started while agents still train) survive.
    """
    with _locked(out):
        stages = read_stages(out)
        stages[name] = update(stages.get(name))
        write_json_atomic(out / STAGES_FILE, stages)


def _record_run(config: PipelineConfig, command: str | None) -> None:
    path = Path(config.out) / PIPELINE_FILE
    with _locked(Path(config.out)):
        previous = read_json(path) or {}
        commands = previous.get("commands", [])
        if command and command not in commands:
            commands.append(command)
        machines = previous.get("machines", [])
        machines.append(describe_machine())
        write_json_atomic(
            path,
            {
                "config": config.to_dict(),
                "commands": commands,
                "machines": machines,
                "stage_commands": [[s.name, stage_command(config, s)] for s in plan(config)],
            },
        )


def run_pipeline(
    config: PipelineConfig, *, only: tuple[str, ...] = (), command: str | None = None, log: Callable = print
) -> dict[str, Any]:
    """Run every stage of ``config`` that is not done yet; returns the ``stages.json`` content.

    ``only`` restricts the run to stages whose kind or name is listed (e.g. ``("collect",
    "train-vae")``); ``command`` is recorded in ``pipeline.json`` for the report.
    """
    if config.vae.pretrained and not config.vae_checkpoint.is_file():
        raise UserError(
            f"no VAE checkpoint at {config.vae.pretrained}: give an existing .safetensors file (e.g. a train-vae "
            "run's best.safetensors), or leave vae.pretrained unset to collect data and train one"
        )
    missing = compared_missing(config)
    if missing:
        log(
            f"warning: compare_with names {', '.join(missing)}, which holds no {PIPELINE_FILE}: the report will not "
            "show its runs unless that pipeline (or a report's records folder) is there when the report stage runs"
        )
    if config.runs.continue_from and not (Path(config.runs.continue_from) / "agents").is_dir():
        raise UserError(
            f"continue_from={config.runs.continue_from} has no agents/ directory: give the out directory of the "
            "pipeline whose agent runs this one trains on"
        )
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    _record_run(config, command)

    def skipped(record: dict[str, Any] | None) -> dict[str, Any]:
        if record is None:
            return {"status": "done", "note": "outputs found; made by an earlier run"}
        return record | {"skipped": time.strftime("%Y-%m-%dT%H:%M:%S")}

    def start(stage: Stage) -> dict[str, Any] | None:
        if is_done(config, stage):  # checked when its turn comes: another process may have made it meanwhile
            return None
        log(f"[pipeline] {stage.name}: running  ({stage_command(config, stage)})")
        return run_stage(config, stage)

    selected = [s for s in plan(config) if not only or s.kind in only or s.name in only]
    pending, finished, running = list(selected), set(), {}
    failed: StageError | None = None
    with ThreadPoolExecutor(max_workers=config.jobs) as pool:
        while True:
            # Each stage starts once the stages making its inputs are done, in plan order: an evaluation runs
            # beside the trainings still under way, never before its own agent's training is finished
            ready = [] if failed else [s for s in pending if needs(s, selected) <= finished]
            for stage in ready[: config.jobs - len(running)]:
                pending.remove(stage)
                running[pool.submit(start, stage)] = stage
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                stage = running.pop(future)
                try:
                    record = future.result()
                except StageError as exc:
                    failed = failed or exc  # no new stage starts; those running finish
                    continue
                if record is None:
                    _update_stage(out, stage.name, skipped)
                    log(f"[pipeline] {stage.name}: outputs complete, skipped")
                else:
                    _update_stage(out, stage.name, lambda _, record=record: record)
                    log(f"[pipeline] {stage.name}: done in {record['wall_s']:.1f} s")
                finished.add(stage.name)
    if failed is not None:
        raise failed
    stages = read_stages(out)
    return {s.name: stages.pop(s.name) for s in plan(config) if s.name in stages} | stages  # in pipeline order


def needs(stage: Stage, stages: list[Stage]) -> set[str]:
    """The names of the stages among ``stages`` that make ``stage``'s inputs: it starts once they are done.

    >>> from experiments.pipeline.settings import ReportSettings
    >>> stages = plan(PipelineConfig("worldmodel/DotTarget-v0", out="/tmp/p", report=ReportSettings("r")))
    >>> by_name = {s.name: s for s in stages}
    >>> needs(by_name["train-agent/ppo/seed1"], stages), needs(by_name["evaluate/ppo/seed1"], stages)
    ({'train-vae'}, {'train-agent/ppo/seed1'})
    >>> len(needs(by_name["report"], stages)) == len(stages) - 1
    True
    """
    if stage.kind == "report":
        return {s.name for s in stages if s is not stage}
    makers = {
        "train-vae": "collect",
        "train-agent": "train-vae",
        "evaluate": f"train-agent/{stage.mode}/seed{stage.seed}",
    }
    return {s.name for s in stages if s.name == makers.get(stage.kind)}


def _child_main(argv: list[str]) -> int:
    """``python -m experiments.pipeline.stages --run-stage NAME CONFIG_JSON RESULT_JSON`` (used by isolated stages)."""
    name, config_path, result_path = argv
    config = PipelineConfig.from_dict(json.loads(Path(config_path).read_text()) | {"isolate": False, "jobs": 1})
    stage = next(s for s in plan(config) if s.name == name)
    try:
        write_json_atomic(result_path, RUNNERS[stage.kind](config, stage))
    except KeyboardInterrupt as exc:  # e.g. train-agent's TrainingStopped, after its resume checkpoint
        print(f"[pipeline] {name}: interrupted{f': {exc}' if str(exc) else ''}", file=sys.stderr)
        return INTERRUPTED
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.pipeline.stages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-stage", nargs=3, metavar=("NAME", "CONFIG_JSON", "RESULT_JSON"), required=True)
    return _child_main(parser.parse_args(argv).run_stage)


if __name__ == "__main__":
    raise SystemExit(main())

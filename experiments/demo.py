"""``python -m experiments.demo [--out DIR]`` (``make demo``): the whole pipeline on CarRacing-v3 in minutes.

A short version of the CarRacing experiment (:data:`DEMO`): collect two dozen Brownian
episodes on EnvPool, train the VAE briefly, train a latent PPO agent with the shipped
CarRacing-v3 preset on EnvPool for 200k env frames, evaluate it on Gymnasium's
CarRacing-v3 and write a report with
reconstructions, a learning curve and a video. The demo then evaluates the pretrained
bundle shipped in ``experiments/pretrained/carracing/`` (when present) and records its
video too.

Everything goes under ``--out`` (default ``demo_output/``). Running the demo again
reuses the finished stages (``--fresh`` starts over); an interrupted run resumes.

>>> DEMO.env_id, DEMO.runs.pixels, DEMO.runs.seeds
('CarRacing-v3', False, (0,))
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from experiments.pipeline.config import PipelineConfig, plan
from experiments.pipeline.markdown import relative, write_markdown
from experiments.pipeline.records import VIDEO_FILE
from experiments.pipeline.report import REPORT_FILE
from experiments.pipeline.settings import (
    AgentSettings,
    CollectSettings,
    EvaluateSettings,
    ReportSettings,
    RunSettings,
    VaeSettings,
)
from experiments.pipeline.stages import StageError, run_pipeline

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained" / "carracing"
DEMO_AGENT_FRAMES = 200_000
"""The demo agent's budget in env frames: about 5 minutes on 2 idle cores with EnvPool."""
GYMNASIUM_AGENT_FRAMES = 32_768
"""The budget where EnvPool is not installed (no wheel for this platform): Gymnasium's CarRacing is ~6x slower."""
REPORT_NAME = "report"

DEMO = PipelineConfig(
    "CarRacing-v3",
    out="demo_output/pipeline",
    backend="envpool",  # collection and training; the evaluation runs on Gymnasium's env
    collect=CollectSettings(episodes=24, policy="brownian", max_steps=200),
    vae=VaeSettings(epochs=5, batch_size=64),
    # hyperparameters: the shipped CarRacing-v3 PPO preset (agents/presets/ppo.yaml, the recipe study's)
    agent=AgentSettings(env_frames=DEMO_AGENT_FRAMES, eval_freq=25_000, eval_episodes=2, checkpoint_freq=25_000),
    runs=RunSettings(algos=("ppo",), seeds=(0,), pixels=False),
    evaluate=EvaluateSettings(episodes=3, video=True, random_baseline=False),
    report=ReportSettings(name=REPORT_NAME),
    isolate=False,  # one process: no per-stage interpreter start-up in a 15-minute budget
)
"""The demo's budgets: about 10 minutes on 2 CPU cores."""
PRETRAINED_EPISODES = 2


def evaluate_pretrained(out: Path, seed: int) -> dict[str, Any] | None:
    """Evaluate the shipped pretrained bundle with a video; None (and a message) when it is not shipped."""
    from agents.policy_file import POLICY_FILE

    if not (PRETRAINED_DIR / POLICY_FILE).is_file():
        print(
            f"[demo] no pretrained bundle in {PRETRAINED_DIR} (this checkout does not ship one yet), so there is no "
            "video of a trained driver. Train one with `python -m experiments.carracing` (see "
            "experiments/carracing/README.md) and copy a run directory's bundle there."
        )
        return None
    from agents.evaluate import EvaluateConfig, evaluate_agent

    print(f"[demo] evaluating the pretrained bundle {relative(PRETRAINED_DIR)} on {PRETRAINED_EPISODES} tracks")
    return evaluate_agent(
        EvaluateConfig(
            relative(PRETRAINED_DIR),
            episodes=PRETRAINED_EPISODES,
            seed=seed,
            video=str(out / "pretrained.mp4"),
            out=str(out / "pretrained_evaluation.json"),
        )
    )


def _append_pretrained(report: Path, result: dict[str, Any] | None) -> None:
    if result is None:
        text = f"No pretrained bundle is shipped in `{relative(PRETRAINED_DIR)}` in this checkout."
    else:
        text = (
            f"The shipped bundle `{relative(PRETRAINED_DIR)}` ({result['algo']} on {result['mode']}): return "
            f"{result['mean_return']:.1f} ± {result['std_return']:.1f} over {result['episodes']} tracks "
            f"(seeds from {result['seed']}); video: `pretrained.mp4`, beside the report's folder."
        )
    write_markdown(report, ["## Pretrained agent", text], part="pretrained")  # replaced, not added, on a rerun


def run_demo(out: Path, *, fresh: bool = False) -> int:
    """Run the demo into ``out``; returns an exit status."""
    if fresh and out.exists():
        shutil.rmtree(out)
    config = replace(DEMO, out=str(out / "pipeline"), report=replace(DEMO.report, dir=str(out)))
    if importlib.util.find_spec("envpool") is None:
        print(
            "[demo] envpool is not installed (pip install 'worldmodel[envpool]'; Linux x86-64 wheels): collecting and "
            f"training on Gymnasium's CarRacing instead, {GYMNASIUM_AGENT_FRAMES:,} env frames (too few to drive well)"
        )
        config = replace(config, backend="gymnasium", agent=replace(config.agent, env_frames=GYMNASIUM_AGENT_FRAMES))
    started = time.monotonic()
    try:
        run_pipeline(config, command="python -m experiments.demo " + f"--out {out}")
    except StageError as exc:
        print(f"[demo] {exc}", file=sys.stderr)
        return 1
    agent_stage = next(s for s in plan(config) if s.kind == "evaluate")
    run_dir = agent_stage.run_dir(config)
    video = run_dir / VIDEO_FILE
    if video.is_file():
        shutil.copyfile(video, out / "demo_agent.mp4")
    report = out / REPORT_NAME / REPORT_FILE
    _append_pretrained(report, evaluate_pretrained(out, config.evaluate.seed))
    print(f"\n[demo] finished in {(time.monotonic() - started) / 60:.1f} min. Results in {out}/:")
    print(f"  {report}  the report (returns, stages, learning curve, VAE reconstructions)")
    print(f"  {out / 'demo_agent.mp4'}  the demo agent: frame | VAE reconstruction | return")
    if (out / "pretrained.mp4").is_file():
        print(f"  {out / 'pretrained.mp4'}  the pretrained agent")
    print(f"  {config.out}/  the dataset, the VAE run and the agent run")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output directory (default: demo_output)")
    parser.add_argument("--fresh", action="store_true", help="delete --out first instead of reusing finished stages")
    args = parser.parse_args(argv)
    try:
        return run_demo(args.out, fresh=args.fresh)
    except KeyboardInterrupt:
        print("[demo] interrupted; run it again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

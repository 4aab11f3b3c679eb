"""The Atari 100k study's report, from the committed records of each game: scores of both arms on Gymnasium's
ALE v5 (sticky actions 0.25) and without sticky actions, human-normalised, beside the published Atari 100k methods.

    python -m experiments.atari.report [REPORT_DIR]

rewrites REPORT_DIR/README.md's generated part from REPORT_DIR/<Game>/records and the study's settings in
REPORT_DIR/study.json (prose outside the generated part is kept); ``python -m experiments.rebuild`` does too, and
writes each game's pipeline report again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from experiments.atari.scores import HUMAN, METHODS, NORMALISATION_SOURCE, RANDOM, hns
from experiments.atari.study import ATARI_FRAME_SKIP, StudyConfig
from experiments.pipeline.markdown import cell, mean_ci, write_markdown
from experiments.pipeline.records import NO_STICKY_EVALUATION_FILE, current_evaluation, read_json
from experiments.pipeline.report import RECORDS_DIR, AgentRun, find_runs, write_report
from worldmodel.common.atomic import write_json_atomic

ARMS = {"latent": "ppo", "pixel": "pixels-ppo"}
"""The study's two arms and their runs' mode names."""
BALL_GOAL = 0.9
"""Issue 36's goal for the ball's linear-probe R² on Pong and Breakout."""
STUDY_FILE = "study.json"
"""REPORT_DIR/study.json: the :class:`StudyConfig` the report describes."""


@dataclass(frozen=True)
class GameResult:
    """One game's records: each arm's per-seed mean returns (sticky and not), throughput, the VAE's data."""

    game: str
    returns: dict[str, list[float]]
    """Arm -> each seed's mean return over the scoring episodes, sticky actions 0.25."""
    returns_no_sticky: dict[str, list[float]]
    """The same without sticky actions."""
    frames_per_s: dict[str, list[float]]
    """Arm -> each seed's training env frames per second."""
    episodes: int | None
    """Scoring episodes per agent."""
    random: float | None
    """A uniform-random policy's mean return on the same episodes."""
    vae_env_frames: int | None
    """Env frames of random play the latent arm's VAE trained on (training and held-out)."""
    probe: dict[str, float]
    """The VAE's linear-probe R² from latents to each RAM state dimension."""


def _no_sticky(run: AgentRun) -> float | None:
    evaluation = current_evaluation(run.run_dir, NO_STICKY_EVALUATION_FILE)
    return None if evaluation is None else float(evaluation["mean_return"])


def read_game(records: Path, game: str) -> GameResult:
    """``game``'s result from its records folder (a pipeline output without weights)."""
    runs = find_runs(records)
    returns: dict[str, list[float]] = {arm: [] for arm in ARMS}
    no_sticky: dict[str, list[float]] = {arm: [] for arm in ARMS}
    rates: dict[str, list[float]] = {arm: [] for arm in ARMS}
    episodes = random = None
    for arm, mode in ARMS.items():
        for run in sorted((r for r in runs if r.mode == mode), key=lambda r: r.seed):
            rates[arm].append(run.summary["env_frames"] / run.summary["elapsed_s"])
            if run.evaluation is not None:
                returns[arm].append(float(run.evaluation["mean_return"]))
                episodes = run.evaluation["episodes"]
                if "random" in run.evaluation:
                    random = float(run.evaluation["random"]["mean_return"])
            if (score := _no_sticky(run)) is not None:
                no_sticky[arm].append(score)
    vae = read_json(records / "vae" / "summary.json") or {}
    frames = vae.get("train_frames", 0) + vae.get("val_frames", 0)
    probe = dict(zip(vae.get("linear_probe_names", []), vae.get("linear_probe_r2", []), strict=False))
    return GameResult(game, returns, no_sticky, rates, episodes, random, frames * ATARI_FRAME_SKIP or None, probe)


def _score(values: list[float], seeds: bool = True) -> str:
    if not values:
        return "–"
    text = mean_ci(values) if len(values) > 1 else f"{values[0]:.1f}"
    return f"{text} ({len(values)})" if seeds else text


def _hns(game: str, values: list[float]) -> float | None:
    return hns(game, statistics.fmean(values)) if values else None


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def scores_table(results: list[GameResult]) -> str:
    """Per game: both arms' returns (sticky actions 0.25), their HNS, the VAE's frames and throughput."""
    rows = [
        "| Game | latent PPO | pixel PPO | random (ours) | HNS latent | HNS pixel | VAE frames | "
        "env frames/s latent | pixel |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rates = [cell(statistics.fmean(r.frames_per_s[arm]) if r.frames_per_s[arm] else None, 0) for arm in ARMS]
        rows.append(
            f"| {r.game} | {_score(r.returns['latent'])} | {_score(r.returns['pixel'])} | {cell(r.random)} "
            f"| {_pct(_hns(r.game, r.returns['latent']))} | {_pct(_hns(r.game, r.returns['pixel']))} "
            f"| {cell(r.vae_env_frames)} | {rates[0]} | {rates[1]} |"
        )
    return "\n".join(rows)


def published_table(results: list[GameResult]) -> str:
    """Per game without sticky actions: both arms beside the published methods (their budgets: 100k agent steps)."""
    names = [m.name for m in METHODS]
    rows = [
        "| Game | random | human | latent PPO | pixel PPO | " + " | ".join(names) + " |",
        "|---" * (5 + len(names)) + "|",
    ]
    for r in results:
        published = " | ".join(cell(m.scores[r.game]) for m in METHODS)
        rows.append(
            f"| {r.game} | {cell(RANDOM[r.game])} | {cell(HUMAN[r.game])} | {_score(r.returns_no_sticky['latent'])} "
            f"| {_score(r.returns_no_sticky['pixel'])} | {published} |"
        )
    return "\n".join(rows)


def aggregate(values: dict[str, float | None]) -> tuple[float | None, float | None]:
    """Mean and median of the games' HNS; None unless every game has one."""
    if not values or any(v is None for v in values.values()):
        return None, None
    scores = [float(v) for v in values.values() if v is not None]
    return statistics.fmean(scores), statistics.median(scores)


def hns_table(results: list[GameResult]) -> str:
    """Mean and median HNS over the games played, ours and the published methods', and theirs over 26 games."""
    games = [r.game for r in results]
    played = f"{len(games)} game{'' if len(games) == 1 else 's'}"
    rows = [
        f"| Method | mean HNS, {played} | median HNS, {played} | mean HNS, 26 games | median HNS, 26 games |",
        "|---|---|---|---|---|",
    ]
    ours = {
        "latent PPO, sticky 0.25": {r.game: _hns(r.game, r.returns["latent"]) for r in results},
        "pixel PPO, sticky 0.25": {r.game: _hns(r.game, r.returns["pixel"]) for r in results},
        "latent PPO, no sticky": {r.game: _hns(r.game, r.returns_no_sticky["latent"]) for r in results},
        "pixel PPO, no sticky": {r.game: _hns(r.game, r.returns_no_sticky["pixel"]) for r in results},
    }
    for name, values in ours.items():
        mean, median = aggregate(values)
        rows.append(f"| {name} (this study) | {_pct(mean)} | {_pct(median)} | – | – |")
    for m in METHODS:
        mean, median = aggregate({g: hns(g, m.scores[g]) for g in games})
        rows.append(f"| {m.name} ({m.paper}) | {_pct(mean)} | {_pct(median)} | {_pct(m.mean_hns)} "
                    f"| {_pct(m.median_hns)} |")  # fmt: skip
    return "\n".join(rows)


def goals(results: list[GameResult]) -> list[str]:
    """Issue 36's goals, each said met or not from the records."""
    complete = [r for r in results if r.returns["latent"] and r.returns["pixel"]]
    lines = []
    if complete:
        latent, _ = aggregate({r.game: _hns(r.game, r.returns["latent"]) for r in complete})
        pixel, _ = aggregate({r.game: _hns(r.game, r.returns["pixel"]) for r in complete})
        assert latent is not None and pixel is not None
        names = ", ".join(r.game for r in complete)
        lines.append(f"- Latent PPO's mean HNS above pixel PPO's ({names}, sticky 0.25): {_pct(latent)} against "
                     f"{_pct(pixel)}, **{'met' if latent > pixel else 'not met'}**.")  # fmt: skip
    scored = [r for r in results if r.returns_no_sticky["latent"]]
    if scored:
        ours, _ = aggregate({r.game: _hns(r.game, r.returns_no_sticky["latent"]) for r in scored})
        der = next(m for m in METHODS if m.name == "DER")
        theirs, _ = aggregate({r.game: hns(r.game, der.scores[r.game]) for r in scored})
        assert ours is not None and theirs is not None
        lines.append(f"- Above DER's mean HNS on the same games (no sticky actions, as DER played): {_pct(ours)} "
                     f"against {_pct(theirs)}, **{'met' if ours > theirs else 'not met'}**.")  # fmt: skip
    timed = [r for r in results if r.frames_per_s["latent"] and r.frames_per_s["pixel"]]
    if timed:
        ratios = [statistics.fmean(r.frames_per_s["latent"]) / statistics.fmean(r.frames_per_s["pixel"]) for r in timed]
        shown = ", ".join(f"{r.game} {x:.2f}x" for r, x in zip(timed, ratios, strict=True))
        lines.append(
            f"- Latent training at least 2x pixel PPO's env frames/s: {shown} (training runs, not a benchmark), "
            f"**{'met' if min(ratios) >= 2 else 'not met'}**."
        )
    for r in results:
        balls = {k: v for k, v in r.probe.items() if k.startswith("ball")}
        if balls:
            shown = ", ".join(f"{k} {cell(v, 2)}" for k, v in balls.items())  # None: the state never moved
            met = all(v is not None and v >= BALL_GOAL for v in balls.values())
            lines.append(f"- {r.game}'s ball in the latent, linear-probe R² >= {BALL_GOAL}: {shown}, "
                         f"**{'met' if met else 'not met'}**.")  # fmt: skip
    return lines


def write_study_report(study: StudyConfig, records_from: Path | None = None) -> Path:
    """Write ``study.report_dir``/README.md's generated part, and the study's settings beside it, from the records of
    every game that has them (in ``records_from``/<Game>/records; default: the report's own folder)."""
    report_dir = Path(study.report_dir)
    source = report_dir if records_from is None else records_from
    games = [g for g in study.games if (source / g / RECORDS_DIR).is_dir()]
    results = [read_game(source / g / RECORDS_DIR, g) for g in games]
    report_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(report_dir / STUDY_FILE, dataclasses.asdict(study))
    episodes = sorted({r.episodes for r in results if r.episodes})
    sections = [
        "# Atari 100k: latent PPO against pixel PPO (issue 36)",
        f"Games with records: {', '.join(r.game for r in results) or 'none yet'}. Each agent trains on "
        f"{study.env_frames:,} env frames (100k agent steps at frame skip 4, Atari 100k's budget); the latent arm's "
        "VAE trains on random play counted in it (column 'VAE frames'), its agent on the rest. Scores: the final "
        f"policy's mean return over {', '.join(map(str, episodes)) or study.eval_episodes} episodes of Gymnasium's "
        "`ALE/<Game>-v5`, deterministic; mean ± 95% CI over seeds (seeds in brackets). HNS = (score - random) / "
        f"(human - random), random and human from {NORMALISATION_SOURCE}.",
        "## Scores with ALE v5's sticky actions (0.25)",
        scores_table(results),
        "## Without sticky actions, beside the published methods",
        "Most Atari 100k papers play without sticky actions; the published scores are theirs, at their budget of "
        "100k agent steps with their own evaluation protocols.",
        published_table(results),
        "## Human-normalised scores",
        hns_table(results),
        "## Goals",
        "\n".join(goals(results)) or "No game has records yet.",
        (
            "Each game's learning curves (env frames and wall-clock), run table and machine: its own report, "
            + ", ".join(f"[{r.game}]({r.game}/README.md)" for r in results)
            + ". "
            if results
            else ""
        )
        + "Sources of the published scores: `experiments/atari/scores.py`.",
    ]
    return write_markdown(report_dir / "README.md", sections)


def read_study(report: Path) -> StudyConfig:
    """The settings recorded in ``report``/study.json."""
    return StudyConfig(**json.loads((report / STUDY_FILE).read_text()))


def rebuild_study(report: Path, into: Path) -> Path:
    """Write the study report folder ``report`` again, each game's pipeline report and figures included, to
    ``into``/<name>/ (``into`` = ``report.parent``: in place), from its records alone; returns its README."""
    study = dataclasses.replace(read_study(report), report_dir=str(into / report.name))
    for game in study.games:
        if (report / game / RECORDS_DIR / "pipeline.json").is_file():
            write_report(report / game / RECORDS_DIR, name=game, report_dir=into / report.name)
    return write_study_report(study, records_from=report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.atari.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("report_dir", nargs="?", default=StudyConfig.report_dir, type=Path)
    args = parser.parse_args(argv)
    if not (args.report_dir / STUDY_FILE).is_file():
        parser.error(f"{args.report_dir} holds no {STUDY_FILE}: give the folder python -m experiments.atari wrote")
    print(f"wrote {write_study_report(read_study(args.report_dir))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

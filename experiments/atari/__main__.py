"""``python -m experiments.atari --games Pong,Breakout --seeds 3``: the Atari 100k study, game after game.

For each game: random play for the VAE, the VAE, latent PPO and rl-zoo's pixel PPO on every seed, each scored on
Gymnasium's ALE v5 with and without sticky actions; then the study's report. Resumable: run the same command
again after an interruption; finished games and stages are skipped, interrupted ones continue.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from experiments.atari.report import write_study_report
from experiments.atari.scores import RANDOM
from experiments.atari.study import StudyConfig, run_game
from worldmodel.common.errors import UserError

PROG = "python -m experiments.atari"


def parse_study(argv: list[str] | None) -> StudyConfig:
    defaults = StudyConfig()
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", default=",".join(defaults.games), help="comma-separated ALE game names "
                        f"(default: {','.join(defaults.games)})")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=len(defaults.seeds), help="seeds per arm: 0..N-1 (default: 3)")
    parser.add_argument("--out", default=defaults.out, help=f"runs go to OUT/<Game>/ (default: {defaults.out})")
    parser.add_argument("--report-dir", default=defaults.report_dir, help=f"default: {defaults.report_dir}")
    parser.add_argument("--env-frames", type=int, default=defaults.env_frames, help="budget per agent, env frames")
    parser.add_argument("--vae-frames", type=int, default=defaults.vae_frames,
                        help="env frames of random play for the VAE, out of the latent arm's budget")  # fmt: skip
    parser.add_argument("--eval-episodes", type=int, default=defaults.eval_episodes, help="scoring episodes")
    args = parser.parse_args(argv)
    games = tuple(g.strip() for g in args.games.split(",") if g.strip())
    unknown = [g for g in games if g not in RANDOM]
    if unknown:
        parser.error(f"--games {','.join(unknown)}: the study has published scores for {', '.join(RANDOM)} only")
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: give at least 1")
    try:
        return StudyConfig(games=games, seeds=tuple(range(args.seeds)), out=args.out, report_dir=args.report_dir,
                           env_frames=args.env_frames, vae_frames=args.vae_frames,
                           eval_episodes=args.eval_episodes)  # fmt: skip
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    study = parse_study(argv)
    command = shlex.join(["python", "-m", "experiments.atari", *(sys.argv[1:] if argv is None else argv)])
    try:
        for game in study.games:
            run_game(study, game, command=command)
            write_study_report(study)
    except UserError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print(f"report: {study.report_dir}/README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

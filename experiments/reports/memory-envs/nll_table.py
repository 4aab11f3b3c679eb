"""The table of ``README.md`` from the committed records: ``python experiments/reports/memory-envs/nll_table.py``."""

import json
from pathlib import Path

RECORDS = Path(__file__).parent / "records"
ENVS = ("Pong", "Breakout", "CarRacing")
TOLERANCE = 0.001
"""Nats/dim within which the memory model's held-out NLL counts as matching copy-last's."""
ARMS = {"memory": "defaults now", "memory-old": "defaults before (--sample-latents --no-start-as-copy)"}


def row(env: str, arm: str) -> str | None:
    path = RECORDS / f"{env}-{arm}.summary.json"
    if not path.is_file():
        return None
    s = json.loads(path.read_text())
    best = min(s["nll"], s["nll_copy"], s["nll_gaussian"])
    nll = f"**{s['nll']:.3f}**" if s["nll"] == best else f"{s['nll']:.3f}"
    gap = s["nll"] - s["nll_copy"]  # nats/dim above copy-last; within TOLERANCE counts as a match
    verdict = ("yes" if gap <= 0 else f"yes (within {TOLERANCE})") if gap <= TOLERANCE else f"no, by {gap:.3f}"
    rmse = " | ".join(f"{s[f'open_loop_model_rmse@{k}']:.4f} ({s[f'open_loop_copy_rmse@{k}']:.4f})" for k in (1, 5, 20))
    return (f"| {env} | {ARMS[arm]} | {s['best_epoch']} of {s['epochs']} | {nll} | {s['nll_copy']:.3f} "
            f"| {s['nll_gaussian']:.3f} | {verdict} | {rmse} |")  # fmt: skip


if __name__ == "__main__":
    print("| env | train-memory | best epoch | held-out NLL (nats/dim) | copy last | unconditional Gaussian "
          "| matches copy last | open-loop RMSE @1 (copy) | @5 (copy) | @20 (copy) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for env in ENVS:
        for arm in ARMS:
            if (line := row(env, arm)) is not None:
                print(line)

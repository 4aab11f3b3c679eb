"""The table of ``README.md`` from the committed records: ``python experiments/reports/atari-ball/table.py``."""

import json
from pathlib import Path

RECORDS = Path(__file__).parent / "records"
STATES = {"Pong": ["player_y", "enemy_y", "ball_x", "ball_y"], "Breakout": ["player_x", "ball_x", "ball_y"]}
COLUMNS = ["player_y", "player_x", "enemy_y", "ball_x", "ball_y"]


def row(name: str) -> str:
    summary = json.loads((RECORDS / f"{name}.summary.json").read_text())
    config = json.loads((RECORDS / f"{name}.config.json").read_text())
    game = name.split("-")[0]
    names = summary.get("linear_probe_names") or STATES[game]  # older summaries did not name the columns
    r2 = dict(zip(names, summary["linear_probe_r2"], strict=True))
    motion = config.get("motion_weight", 0.0)  # runs before --motion-weight existed trained without
    settings = f"beta {config['beta']:g}, KL tolerance {config['kl_tolerance']:g}, motion weight {motion:g}"
    probes = " | ".join(f"{r2[s]:.2f}" if s in r2 else "-" for s in COLUMNS)
    return (f"| {name} | {settings} | {summary['best_epoch']} of {config['epochs']} | "
            f"{summary['val_mse_per_pixel']:.5f} | {summary['active_dims']} | {probes} |")  # fmt: skip


if __name__ == "__main__":
    names = sorted(p.name.removesuffix(".summary.json") for p in RECORDS.glob("*.summary.json"))
    print("| VAE | settings | best epoch | held-out MSE/pixel | active dims | R² player_y | R² player_x | "
          "R² enemy_y | R² ball_x | R² ball_y |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        print(row(name))

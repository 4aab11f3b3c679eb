"""Published Atari 100k scores of the six games the study plays, and the human-normalised score.

HNS = (score - random) / (human - random), with the random and human scores of the DQN literature. Each method's
per-game scores are its final scores at 100k agent steps (400k frames), as published; ``mean_hns`` and
``median_hns`` are its own figures over Atari 100k's 26 games (not over these six). Sources name where each table
was read.

>>> round(hns("Pong", -20.7), 3), round(hns("Pong", 14.6), 3)
(0.0, 1.0)
>>> round(hns("Breakout", 16.1), 3)
0.5
"""

from __future__ import annotations

from dataclasses import dataclass

RANDOM = {"Pong": -20.7, "Breakout": 1.7, "Boxing": 0.1, "Freeway": 0.0, "MsPacman": 307.3, "Seaquest": 68.4}
HUMAN = {"Pong": 14.6, "Breakout": 30.5, "Boxing": 12.1, "Freeway": 29.6, "MsPacman": 6951.6, "Seaquest": 42054.7}
NORMALISATION_SOURCE = "google/dopamine, dopamine/labs/atari_100k/normalization_utils.py (as in CURL's Table 2)"


def hns(game: str, score: float) -> float:
    """The human-normalised score of ``score`` on ``game``: 0 plays like random, 1 like a human."""
    return (score - RANDOM[game]) / (HUMAN[game] - RANDOM[game])


@dataclass(frozen=True)
class Method:
    """A published Atari 100k method: its per-game scores and its own mean and median HNS over 26 games."""

    name: str
    paper: str
    scores: dict[str, float]
    mean_hns: float
    median_hns: float
    source: str


METHODS = (
    Method(
        "SimPLe",
        "Kaiser et al. 2019",
        {"Pong": 12.8, "Breakout": 16.4, "Boxing": 9.1, "Freeway": 20.3, "MsPacman": 1480.0, "Seaquest": 683.3},
        0.443,
        0.144,
        "CURL (Srinivas et al. 2020) Table 2 and its section 6.2, which took each game's best reported SimPLe score",
    ),
    Method(
        "DER",
        "van Hasselt et al. 2019",
        {"Pong": -19.3, "Breakout": 1.9, "Boxing": 0.2, "Freeway": 27.9, "MsPacman": 1204.1, "Seaquest": 354.1},
        0.285,
        0.161,
        "CURL Table 2 ('Eff. Rainbow') and section 6.2",
    ),
    Method(
        "CURL",
        "Srinivas et al. 2020",
        {"Pong": -16.5, "Breakout": 4.9, "Boxing": 1.2, "Freeway": 26.7, "MsPacman": 1465.5, "Seaquest": 384.5},
        0.381,
        0.175,
        "CURL Table 2 and section 6.2 (ICML 2020 version)",
    ),
    Method(
        "DrQ(ε)",
        "Agarwal et al. 2021",
        {"Pong": -9.06, "Breakout": 19.76, "Boxing": 9.04, "Freeway": 20.26, "MsPacman": 1218.11, "Seaquest": 352.28},
        0.465,
        0.313,
        "means of rliable's 100 runs (eloialonso/iris, results/data/DrQ(eps).json); aggregates as in BBF's Table A.1",
    ),
    Method(
        "SPR",
        "Schwarzer et al. 2021",
        {"Pong": -5.9, "Breakout": 17.1, "Boxing": 35.8, "Freeway": 24.4, "MsPacman": 1313.2, "Seaquest": 583.1},
        0.704,
        0.415,
        "SPR's Table 1 as reproduced in A-LIX (Cetin et al. 2022) Table 5",
    ),
    Method(
        "EfficientZero",
        "Ye et al. 2021",
        {"Pong": 20.1, "Breakout": 414.1, "Boxing": 52.7, "Freeway": 21.8, "MsPacman": 1281.2, "Seaquest": 1100.2},
        1.943,
        1.090,
        "eloialonso/iris, results/data/EfficientZero.json (DIAMOND's Table 6 gives the same)",
    ),
    Method(
        "DreamerV3",
        "Hafner et al. 2023",
        {"Pong": 18.0, "Breakout": 31.0, "Boxing": 78.0, "Freeway": 0.0, "MsPacman": 1327.0, "Seaquest": 618.0},
        1.12,
        0.49,
        "DIAMOND (Alonso et al. 2024) Table 1; aggregates of DreamerV3's first version (Table S.1), second-hand",
    ),
)
"""Published methods, oldest first. DER is the first data-efficient baseline the study's goal names."""

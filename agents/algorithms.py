"""Which SB3 algorithms ``train-agent`` knows, and whether they fit an env's action space.

sb3-contrib's algorithms (``tqc``, ``recurrentppo``, ``qrdqn``, ``trpo``, ``crossq``) are
listed too and load when the ``contrib`` extra is installed.

>>> from gymnasium import spaces
>>> get_algorithm("ppo").class_name
'PPO'
>>> check_action_space("sac", spaces.Box(-1, 1, (2,)), "worldmodel/DotTargetContinuous-v0")
>>> try:
...     check_action_space("dqn", spaces.Box(-1, 1, (2,)), "worldmodel/DotTargetContinuous-v0")
... except ValueError as exc:
...     print(str(exc).split("; ")[1].split(", or")[0])
use the discrete variant (env id worldmodel/DotTarget-v0)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm

DISCRETE = (spaces.Discrete,)
CONTINUOUS = (spaces.Box,)
ANY_ACTION = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)

# How to get the other action type for envs that offer both; shown in incompatibility errors.
DISCRETE_VARIANTS = {
    "worldmodel/DotTargetContinuous-v0": "env id worldmodel/DotTarget-v0",
    "CarRacing-v3": """--env-kwargs '{"continuous": false}', i.e. gym.make("CarRacing-v3", continuous=False)""",
}
CONTINUOUS_VARIANTS = {
    "worldmodel/DotTarget-v0": "env id worldmodel/DotTargetContinuous-v0",
    "CarRacing-v3": """the default continuous=True (drop "continuous": false from --env-kwargs)""",
}


@dataclass(frozen=True)
class AlgorithmSpec:
    """An SB3 algorithm class by import path, with what it needs."""

    name: str
    """Name on the command line (lower case)."""
    module: str
    """Module that defines the class."""
    class_name: str
    """Class name inside ``module``."""
    off_policy: bool
    """True for replay-buffer algorithms (their buffer is checkpointed for --resume)."""
    action_spaces: tuple[type[spaces.Space], ...]
    """Action space types the algorithm supports."""
    recurrent: bool = False
    """True when ``predict`` carries an LSTM state between steps."""

    @property
    def contrib(self) -> bool:
        """True when the algorithm comes from sb3-contrib."""
        return self.module.startswith("sb3_contrib")

    def load_class(self) -> type[BaseAlgorithm]:
        """Import and return the algorithm class; a missing sb3-contrib is a clear error."""
        try:
            module = importlib.import_module(self.module)
        except ImportError as exc:
            raise ValueError(
                f"algorithm {self.name!r} comes from sb3-contrib, which is not installed; "
                "install it with `pip install 'worldmodel[contrib]'` (or `pip install sb3-contrib`)"
            ) from exc
        return getattr(module, self.class_name)


ALGORITHMS: dict[str, AlgorithmSpec] = {
    spec.name: spec
    for spec in (
        AlgorithmSpec("ppo", "stable_baselines3", "PPO", False, ANY_ACTION),
        AlgorithmSpec("a2c", "stable_baselines3", "A2C", False, ANY_ACTION),
        AlgorithmSpec("sac", "stable_baselines3", "SAC", True, CONTINUOUS),
        AlgorithmSpec("td3", "stable_baselines3", "TD3", True, CONTINUOUS),
        AlgorithmSpec("ddpg", "stable_baselines3", "DDPG", True, CONTINUOUS),
        AlgorithmSpec("dqn", "stable_baselines3", "DQN", True, DISCRETE),
        AlgorithmSpec("tqc", "sb3_contrib", "TQC", True, CONTINUOUS),
        AlgorithmSpec("crossq", "sb3_contrib", "CrossQ", True, CONTINUOUS),
        AlgorithmSpec("qrdqn", "sb3_contrib", "QRDQN", True, DISCRETE),
        AlgorithmSpec("trpo", "sb3_contrib", "TRPO", False, ANY_ACTION),
        AlgorithmSpec("recurrentppo", "sb3_contrib", "RecurrentPPO", False, ANY_ACTION, recurrent=True),
    )
}
ALIASES = {"ppo_lstm": "recurrentppo", "recurrent_ppo": "recurrentppo"}


def get_algorithm(name: str) -> AlgorithmSpec:
    """The :class:`AlgorithmSpec` called ``name`` (case-insensitive); unknown names list the known ones."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(sorted(ALGORITHMS))}")
    return ALGORITHMS[key]


def installed_algorithms() -> list[str]:
    """Names of the algorithms whose package is importable here.

    >>> "ppo" in installed_algorithms()
    True
    """
    names = []
    for name, spec in ALGORITHMS.items():
        try:
            spec.load_class()
        except ValueError:
            continue
        names.append(name)
    return names


def _space_kind(space: spaces.Space) -> str:
    discrete = isinstance(space, spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary)
    return "discrete" if discrete else "continuous"


def check_action_space(algorithm: str | AlgorithmSpec, action_space: spaces.Space, env_id: str) -> None:
    """Raise ``ValueError`` naming a fix when ``algorithm`` cannot act in ``action_space``."""
    spec = get_algorithm(algorithm) if isinstance(algorithm, str) else algorithm
    if isinstance(action_space, spec.action_spaces):
        return
    have = _space_kind(action_space)
    needs = "discrete" if spec.action_spaces == DISCRETE else "continuous"
    fitting = sorted(name for name, s in ALGORITHMS.items() if isinstance(action_space, s.action_spaces))
    variants = DISCRETE_VARIANTS if needs == "discrete" else CONTINUOUS_VARIANTS
    variant = f"use the {needs} variant ({variants[env_id]}), or " if env_id in variants else ""
    raise ValueError(
        f"{spec.name} needs {needs} actions but {env_id} has {have} actions {action_space}; "
        f"{variant}an algorithm for {have} actions: {', '.join(fitting)}"
    )

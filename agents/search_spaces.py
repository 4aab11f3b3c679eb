"""What ``worldmodel tune`` samples per algorithm, and how sampled values become preset keys.

A :class:`SearchSpace` is an ordered tuple of :class:`Param` (a categorical, or a float
range, log-uniform where ``log``), sampled define-by-run from an Optuna trial; ``only_if``
makes a parameter depend on an earlier one (tanh-squashed actions exist only with gSDE).
:meth:`SearchSpace.to_preset` turns the values into rl-zoo-style preset keys, in the YAML
form :mod:`agents.hyperparams` reads (``lin_<x>`` schedules, ``policy_kwargs`` mappings), so
a trial's recipe is a preset ``train-agent --hyperparams`` loads. Every space also holds the
wrapper factors ``frame_skip``, ``latent_history`` and ``include_action`` (preset keys too).
The ranges follow rl-baselines3-zoo's samplers, narrowed to what trains on latents in a few
hundred thousand frames.

>>> space = search_space("ppo", continuous=True)
>>> space.names()[:4]
('frame_skip', 'latent_history', 'include_action', 'learning_rate')
>>> values = {"learning_rate": 3e-4, "lr_schedule": "linear", "n_steps": 64, "batch_size": 256, "net_width": 64}
>>> space.to_preset(values, n_envs=2)
{'learning_rate': 'lin_0.0003', 'n_steps': 64, 'batch_size': 128, 'policy_kwargs': {'net_arch': [64, 64]}}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Trial(Protocol):
    """The part of ``optuna.Trial`` a search space uses."""

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any: ...

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...


@dataclass(frozen=True)
class Param:
    """One sampled parameter."""

    name: str
    """Its name in the study (and for ``--fixed NAME=VALUE``)."""
    choices: tuple[Any, ...] = ()
    """Categorical choices; empty for a float range."""
    low: float = 0.0
    """Lower end of a float range."""
    high: float = 0.0
    """Upper end of a float range."""
    log: bool = False
    """Sample the float range log-uniformly."""
    keys: tuple[str, ...] = ()
    """The preset keys it decides (default: its name); a --hyperparams file setting them all fixes them."""
    only_if: tuple[str, Any] | None = None
    """(name, value): sampled only when that earlier parameter (or the --hyperparams key) has that value."""

    @property
    def preset_keys(self) -> tuple[str, ...]:
        return self.keys or (self.name,)

    def left_to(self, given: dict[str, Any]) -> bool:
        """Whether a --hyperparams entry ``given`` leaves this parameter to the sampler (it sets not all its keys)."""
        return not set(self.preset_keys) <= set(given)

    def holds(self, value: Any) -> bool:
        """Whether ``value`` is one of the choices, or within the float range."""
        if self.choices:
            return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in self.choices)
        return isinstance(value, int | float) and not isinstance(value, bool) and self.low <= value <= self.high

    def suggest(self, trial: Trial) -> Any:
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


# Parameters that become entries of policy_kwargs (net_width: every layer of the preset's net_arch, keeping its
# layout, e.g. one 256-wide layer per head; two layers where the preset has none).
POLICY_KWARGS = {"net_width": "net_arch", "log_std_init": "log_std_init", "squash_output": "squash_output",
                 "lstm_hidden_size": "lstm_hidden_size"}  # fmt: skip
POLICY_KWARGS_KEY = {key: name for name, key in POLICY_KWARGS.items()}
"""policy_kwargs entry -> parameter name."""
GAMMAS = (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)

WRAPPER = (
    Param("frame_skip", (1, 2, 4)),
    Param("latent_history", (1, 2, 4)),
    Param("include_action", (False, True)),
)
GSDE = (
    Param("use_sde", (False, True)),
    Param("log_std_init", low=-4.0, high=1.0, keys=("policy_kwargs",)),
)
PPO = (
    Param("learning_rate", low=1e-5, high=3e-3, log=True),
    Param("lr_schedule", ("constant", "linear"), keys=("learning_rate",)),
    Param("n_steps", (64, 128, 256, 512, 1024, 2048)),
    Param("batch_size", (32, 64, 128, 256, 512)),
    Param("n_epochs", (1, 5, 10, 20)),
    Param("gamma", GAMMAS),
    Param("gae_lambda", (0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0)),
    Param("clip_range", (0.1, 0.2, 0.3, 0.4)),
    Param("ent_coef", low=1e-8, high=0.1, log=True),
    Param("net_width", (64, 128, 256), keys=("policy_kwargs",)),
)
PPO_GSDE = (*GSDE, Param("squash_output", (False, True), keys=("policy_kwargs",), only_if=("use_sde", True)))
OFF_POLICY = (
    Param("learning_rate", low=1e-5, high=1e-2, log=True),
    Param("batch_size", (64, 128, 256, 512)),
    Param("tau", (0.001, 0.005, 0.01, 0.02, 0.05)),
    Param("gamma", GAMMAS),
    Param("train_freq", (1, 4, 8, 16, 32), keys=("train_freq", "gradient_steps")),
    Param("learning_starts", (0, 1000, 10000)),
    Param("net_width", (64, 128, 256, 400), keys=("policy_kwargs",)),
)
LSTM = Param("lstm_hidden_size", (32, 64, 128, 256), keys=("policy_kwargs",))
SPACES: dict[str, tuple[tuple[Param, ...], tuple[Param, ...]]] = {
    "ppo": (PPO, PPO_GSDE),
    "recurrentppo": ((*PPO, LSTM), PPO_GSDE),
    "sac": (OFF_POLICY, GSDE),
    "tqc": (OFF_POLICY, GSDE),
}
"""Per tunable algorithm: its parameters, and those sampled only for continuous actions (after the wrapper's)."""


@dataclass(frozen=True)
class SearchSpace:
    """The parameters one algorithm's trials sample, in sampling order."""

    algo: str
    """The algorithm's name (``agents.algorithms``)."""
    params: tuple[Param, ...]
    """Sampled in this order; ``only_if`` refers to an earlier one."""

    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def restrict(self, name: str, keep: Callable[[Any], bool]) -> SearchSpace:
        """This space with only the choices of ``name`` that ``keep`` accepts (none left: the param is dropped)."""
        choices = tuple(c for c in self.param(name).choices if keep(c))
        narrowed = [dataclasses.replace(p, choices=choices) if p.name == name else p for p in self.params]
        return dataclasses.replace(self, params=tuple(p for p in narrowed if p.name != name or choices))

    def sample(self, trial: Trial, fixed: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
        """Values of one trial: ``fixed`` ones as they are, the others sampled, except those whose preset keys
        ``given`` (a --hyperparams entry) all sets; parameters whose ``only_if`` does not hold are left out."""
        values: dict[str, Any] = {}
        for p in self.params:
            if p.only_if is not None:
                name, wanted = p.only_if
                if {**given, **values}.get(name) != wanted:
                    continue
            if p.name in fixed:
                values[p.name] = fixed[p.name]
            elif p.left_to(given):
                values[p.name] = p.suggest(trial)
        return values

    def values_of(self, preset: dict[str, Any]) -> dict[str, Any]:
        """The values of a preset entry (YAML form) that this space can sample: :meth:`to_preset` read back.

        A value outside its parameter's choices or range (``ent_coef: 0`` under a log-uniform range,
        a ``net_arch`` whose layers differ in width) is left out.

        >>> preset = {"learning_rate": "lin_3.0e-4", "n_steps": 256, "ent_coef": 0.0,
        ...           "policy_kwargs": {"net_arch": {"pi": [64], "vf": [64]}, "log_std_init": -2}}
        >>> search_space("ppo", continuous=True).values_of(preset)
        {'learning_rate': 0.0003, 'lr_schedule': 'linear', 'n_steps': 256, 'net_width': 64, 'log_std_init': -2}
        """
        values: dict[str, Any] = {}
        policy_kwargs = {POLICY_KWARGS_KEY.get(k, k): v for k, v in preset.get("policy_kwargs", {}).items()}
        for p in self.params:
            if p.name == "lr_schedule" and "learning_rate" in preset:
                value = "linear" if str(preset["learning_rate"]).startswith("lin_") else "constant"
            elif p.name == "learning_rate" and "learning_rate" in preset:
                value = float(str(preset["learning_rate"]).removeprefix("lin_"))
            elif p.name == "net_width":
                value = width_of(policy_kwargs.get("net_width"))
            elif p.name == "train_freq" and preset.get("train_freq") != preset.get("gradient_steps"):
                value = None
            else:
                value = policy_kwargs.get(p.name) if p.name in POLICY_KWARGS else preset.get(p.name)
            if value is not None and p.holds(value):
                values[p.name] = value
        return values

    def to_preset(self, values: dict[str, Any], *, n_envs: int, net_arch: Any = None) -> dict[str, Any]:
        """Preset keys (YAML form) for ``values``; on-policy batches are capped at one rollout (n_steps x n_envs).

        ``net_width`` sets every layer of ``net_arch``, the preset's layout (None: two layers).
        """
        preset: dict[str, Any] = {}
        policy_kwargs: dict[str, Any] = {}
        for name, value in values.items():
            if name == "lr_schedule":
                continue
            if name in POLICY_KWARGS:
                policy_kwargs[POLICY_KWARGS[name]] = (
                    with_width(net_arch or [0, 0], value) if name == "net_width" else value
                )
            elif name == "train_freq":
                preset.update(train_freq=value, gradient_steps=value)
            else:
                preset[name] = value
        if values.get("lr_schedule") == "linear" and "learning_rate" in preset:
            preset["learning_rate"] = f"lin_{preset['learning_rate']}"
        if "n_steps" in preset and "batch_size" in preset:
            preset["batch_size"] = min(preset["batch_size"], preset["n_steps"] * n_envs)
        if policy_kwargs:
            preset["policy_kwargs"] = policy_kwargs
        return preset


def with_width(net_arch: list[int] | dict[str, list[int]], width: int) -> list[int] | dict[str, list[int]]:
    """``net_arch`` (SB3's: a list of layer widths, or one list per head) with every layer ``width`` wide.

    >>> with_width({"pi": [256], "vf": [256]}, 64)
    {'pi': [64], 'vf': [64]}
    """
    if isinstance(net_arch, dict):
        return {head: [width] * len(layers) for head, layers in net_arch.items()}
    return [width] * len(net_arch)


def width_of(net_arch: Any) -> int | None:
    """The width all layers of ``net_arch`` share; None when they differ, or it is no net_arch.

    >>> width_of({"pi": [256], "vf": [256]}), width_of([64, 32])
    (256, None)
    """
    if isinstance(net_arch, dict):
        net_arch = [width for layers in net_arch.values() for width in layers]
    if not isinstance(net_arch, list) or not net_arch or len(set(net_arch)) != 1:
        return None
    return net_arch[0]


def search_space(algo: str, *, continuous: bool) -> SearchSpace:
    """The space of ``algo`` (one of :data:`SPACES`); gSDE and ``log_std_init`` only for ``continuous`` actions.

    >>> search_space("sac", continuous=True).param("train_freq").preset_keys
    ('train_freq', 'gradient_steps')
    """
    if algo not in SPACES:
        raise ValueError(f"worldmodel tune has search spaces for {', '.join(SPACES)}, not {algo!r}")
    params, continuous_only = SPACES[algo]
    return SearchSpace(algo, WRAPPER + params + (continuous_only if continuous else ()))

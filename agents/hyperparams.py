"""rl-zoo-style hyperparameters: shipped presets, user YAML files, and their SB3 form.

A preset file ``agents/presets/<algo>.yaml`` maps env ids to hyperparameters, as
rl-baselines3-zoo's ``hyperparams/<algo>.yml`` does; a ``default`` entry applies to
every env and env entries override it. Special keys: ``policy``, ``n_timesteps``,
``n_envs``, ``normalize`` (bool or VecNormalize keywords), ``frame_stack``,
``frame_skip``, ``latent_history``, ``include_action``, ``env_kwargs``, ``frame_spec``
(pixels only) and ``pixels`` (a mapping of overrides used with ``--pixels``), so a preset
carries the whole recipe, observation included. Every other key goes to the algorithm's
constructor; ``lin_<x>`` values become linear schedules (``x`` down to 0), ``cos_<x>`` cosine
ones (``x`` down to 0 along half a cosine), and ``policy_kwargs`` may
be a mapping or the zoo's ``"dict(...)"`` string (parsed without ``eval``).

>>> hp = resolve_hyperparams("ppo", "worldmodel/DotTarget-v0")
>>> hp.policy, hp.n_envs > 0
('MlpPolicy', True)
>>> resolve_hyperparams("ppo", "worldmodel/DotTarget-v0", pixels=True).policy
'CnnPolicy'
>>> algo_kwargs_for_sb3({"learning_rate": "lin_1e-3"})["learning_rate"](0.5)
0.0005
>>> round(algo_kwargs_for_sb3({"learning_rate": "cos_1e-3"})["learning_rate"](0.75), 7)
0.0008536
"""

from __future__ import annotations

import ast
import collections.abc
import copy
import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from gymnasium import spaces
from stable_baselines3.common.utils import LinearSchedule
from torch import nn

from agents.algorithms import AlgorithmSpec, get_algorithm

PRESETS_DIR = Path(__file__).parent / "presets"
DEFAULT_KEY = "default"
ATARI_KEY = "atari"
SPECIAL_KEYS = {
    "policy",
    "n_timesteps",
    "n_envs",
    "normalize",
    "frame_stack",
    "frame_skip",
    "latent_history",
    "include_action",
    "env_kwargs",
    "frame_spec",
}
# The rl-zoo CarRacing pixel recipe: frame skip 2, 64x64 grayscale, 2 stacked frames, CnnPolicy.
PIXEL_DEFAULTS: dict[str, Any] = {
    "policy": "CnnPolicy",
    "frame_stack": 2,
    "frame_skip": 2,
    "frame_spec": {"height": 64, "width": 64, "grayscale": True},
}
REPLAY_BUDGET_GIB = 24.0
# Evaluation envs are seeded from seed + EVAL_SEED_OFFSET, so they never replay a training seed.
EVAL_SEED_OFFSET = 1_000_000


@dataclass(frozen=True)
class Hyperparams:
    """Resolved hyperparameters for one algorithm on one env (JSON-serialisable)."""

    policy: str
    """SB3 policy name (``MlpPolicy`` on latents, ``CnnPolicy`` on pixels)."""
    n_timesteps: int
    """Default training budget in agent steps."""
    n_envs: int
    """Parallel environments."""
    normalize: dict[str, Any] | None
    """VecNormalize keywords, or None for no normalisation."""
    frame_stack: int = 1
    """Frames stacked by VecFrameStack (pixels only)."""
    frame_skip: int | None = None
    """Overrides the env preset's frame skip; None keeps it."""
    latent_history: int = 1
    """Latest k latents concatenated into each observation (``--encoder finetune``: k frames stacked)."""
    include_action: bool = False
    """Append the previous action to each latent in the history."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra ``gym.make`` keywords."""
    frame_spec: dict[str, Any] | None = None
    """FrameSpec fields for pixel observations (pixels only)."""
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    """Constructor keywords of the algorithm, in YAML form (schedules as ``lin_<x>`` or ``cos_<x>`` strings)."""

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.__dict__)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key == "pixels" and isinstance(value, dict):
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    return merged


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    """Read an rl-zoo-style YAML file: a mapping of env ids (or ``default``) to mappings."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"hyperparameter file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ValueError(
            f"hyperparameter file {path} is not valid YAML{at} ({problem}); fix it, e.g. "
            "'default: {n_envs: 8, learning_rate: 3.0e-4}'"
        ) from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(
            f"{path} must map env ids (or 'default') to hyperparameter mappings, as rl-zoo's "
            "hyperparams/<algo>.yml files do, e.g. 'CarRacing-v3: {n_envs: 8, learning_rate: 3.0e-4}'"
        )
    return data


def env_family(env_id: str) -> str | None:
    """The family key whose entry applies to every env of a kind, as in rl-zoo's files: ``atari`` for ALE ids.

    >>> env_family("ALE/Pong-v5"), env_family("CarRacing-v3")
    ('atari', None)
    """
    return ATARI_KEY if env_id.startswith("ALE/") else None


def env_entry(data: dict[str, Any], env_id: str) -> dict[str, Any]:
    """The hyperparameters a loaded file gives ``env_id``: its ``default`` entry, its family's over it (``atari``),
    then the env's own."""
    family = env_family(env_id)
    base = _merge(data.get(DEFAULT_KEY, {}), data.get(family, {}) if family else {})
    return _merge(base, data.get(env_id, {}))


def _normalize_kwargs(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        value = ast.literal_eval(value)
    if value is True:
        return {}
    if value is False or value is None:
        return None
    if isinstance(value, dict):
        return dict(value)
    raise ValueError(f"normalize must be true, false or a mapping of VecNormalize keywords, got {value!r}")


def resolve_hyperparams(
    algo: str,
    env_id: str,
    *,
    pixels: bool = False,
    user_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Hyperparams:
    """Merge, in order: pixel defaults, the shipped preset, ``user_file``, then ``overrides``.

    Unknown algorithm keywords are an error naming the valid ones.
    """
    spec = get_algorithm(algo)
    preset_path = PRESETS_DIR / f"{spec.name}.yaml"
    raw = env_entry(load_yaml_file(preset_path), env_id) if preset_path.is_file() else {}
    if user_file is not None:
        raw = _merge(raw, env_entry(load_yaml_file(user_file), env_id))
    pixel_overrides = raw.pop("pixels", {})
    if pixels:
        raw = {**raw, **PIXEL_DEFAULTS, **pixel_overrides}
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if not pixels:
        for key in ("frame_stack", "frame_spec"):
            raw.pop(key, None)
    algo_kwargs = {k: v for k, v in raw.items() if k not in SPECIAL_KEYS}
    check_algo_kwargs(spec, algo_kwargs)
    check_algo_kwarg_types(spec, algo_kwargs, user_file)
    for key, kind in SPECIAL_TYPES.items():
        value = raw.get(key)
        if key == "n_timesteps" and isinstance(value, str) and _is_float(value):
            continue  # YAML 1.1 reads 1e6 and 5.0e4 as strings; the budget converts them
        if value is not None and not _fits(kind, value):
            raise ValueError(_wrong_type(key, value, _describe(kind), user_file))
    return Hyperparams(
        policy=str(raw.get("policy", "MlpPolicy")),
        n_timesteps=int(float(raw.get("n_timesteps", 1_000_000))),
        n_envs=int(raw.get("n_envs", 1)),
        normalize=_normalize_kwargs(raw.get("normalize", False)),
        frame_stack=int(raw.get("frame_stack", 1)),
        frame_skip=None if raw.get("frame_skip") is None else int(raw["frame_skip"]),
        latent_history=int(raw.get("latent_history", 1)),
        include_action=bool(raw.get("include_action", False)),
        env_kwargs=dict(raw.get("env_kwargs") or {}),
        frame_spec=raw.get("frame_spec"),
        algo_kwargs=algo_kwargs,
    )


SPECIAL_TYPES: dict[str, Any] = {
    "policy": str,
    "n_timesteps": float,  # rl-zoo writes budgets as floats (!!float 1e6), or as strings YAML 1.1 reads: 5.0e4
    "n_envs": int,
    "frame_stack": int,
    "frame_skip": int,
    "latent_history": int,
    "include_action": bool,
    "env_kwargs": dict,
    "frame_spec": dict,
}
"""The type each special key takes (besides null); ``normalize`` is checked where it is read."""


def _wrong_type(key: str, value: Any, expected: str, user_file: str | Path | None) -> str:
    where = f"--hyperparams {user_file}" if user_file is not None else "the hyperparameters"
    return f"hyperparameter {key}: {value!r} ({type(value).__name__}) is not {expected}; fix it in {where}"


def _members(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a type annotation: ``int | None`` -> ``(int, NoneType)``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _fits(kind: Any, value: Any) -> bool | None:
    """Whether a YAML ``value`` fits the annotation member ``kind``; None when ``kind`` is not one this checks."""
    origin = typing.get_origin(kind) or kind
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return is_number and float(value).is_integer()
    if kind is float:
        return is_number
    if kind is str:
        return isinstance(value, str)
    if origin is collections.abc.Callable:  # a schedule: lin_<x> or cos_<x> in YAML
        return isinstance(value, str) and value[:4] in ("lin_", "cos_") and _is_float(value[4:])
    if origin in (tuple, list):
        return isinstance(value, list | tuple)
    if origin is dict:
        return isinstance(value, dict | str)  # policy_kwargs may be the zoo's "dict(...)" string
    return None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _describe(kind: Any) -> str:
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if kind in names:
        return names[kind]
    origin = typing.get_origin(kind) or kind
    if origin is collections.abc.Callable:
        return "a schedule ('lin_<x>' or 'cos_<x>')"
    if origin in (tuple, list):
        return "a list"
    return "a mapping" if origin is dict else str(kind)


def check_algo_kwarg_types(
    spec: AlgorithmSpec, algo_kwargs: dict[str, Any], user_file: str | Path | None = None
) -> None:
    """Raise ``ValueError`` for a keyword whose value does not fit the type the algorithm's constructor declares.

    Values are in YAML form (schedules as ``lin_<x>`` strings); annotations this cannot check pass.

    >>> check_algo_kwarg_types(get_algorithm("ppo"), {"n_epochs": 4, "learning_rate": "lin_3e-4"})
    >>> check_algo_kwarg_types(get_algorithm("ppo"), {"n_epochs": "four"})
    Traceback (most recent call last):
    ...
    ValueError: hyperparameter n_epochs: 'four' (str) is not an integer; fix it in the hyperparameters
    """
    params = inspect.signature(spec.load_class().__init__).parameters
    for key, value in algo_kwargs.items():
        annotation = params[key].annotation if key in params else inspect.Parameter.empty
        if annotation is inspect.Parameter.empty:
            continue
        members = _members(annotation)
        verdicts = [_fits(kind, value) for kind in members]
        if any(v is None for v in verdicts) or any(verdicts):
            continue
        raise ValueError(_wrong_type(key, value, " or ".join(_describe(kind) for kind in members), user_file))


def check_algo_kwargs(spec: AlgorithmSpec, algo_kwargs: dict[str, Any]) -> None:
    """Raise ``ValueError`` for keywords the algorithm's constructor does not take."""
    params = set(inspect.signature(spec.load_class().__init__).parameters) - {"self", "policy", "env"}
    unknown = sorted(set(algo_kwargs) - params)
    if unknown:
        raise ValueError(
            f"{spec.name} does not take hyperparameters {unknown}; its keywords are {sorted(params)} "
            f"plus the special keys {sorted(SPECIAL_KEYS)}"
        )


_NN_NAMES = {name: getattr(nn, name) for name in ("ReLU", "Tanh", "GELU", "ELU", "LeakyReLU", "SiLU")}


def _literal(node: ast.AST) -> Any:
    """Evaluate a literal, ``dict(...)`` call or ``nn.<Activation>`` name without ``eval``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    is_nn = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "nn"
    if is_nn and node.attr in _NN_NAMES:
        return _NN_NAMES[node.attr]
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(e) for e in node.elts]
    try:
        return ast.literal_eval(node)
    except ValueError as exc:
        raise ValueError(
            f"cannot read {ast.unparse(node)!r} in policy_kwargs: use literals, dict(...) and "
            f"nn.{{{', '.join(_NN_NAMES)}}}"
        ) from exc


def parse_policy_kwargs(value: str | dict[str, Any]) -> dict[str, Any]:
    """``policy_kwargs`` from a mapping or the zoo's ``"dict(net_arch=[64, 64], activation_fn=nn.Tanh)"``.

    >>> parse_policy_kwargs("dict(net_arch=dict(pi=[64], vf=[64]), activation_fn=nn.Tanh)")["activation_fn"]
    <class 'torch.nn.modules.activation.Tanh'>
    """
    if isinstance(value, dict):
        return {k: _NN_NAMES[v[3:]] if isinstance(v, str) and v[3:] in _NN_NAMES else v for k, v in value.items()}
    parsed = _literal(ast.parse(value, mode="eval").body)
    if not isinstance(parsed, dict):
        raise ValueError(f"policy_kwargs must describe a mapping, got {value!r}")
    return parsed


def policy_kwargs_yaml(value: str | dict[str, Any] | None) -> dict[str, Any]:
    """``policy_kwargs`` as a YAML-safe mapping: the zoo's string read, ``nn`` classes written ``"nn.Name"``.

    :func:`parse_policy_kwargs` reads the result back to the same keywords.

    >>> policy_kwargs_yaml("dict(ortho_init=False, activation_fn=nn.GELU)")
    {'ortho_init': False, 'activation_fn': 'nn.GELU'}
    """
    if value is None:
        return {}
    return {k: f"nn.{v.__name__}" if isinstance(v, type) else v for k, v in parse_policy_kwargs(value).items()}


@dataclass(frozen=True)
class CosineSchedule:
    """``start`` at the beginning of training (progress remaining 1) down to 0 at its end, along half a cosine.

    >>> CosineSchedule(1.0)(1.0), CosineSchedule(1.0)(0.5), CosineSchedule(1.0)(0.0)
    (1.0, 0.5, 0.0)
    """

    start: float

    def __call__(self, progress_remaining: float) -> float:
        return round(self.start * 0.5 * (1.0 - math.cos(math.pi * progress_remaining)), 15)


def _schedule(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        return LinearSchedule(float(value[4:]), 0.0, 1.0)
    if isinstance(value, str) and value.startswith("cos_"):
        return CosineSchedule(float(value[4:]))
    return value


def algo_kwargs_for_sb3(algo_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Turn YAML-form keywords into SB3 objects: schedules, policy_kwargs, tuples for ``train_freq``."""
    out = {key: _schedule(value) for key, value in algo_kwargs.items()}
    if "policy_kwargs" in out:
        out["policy_kwargs"] = parse_policy_kwargs(out["policy_kwargs"])
    if isinstance(out.get("train_freq"), list):
        out["train_freq"] = tuple(out["train_freq"])
    return out


def replay_buffer_bytes(buffer_size: int, observation_space: spaces.Space, action_space: spaces.Space) -> int:
    """Bytes SB3's ReplayBuffer allocates: observations twice (obs, next_obs), actions, rewards, dones.

    >>> replay_buffer_bytes(1000, spaces.Box(0, 255, (64, 64, 1), np.uint8), spaces.Discrete(5))
    8212000
    """
    obs = int(np.prod(observation_space.shape)) * np.dtype(observation_space.dtype).itemsize
    act = int(np.prod(action_space.shape or (1,))) * np.dtype(action_space.dtype or np.float32).itemsize
    return buffer_size * (2 * obs + act + 4 + 4 + 4)


def check_replay_memory(
    algo_kwargs: dict[str, Any],
    spec: AlgorithmSpec,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    budget_gib: float = REPLAY_BUDGET_GIB,
) -> None:
    """Raise ``ValueError`` when an off-policy replay buffer would not fit in ``budget_gib``."""
    if not spec.off_policy:
        return
    default = inspect.signature(spec.load_class().__init__).parameters["buffer_size"].default
    buffer_size = int(algo_kwargs.get("buffer_size", default))
    need = replay_buffer_bytes(buffer_size, observation_space, action_space)
    if need > budget_gib * 2**30:
        per_item = max(1, need // buffer_size)
        fits = int(budget_gib * 2**30 // per_item)
        raise ValueError(
            f"a {spec.name} replay buffer of {buffer_size:,} transitions of {observation_space.shape} observations "
            f"needs {need / 2**30:.1f} GiB, over the {budget_gib:g} GiB budget; set buffer_size to at most "
            f"{fits:,} in --hyperparams (e.g. 'default: {{buffer_size: {min(fits, 100_000)}}}')"
        )

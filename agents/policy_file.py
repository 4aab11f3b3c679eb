"""A trained policy without pickle: ``policy.safetensors`` (weights) and ``policy.json`` (how to rebuild it).

SB3's ``model.zip`` restores spaces, schedules and the policy class with cloudpickle, so
loading a stranger's zip can run any code. :func:`save_policy` writes what inference needs
instead: the policy's ``state_dict`` as safetensors, and a JSON file naming the algorithm and
its policy alias (``MlpPolicy``...), the policy's constructor keywords in JSON form, the
observation and action spaces, and the few algorithm attributes ``predict`` reads.
:func:`load_policy` rebuilds the policy from the algorithm's own policy class (looked up in
the algorithm's fixed ``policy_aliases``; activation functions and features extractors from
the fixed allow-lists :data:`ACTIVATIONS` and :data:`FEATURES_EXTRACTORS`; nothing is
imported by a name read from the file), loads the weights, and returns a
:class:`LoadedPolicy`, whose ``predict`` is SB3's ``BaseAlgorithm.predict``. The optimiser is
neither stored nor used: the policy is built with a constant dummy learning rate.

``policy.json`` keys: ``format``, ``format_version``, ``algorithm``, ``policy`` (alias),
``policy_class`` (its class name, checked), ``policy_kwargs``, ``observation_space``,
``action_space``, ``use_sde``, ``sde_sample_freq``, ``exploration_rate`` (DQN, QR-DQN),
``seed``, ``num_timesteps``, ``weights_sha256`` and ``versions``.

>>> from gymnasium import spaces
>>> space = spaces.Box(-1.0, np.array([1.0, 2.0], np.float32), (2,), np.float32)
>>> space_to_json(space)
{'type': 'Box', 'shape': [2], 'dtype': 'float32', 'low': -1.0, 'high': [1.0, 2.0]}
>>> space_from_json(space_to_json(space)) == space
True
>>> space_to_json(spaces.Box(-np.inf, np.inf, (3,)))["low"]
'-inf'
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from gymnasium import spaces
from safetensors.torch import load_model, save_model
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import CombinedExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.common.utils import get_device, set_random_seed
from torch import nn

from agents.algorithms import ALGORITHMS, AlgorithmSpec, get_algorithm
from agents.encoder_extractor import VAEEncoderExtractor
from worldmodel.common.atomic import atomic_path, write_json_atomic
from worldmodel.common.errors import UserError
from worldmodel.vae.checkpoint import file_sha256

FORMAT = "worldmodel.agents.policy"
FORMAT_VERSION = 1
POLICY_FILE = "policy.json"
WEIGHTS_FILE = "policy.safetensors"

ACTIVATIONS: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (nn.ReLU, nn.Tanh, nn.ELU, nn.LeakyReLU, nn.SELU, nn.SiLU, nn.GELU, nn.Mish, nn.Sigmoid, nn.Softplus,
                nn.Identity)
}  # fmt: skip
"""Activation functions a ``policy.json`` may name."""
FEATURES_EXTRACTORS: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (FlattenExtractor, NatureCNN, CombinedExtractor, VAEEncoderExtractor)
}
"""Features extractors a ``policy.json`` may name (VAEEncoderExtractor: ``--encoder finetune`` runs)."""
CLASS_KEYWORDS = {"activation_fn": ACTIVATIONS, "features_extractor_class": FEATURES_EXTRACTORS}
NOT_STORED = ("observation_space", "action_space", "lr_schedule", "optimizer_class", "optimizer_kwargs")
"""Constructor keywords not in ``policy_kwargs``: the spaces have their own keys; inference steps no optimiser."""
KEPT_ATTRIBUTES = ("share_features_extractor", "shared_lstm", "enable_critic_lstm", "lstm_kwargs")
"""Constructor keywords some SB3 policies leave out of ``_get_constructor_parameters``; read from the policy."""
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
          "float64")  # fmt: skip
NON_FINITE = {"inf": np.inf, "-inf": -np.inf, "nan": np.nan}


class PolicyFileError(UserError, ValueError):
    """A ``policy.json`` or ``policy.safetensors`` that cannot be loaded; the message says why in one line."""


def _dtype(name: Any) -> np.dtype:
    if name not in DTYPES:
        raise PolicyFileError(f"space dtype {name!r} is not one of {', '.join(DTYPES)}")
    return np.dtype(name)


def _number(x: Any) -> float | int | bool | str:
    x = np.asarray(x).item()
    if isinstance(x, float) and not np.isfinite(x):
        return "nan" if np.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _bound(values: np.ndarray) -> Any:
    """A Box bound: one number when every entry is the same, else the flat list (non-finite as strings)."""
    flat = values.ravel()
    if flat.size and (np.all(flat == flat[0]) or np.all(np.isnan(flat.astype(float)))):
        return _number(flat[0])
    return [_number(x) for x in flat]


def _unbound(value: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    def number(x: Any) -> Any:
        if isinstance(x, str):
            if x not in NON_FINITE:
                raise PolicyFileError(f"a Box bound holds {x!r}; only numbers and 'inf', '-inf', 'nan'")
            return NON_FINITE[x]
        return x

    if isinstance(value, list):
        return np.array([number(x) for x in value], dtype=dtype).reshape(shape)
    return np.full(shape, number(value), dtype=dtype)


def space_to_json(space: gym.Space) -> dict[str, Any]:
    """``space`` (Box, Discrete, MultiDiscrete, MultiBinary, or a Dict of those) as JSON-ready values."""
    if isinstance(space, spaces.Box):
        shape = list(space.shape)
        return {"type": "Box", "shape": shape, "dtype": space.dtype.name, "low": _bound(space.low),
                "high": _bound(space.high)}  # fmt: skip
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist(),
                "dtype": space.dtype.name}  # fmt: skip
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": space.n if isinstance(space.n, int) else list(space.n)}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {key: space_to_json(sub) for key, sub in space.spaces.items()}}
    raise ValueError(f"cannot store the space {space} without pickle; supported: Box, Discrete, MultiDiscrete, "
                     "MultiBinary, Dict")  # fmt: skip


def space_from_json(data: dict[str, Any]) -> gym.Space:
    """The space :func:`space_to_json` describes."""
    kind = data.get("type")
    try:
        if kind == "Box":
            shape, dtype = tuple(int(n) for n in data["shape"]), _dtype(data["dtype"])
            low, high = _unbound(data["low"], shape, dtype), _unbound(data["high"], shape, dtype)
            return spaces.Box(low, high, dtype=dtype)
        if kind == "Discrete":
            return spaces.Discrete(int(data["n"]), start=int(data["start"]))
        if kind == "MultiDiscrete":
            return spaces.MultiDiscrete(data["nvec"], dtype=_dtype(data["dtype"]), start=data["start"])
        if kind == "MultiBinary":
            return spaces.MultiBinary(data["n"])
        if kind == "Dict":
            return spaces.Dict({str(key): space_from_json(sub) for key, sub in data["spaces"].items()})
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, PolicyFileError):
            raise
        raise PolicyFileError(f"cannot read the {kind} space {data}: {exc}") from None
    raise PolicyFileError(f"unknown space type {kind!r}; one of Box, Discrete, MultiDiscrete, MultiBinary, Dict")


def _plain(key: str, value: Any) -> Any:
    """``value`` as JSON (tuples become lists), or ValueError naming ``key``."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and np.isfinite(value):
        return value
    if isinstance(value, list | tuple):
        return [_plain(key, v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(f"{key}.{k}", v) for k, v in value.items()}
    raise ValueError(f"policy keyword {key}={value!r} cannot be stored without pickle")


def policy_kwargs_to_json(policy: BasePolicy) -> dict[str, Any]:
    """The constructor keywords that rebuild ``policy``, JSON-ready (see :data:`NOT_STORED`)."""
    params = dict(policy._get_constructor_parameters())
    accepted = _accepted_keywords(type(policy))
    for name in KEPT_ATTRIBUTES:
        if name in accepted and name not in params and hasattr(policy, name):
            params[name] = getattr(policy, name)
    lstm = getattr(policy, "lstm_actor", None)
    if isinstance(lstm, nn.LSTM):  # RecurrentActorCriticPolicy keeps its LSTM sizes only in its modules
        params["lstm_hidden_size"], params["n_lstm_layers"] = lstm.hidden_size, lstm.num_layers
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in NOT_STORED:
            continue
        if key in CLASS_KEYWORDS:
            names = [name for name, cls in CLASS_KEYWORDS[key].items() if cls is value]
            if not names:
                raise ValueError(
                    f"policy keyword {key}={value!r} is not one of {', '.join(CLASS_KEYWORDS[key])}: a pickle-free "
                    "policy file can only name those"
                )
            out[key] = names[0]
        elif key == "features_extractor_kwargs" and params.get("features_extractor_class") is VAEEncoderExtractor:
            out[key] = {k: _plain(f"{key}.{k}", v) for k, v in value.items() if k != "vae"}  # the bundle's VAE
        else:
            out[key] = _plain(key, value)
    return out


def _accepted_keywords(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters)


def policy_alias(spec: AlgorithmSpec, policy: BasePolicy) -> str:
    """The name ``spec``'s algorithm knows ``policy``'s class by (``MlpPolicy``...); ValueError for custom classes."""
    aliases = spec.load_class().policy_aliases
    for name, cls in aliases.items():
        if type(policy) is cls:
            return name
    raise ValueError(
        f"{type(policy).__name__} is not one of {spec.class_name}'s policies ({', '.join(aliases)}); a pickle-free "
        "policy file can only rebuild those"
    )


def algorithm_of(model: BaseAlgorithm) -> AlgorithmSpec:
    """The :data:`~agents.algorithms.ALGORITHMS` entry of ``model``'s class."""
    cls = type(model)
    for spec in ALGORITHMS.values():
        if cls.__name__ == spec.class_name and cls.__module__.split(".")[0] == spec.module:
            return spec
    raise ValueError(f"{cls.__module__}.{cls.__name__} is not one of the algorithms train-agent knows")


def policy_record(model: BaseAlgorithm) -> dict[str, Any]:
    """``policy.json`` of ``model`` but its weights' SHA-256; ValueError naming what cannot be stored without pickle."""
    spec = algorithm_of(model)
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "algorithm": spec.name,
        "policy": policy_alias(spec, model.policy),
        "policy_class": type(model.policy).__name__,
        "policy_kwargs": policy_kwargs_to_json(model.policy),
        "observation_space": space_to_json(model.observation_space),
        "action_space": space_to_json(model.action_space),
        "use_sde": bool(getattr(model, "use_sde", False)),
        "sde_sample_freq": int(getattr(model, "sde_sample_freq", -1)),
        "exploration_rate": float(model.exploration_rate) if hasattr(model, "exploration_rate") else None,
        "seed": None if model.seed is None else int(model.seed),
        "num_timesteps": int(model.num_timesteps),
        "versions": _versions(),
    }
    json.dumps(record, allow_nan=False)  # strict JSON: the spaces write non-finite bounds as strings
    return record


def check_storable(model: BaseAlgorithm) -> None:
    """Raise ValueError now, before training, if ``model``'s policy could not be saved without pickle."""
    policy_record(model)


def save_policy(model: BaseAlgorithm, json_path: Path, weights_path: Path) -> None:
    """Write ``model``'s policy as ``weights_path`` (safetensors) and ``json_path``, each atomically, weights first.

    ``json_path`` records the SHA-256 of ``weights_path``, so files of two saves never load together.
    """
    record = policy_record(model)
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION)}
    with atomic_path(weights_path) as tmp:
        save_model(model.policy, str(tmp), metadata=metadata)
    record["weights_sha256"] = file_sha256(weights_path)
    write_json_atomic(json_path, record)


def _versions() -> dict[str, str]:
    versions = {"stable_baselines3": stable_baselines3.__version__, "torch": torch.__version__}
    try:
        import sb3_contrib

        versions["sb3_contrib"] = sb3_contrib.__version__
    except ImportError:
        pass
    return versions


def read_policy_json(path: Path) -> dict[str, Any]:
    """``path`` parsed and checked for format and version."""
    restore = (
        f"restore it and its weights from the original run directory, or write both again from the run's SB3 zip "
        f"with `python -m agents.bundle convert {Path(path).parent}` (trusted runs only)"
    )
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        detail = f"truncated or corrupt: {exc}"
        raise PolicyFileError(f"{path} is not a readable policy file ({detail}); {restore}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise PolicyFileError(f"{path} is not a worldmodel policy file (format {FORMAT!r})")
    if record.get("format_version") != FORMAT_VERSION:
        raise PolicyFileError(
            f"{path} has policy format version {record.get('format_version')!r}; this worldmodel reads version "
            f"{FORMAT_VERSION}. Upgrade worldmodel"
        )
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        raise PolicyFileError(f"{path} lacks {', '.join(map(repr, missing))} (edited or cut short?); {restore}")
    return record


RECORD_KEYS = ("algorithm", "policy", "policy_class", "policy_kwargs", "observation_space", "action_space")
"""What every policy file holds besides its format (``weights_sha256`` is checked against the weights)."""


def policy_kwargs_from_json(path: Path, kwargs: dict[str, Any], vae: Path | None) -> dict[str, Any]:
    """Constructor keywords from their JSON form: classes from the allow-lists, the bundle's ``vae`` for the
    fine-tuned encoder's extractor."""
    out = dict(kwargs)
    for key, allowed in CLASS_KEYWORDS.items():
        if key in out:
            if out[key] not in allowed:
                raise PolicyFileError(
                    f"{path} names {key} {out[key]!r}, which is not one of {', '.join(allowed)}; refusing to load it"
                )
            out[key] = allowed[out[key]]
    if out.get("features_extractor_class") is VAEEncoderExtractor:
        if vae is None:
            raise PolicyFileError(f"{path} has a fine-tuned VAE encoder, but no VAE file was given to rebuild it")
        out["features_extractor_kwargs"] = {**out.get("features_extractor_kwargs", {}), "vae": str(vae)}
    return out


def _no_learning(_progress_remaining: float) -> float:
    """The constant learning rate policies are built with here: inference never steps their optimiser."""
    return 0.0


@dataclass
class LoadedPolicy:
    """A policy rebuilt from its policy file: SB3's ``predict`` without the algorithm around it."""

    policy: BasePolicy
    algorithm: AlgorithmSpec
    observation_space: gym.Space
    action_space: gym.Space
    device: torch.device
    use_sde: bool
    sde_sample_freq: int
    exploration_rate: float | None
    """Epsilon of DQN and QR-DQN's sampled actions (their ``predict`` is epsilon-greedy); None for the others."""
    seed: int | None
    num_timesteps: int

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """``(actions, state)`` as the algorithm's ``predict`` gives them (LSTM state for recurrent policies)."""
        if self.exploration_rate is not None and not deterministic and np.random.rand() < self.exploration_rate:
            if self.policy.is_vectorized_observation(observation):
                first = observation[next(iter(observation))] if isinstance(observation, dict) else observation
                return np.array([self.action_space.sample() for _ in range(first.shape[0])]), state
            return np.array(self.action_space.sample()), state
        return self.policy.predict(observation, state, episode_start, deterministic)


def load_policy(json_path: Path, weights_path: Path, device: str = "auto", *, vae: Path | None = None) -> LoadedPolicy:
    """Rebuild the policy of ``json_path`` and load ``weights_path`` into it; never unpickles.

    ``vae``: the VAE file a fine-tuned encoder's extractor is built from before its weights are loaded.
    As SB3's ``load`` does, Python, NumPy and torch are seeded with the training seed (so sampled
    actions are reproducible) and a gSDE policy draws its exploration noise.
    """
    record = read_policy_json(json_path)
    try:
        spec = get_algorithm(str(record["algorithm"]))
    except ValueError as exc:
        raise PolicyFileError(f"{json_path}: {exc}") from None
    aliases = spec.load_class().policy_aliases
    alias = record.get("policy")
    if alias not in aliases:
        raise PolicyFileError(
            f"{json_path} names the policy {alias!r}, which is not one of {spec.class_name}'s policies "
            f"({', '.join(aliases)}); refusing to load it"
        )
    policy_cls = aliases[alias]
    if record.get("policy_class") != policy_cls.__name__:
        raise PolicyFileError(
            f"{json_path} says {alias} is {record.get('policy_class')!r}, but {spec.class_name}'s {alias} is "
            f"{policy_cls.__name__}; refusing to load it"
        )
    if not weights_path.is_file():
        raise PolicyFileError(f"{weights_path} is missing: the weights of {json_path}")
    actual = file_sha256(weights_path)
    if actual != record.get("weights_sha256"):
        raise PolicyFileError(
            f"{weights_path} is not the weights file {json_path} was written with (SHA-256 {actual[:12]}...); "
            "restore both files from the same run"
        )
    observation_space = space_from_json(record["observation_space"])
    action_space = space_from_json(record["action_space"])
    kwargs = policy_kwargs_from_json(json_path, record["policy_kwargs"], vae)
    torch_device = get_device(device)
    seed = record.get("seed")
    if seed is not None:  # SB3's BaseAlgorithm.set_random_seed, which its load calls before building the policy
        set_random_seed(int(seed), using_cuda=torch_device.type == "cuda")
        action_space.seed(int(seed))
    try:
        policy = policy_cls(observation_space, action_space, _no_learning, **kwargs)
        load_model(policy, weights_path, strict=True)
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
        if isinstance(exc, PolicyFileError):
            raise
        reason = " ".join(str(exc).split())
        raise PolicyFileError(f"cannot rebuild the policy of {json_path}: {reason}") from None
    policy = policy.to(torch_device)
    use_sde = bool(record.get("use_sde", False))
    if use_sde:
        policy.reset_noise()
    policy.set_training_mode(False)
    rate = record.get("exploration_rate")
    return LoadedPolicy(
        policy=policy,
        algorithm=spec,
        observation_space=observation_space,
        action_space=action_space,
        device=torch_device,
        use_sde=use_sde,
        sde_sample_freq=int(record.get("sde_sample_freq", -1)),
        exploration_rate=None if rate is None else float(rate),
        seed=None if seed is None else int(seed),
        num_timesteps=int(record.get("num_timesteps", 0)),
    )

"""The vec-env stacks agents train and are evaluated on, rebuilt identically from a :class:`StackConfig`.

Latents: ``make_env -> Monitor -> FrameSpecObservation(vae spec)`` per env, then
``VecLatentObservation`` (one batched encoder pass in the main process, latent
history) and optionally ``VecNormalize``.

Memory (``memory=True``): as latents, with ``VecMemoryObservation`` (observations
``[z_t, h_t]`` from the run's memory model) in place of ``VecLatentObservation``.

Fine-tuned encoder (``encoder="finetune"``): ``make_env -> Monitor ->
FrameSpecObservation(vae spec)`` per env, then ``VecFrameStack(latent_history)`` on the
uint8 frames (channels stacked), an explicit ``VecTransposeImage`` (so SB3 inserts
none) and optionally ``VecNormalize`` of rewards only; the policy's
:class:`agents.encoder_extractor.VAEEncoderExtractor` encodes each frame.

With ``backend="envpool"`` one :class:`envs.envpool.vec_env.EnvPoolVecEnv` replaces the
per-env ``make_env -> Monitor -> FrameSpecObservation`` stack (same presets, frame spec applied
to the batch, Monitor's episode records); videos use one EnvPool env per ``DummyVecEnv`` slot.

Pixels (the rl-zoo CarRacing recipe): ``make_env`` with frame skip 2 ``-> Monitor ->
FrameSpecObservation`` (64x64 grayscale), then ``VecFrameStack(2)``,
``VecTransposeImage`` and optionally ``VecNormalize``; the policy is ``CnnPolicy``.

>>> stack = StackConfig(env_id="worldmodel/DotTarget-v0", pixels=True, frame_spec={"height": 32, "width": 32})
>>> venv = build_vec_env(stack, n_envs=2, seed=0)
>>> venv.observation_space.shape
(3, 32, 32)
>>> venv.close()
"""

from __future__ import annotations

import dataclasses
import functools
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecFrameStack,
    VecNormalize,
    VecTransposeImage,
)

from agents.encoder_extractor import ENCODER_MODES
from envs.config import EnvConfig, env_preset
from envs.envpool.vec_env import EnvPoolVecEnv
from envs.episode_seeds import EpisodeSeeds
from envs.factory import make_env, make_env_fn
from envs.frame_wrapper import FrameSpecObservation
from envs.latent.sb3_vec_env import VecLatentObservation
from envs.latent.spec import LatentSpec
from envs.memory.sb3_vec_env import VecMemoryObservation
from worldmodel.frames import FrameSpec
from worldmodel.vae.checkpoint import VAECheckpoint, load_vae

T = TypeVar("T")

STACK_PRECISIONS = ("fp32", "bf16")
"""Encoder precisions a stack records: ``auto`` is resolved before a run starts (see ``agents.train.resolve``)."""


@dataclass(frozen=True)
class StackConfig:
    """Everything that decides the observation an agent sees; stored in the bundle's ``config.json``."""

    env_id: str
    """Gymnasium env id."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra ``gym.make`` keywords."""
    frame_skip: int | None = None
    """Overrides the env preset's frame skip; None keeps it."""
    pixels: bool = False
    """Train on stacked pixel frames (CnnPolicy) instead of VAE latents."""
    frame_spec: dict[str, Any] | None = None
    """FrameSpec fields of pixel observations (pixels only; latents use the VAE's spec)."""
    frame_stack: int = 1
    """Frames stacked by VecFrameStack (pixels only)."""
    latent: str = "mean"
    """``mean`` or ``sample``: which latent the encoder hands the policy."""
    latent_history: int = 1
    """Latest k latents concatenated into each observation (finetune: k frames stacked)."""
    include_action: bool = False
    """Append the previous action to each latent in the history."""
    standardize_latents: bool = False
    """Standardise latents with the VAE's training-set statistics."""
    drop_inactive: bool = False
    """Drop latent dimensions the VAE's statistics mark inactive."""
    normalize: dict[str, Any] | None = None
    """VecNormalize keywords, or None for no VecNormalize."""
    encoder: str = "frozen"
    """``frozen``: latents from the VAE in a wrapper; ``finetune``: frames, encoded inside the policy."""
    backend: str = "gymnasium"
    """Env backend: ``gymnasium`` or ``envpool`` (C++ CarRacing-v3 and Atari, batched; see envs.envpool.env)."""
    memory: bool = False
    """Observations ``[z_t, h_t]`` with the hidden state of the bundle's memory model (VecMemoryObservation)."""
    encoder_precision: str = "fp32"
    """Precision of the frozen encoder's forward pass, ``fp32`` or ``bf16`` (latents and memory stacks only;
    bundles from before the option encoded in fp32)."""

    def __post_init__(self) -> None:
        if self.encoder not in ENCODER_MODES:
            raise ValueError(f"encoder must be one of {ENCODER_MODES}, got {self.encoder!r}")
        if self.encoder_precision not in STACK_PRECISIONS:
            raise ValueError(f"encoder_precision must be one of {STACK_PRECISIONS}, got {self.encoder_precision!r}")
        if self.encoder_precision != "fp32":
            _refuse(f"--encoder-precision {self.encoder_precision}", "drop it (it sets the frozen VAE encoder's)", {
                "--pixels (no VAE encoder)": self.pixels,
                "--encoder finetune (the policy's encoder trains in fp32)": self.encoder == "finetune",
            })  # fmt: skip
        if self.encoder == "finetune":
            _refuse("--encoder finetune", "drop it, or use --encoder frozen", {
                "--pixels (the CNN baseline; finetune already trains from frames)": self.pixels,
                "--latent sample (the fine-tuned encoder hands the policy the mean)": self.latent != "mean",
                "--include-action": self.include_action,
                "--memory": self.memory,
            })  # fmt: skip
        if self.memory:
            _refuse("--memory", "drop it", {
                "--pixels": self.pixels,
                "--latent sample (the memory model reads the means)": self.latent != "mean",
                "--latent-history (the hidden state holds the history)": self.latent_history != 1,
                "--include-action (the hidden state has read the actions)": self.include_action,
                "--standardize-latents or --drop-inactive (the memory model reads raw latents)":
                    self.standardize_latents or self.drop_inactive,
            })  # fmt: skip

    @property
    def mode(self) -> str:
        """``pixels``, ``latents`` (frozen encoder), ``memory`` or ``finetune``: how runs and results are labelled."""
        if self.pixels:
            return "pixels"
        if self.memory:
            return "memory"
        return "finetune" if self.encoder == "finetune" else "latents"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackConfig:
        return cls(**data)

    def env_config(self) -> EnvConfig:
        """The factory's preset for ``env_id`` with this stack's env keywords and frame skip."""
        config = env_preset(self.env_id)
        changes: dict[str, Any] = {"env_kwargs": {**config.env_kwargs, **self.env_kwargs}, "backend": self.backend}
        if self.frame_skip is not None:
            changes["frame_skip"] = self.frame_skip
        return dataclasses.replace(config, **changes)

    def pixel_frame_spec(self) -> FrameSpec:
        return FrameSpec.from_dict(self.frame_spec or {})


def _refuse(option: str, fix: str, unsupported: dict[str, bool]) -> None:
    named = [name for name, used in unsupported.items() if used]
    if named:
        raise ValueError(f"{option} cannot be combined with {', '.join(named)}; {fix}")


class FrameTap(gym.Wrapper):
    """Keeps the latest raw frame in ``last_frame`` (read with ``VecEnv.get_attr``) for videos."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.last_frame: np.ndarray | None = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.last_frame = obs
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.last_frame = obs
        return obs, reward, terminated, truncated, info


def _wrapped_env(env_fn, frame_spec: FrameSpec, tap: bool) -> gym.Env:
    env = Monitor(EpisodeSeeds(env_fn()))  # evaluations seed each episode through it
    if tap:
        env = FrameTap(env)
    return FrameSpecObservation(env, frame_spec)


def _worker_env(env_fn: Callable[[], gym.Env]) -> gym.Env:
    """``env_fn()`` in a ``SubprocVecEnv`` worker that leaves SIGINT and SIGTERM to the main process: Ctrl-C reaches
    the whole process group, and a worker dead of it would break the step the main process needs to reach its
    resume checkpoint (it closes its workers afterwards; they also exit when it dies)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return env_fn()


def check_env_frames(env_config: EnvConfig, frame_spec: FrameSpec, source: str) -> gym.spaces.Space:
    """Make one env here, check its frames suit ``frame_spec``, and return its action space."""
    env = make_env(env_config)
    try:
        frame_spec.check_source(env.observation_space.shape)
    except ValueError as exc:
        raise ValueError(
            f"{source} expects frames the env {env_config.env_id} cannot provide "
            f"(its frames are {env.observation_space.shape}): {exc}. Use a VAE trained on frames of this env "
            "(collect with `worldmodel collect` and train with `worldmodel train-vae`)"
        ) from exc
    finally:
        env.close()
    return env.action_space


def load_stack_vae(vae: str | Path | VAECheckpoint | None) -> VAECheckpoint:
    """Load the VAE a latent stack needs; a missing one is an error that says how to get one."""
    if vae is None:
        raise ValueError(
            "training on latents needs --vae VAE_CHECKPOINT (a .safetensors file written by "
            "`worldmodel train-vae`); or pass --pixels to train the pixel baseline"
        )
    if isinstance(vae, VAECheckpoint):
        return vae
    if not Path(vae).is_file():
        raise FileNotFoundError(
            f"VAE checkpoint {vae} does not exist; train one with `worldmodel train-vae` or fix the --vae path"
        )
    return load_vae(vae)


def check_stack(
    stack: StackConfig, vae: str | Path | VAECheckpoint | None = None
) -> tuple[VAECheckpoint | None, gym.spaces.Space]:
    """Check that ``stack`` can be built, before anything is built or written; returns its VAE and action space.

    The VAE (latent stacks) must load, one env made here must provide frames its frame spec
    can use, and a fine-tuned encoder's stacked frames must still read as channels-last.
    The VAE is None for pixel stacks.
    """
    if stack.pixels:
        checkpoint, frame_spec, source = None, stack.pixel_frame_spec(), "the pixel frame spec"
    else:
        checkpoint = load_stack_vae(vae)
        frame_spec, source = checkpoint.frame_spec, f"the VAE {checkpoint.path or ''}".rstrip()
    action_space = check_env_frames(stack.env_config(), frame_spec, source)
    channels = stack.latent_history * frame_spec.channels
    if stack.encoder == "finetune" and channels >= min(frame_spec.height, frame_spec.width):
        raise ValueError(
            f"--latent-history {stack.latent_history} stacks {channels} channels of "
            f"{frame_spec.height}x{frame_spec.width} frames, which SB3 would take for channels-first images; "
            "use a shorter history"
        )
    return checkpoint, action_space


def build_vec_env(
    stack: StackConfig,
    *,
    n_envs: int,
    seed: int,
    vae: str | Path | VAECheckpoint | None = None,
    device: str = "auto",
    training: bool = True,
    subproc: bool = False,
    frame_tap: bool = False,
    memory: str | Path | None = None,
) -> VecEnv:
    """Build the stack for ``n_envs`` envs seeded ``seed, seed+1, ...`` at their first reset.

    ``memory``: the memory checkpoint of a ``stack.memory`` stack.

    ``training=False`` gives the evaluation form: VecNormalize frozen and rewards left raw.
    ``frame_tap=True`` keeps each env's raw frame in ``last_frame`` (for videos).
    """
    checkpoint, _ = check_stack(stack, vae)
    frame_spec = stack.pixel_frame_spec() if checkpoint is None else checkpoint.frame_spec
    env_config = stack.env_config()
    venv: VecEnv
    if env_config.backend == "envpool" and not frame_tap:  # one batch stepped in C++ threads
        venv = EnvPoolVecEnv(env_config, n_envs, seed, frame_spec=frame_spec)
    else:  # Gymnasium envs (or one EnvPool env each, for videos), each wrapped in Monitor
        env_fn = functools.partial(_wrapped_env, make_env_fn(env_config), frame_spec, frame_tap)
        if subproc and n_envs > 1:
            venv = SubprocVecEnv([functools.partial(_worker_env, env_fn)] * n_envs)
        else:
            venv = DummyVecEnv([env_fn] * n_envs)
    venv.seed(seed)
    venv.action_space.seed(seed)
    if stack.pixels:
        if stack.frame_stack > 1:
            venv = VecFrameStack(venv, n_stack=stack.frame_stack)
        venv = VecTransposeImage(venv)
    elif stack.encoder == "finetune":
        if stack.latent_history > 1:
            venv = VecFrameStack(venv, n_stack=stack.latent_history, channels_order="last")
        venv = VecTransposeImage(venv)
    elif stack.memory:
        if memory is None:
            raise ValueError("a memory stack needs the memory checkpoint (`worldmodel train-agent --memory CKPT`)")
        venv = VecMemoryObservation(
            venv, LatentSpec(checkpoint, device=device, precision=stack.encoder_precision), memory
        )
    else:
        spec = LatentSpec(
            checkpoint,
            device=device,
            latent=stack.latent,
            history=stack.latent_history,
            include_action=stack.include_action,
            normalize=stack.standardize_latents,
            drop_inactive=stack.drop_inactive,
            precision=stack.encoder_precision,
        )
        venv = VecLatentObservation(venv, spec)
    if stack.normalize is not None:
        kwargs = dict(stack.normalize)
        if not training:
            kwargs["norm_reward"] = False
        venv = VecNormalize(venv, training=training, **kwargs)
    return venv


def find_vec_wrapper(venv: VecEnv, cls: type[T]) -> T | None:
    """The outermost layer of ``venv`` that is a ``cls``, if any."""
    while True:
        if isinstance(venv, cls):
            return venv
        if not hasattr(venv, "venv"):
            return None
        venv = venv.venv


def find_vec_normalize(venv: VecEnv) -> VecNormalize | None:
    """The VecNormalize layer of ``venv``, if any."""
    return find_vec_wrapper(venv, VecNormalize)

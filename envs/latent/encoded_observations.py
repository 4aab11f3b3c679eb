"""Frames of ``num_envs`` envs to latent observations: all the latent wrappers' logic, in one place.

As SB3's ``VecFrameStack`` hands its work to ``StackedObservations``, the latent
wrappers (one Gymnasium env, ``gymnasium.vector``, SB3 ``VecEnv``, and the memory
wrappers built on them) hand theirs to :class:`EncodedObservations`: it checks the input
space, loads the encoder from a :class:`~envs.latent.spec.LatentSpec`, declares the
observation space and encodes each step's frames, the frames of finished episodes
included, in one forward pass. The wrappers only adapt their API's reset/step.

:class:`FrameLatents` is its checked ``frames -> latents`` step (raw frames, or frames
already preprocessed by :class:`envs.frame_wrapper.FrameSpecObservation` with the
checkpoint's spec).

>>> import numpy as np
>>> from gymnasium import spaces
>>> from envs.latent.spec import LatentSpec
>>> from worldmodel.vae.checkpoint import save_untrained_vae
>>> spec = LatentSpec(save_untrained_vae(size=16, latent_dim=4), device="cpu", history=2)
>>> encoded = EncodedObservations(spec, 3, spaces.Box(0, 255, (16, 16, 3), np.uint8), spaces.Discrete(2))
>>> encoded.observation_space
Box(-inf, inf, (8,), float32)
>>> encoded.reset(np.zeros((3, 16, 16, 3), np.uint8)).shape
(3, 8)
>>> obs, final = encoded.step(np.zeros((3, 16, 16, 3), np.uint8), [0, 1, 0], [np.zeros((16, 16, 3), np.uint8)], [1])
>>> obs.shape, final.shape
((3, 8), (1, 8))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from envs.latent.history import LatentHistory
from envs.latent.spec import LatentSpec
from envs.pixels import is_image_space
from worldmodel.frames import FrameSpec, preprocess_frames
from worldmodel.vae.encoder import LatentEncoder


class ObservationState(Protocol):
    """Builds observations from latents per env: :class:`LatentHistory` or the memory wrappers' ``MemoryState``."""

    observation_space: gym.spaces.Box

    def reset(self, latents: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray: ...

    def push(self, latents: np.ndarray, actions: Any = None) -> np.ndarray: ...


StateFactory = Callable[[LatentEncoder, int, gym.Space], ObservationState]
"""``(encoder, num_envs, single-env action space) -> state``."""


def frame_shape_of(space: gym.spaces.Box) -> tuple[int, int, int]:
    """HWC shape of the frames of an image space (a 2-D grayscale space gains a channel axis)."""
    shape = tuple(space.shape)
    return shape if len(shape) == 3 else (*shape, 1)  # type: ignore[return-value]


class FrameLatents:
    """Checked ``frames -> latents`` step shared by the latent wrappers and ``BundlePolicy``.

    Args:
        encoder: the batched encoder.
        frame_shape: HWC shape of the frames the env emits.
        declared_spec: the ``frame_spec`` the env says it already applied (a
            ``FrameSpecObservation`` inside it), or None when frames are raw.
        source: how to name the env in error messages.
    """

    def __init__(
        self,
        encoder: LatentEncoder,
        frame_shape: tuple[int, int, int],
        declared_spec: FrameSpec | None,
        source: str,
    ) -> None:
        spec = encoder.frame_spec
        checkpoint = encoder.checkpoint.path or "the VAE checkpoint"
        self.encoder = encoder
        self.frame_shape = tuple(frame_shape)
        self.source = source
        self.preprocess = declared_spec is None
        if declared_spec is not None and (declared_spec != spec or self.frame_shape != spec.shape):
            raise ValueError(
                f"{source} already preprocesses its frames with {declared_spec} (frames {self.frame_shape}), "
                f"but {checkpoint} expects frames made by {spec} (shape {spec.shape}); "
                f"use FrameSpecObservation(env, {str(checkpoint)!r}) so both agree"
            )
        if declared_spec is None:
            try:
                spec.check_source(self.frame_shape)
            except ValueError as exc:
                raise ValueError(
                    f"{source} emits frames of shape {self.frame_shape}, which {checkpoint}'s frame spec {spec} "
                    f"cannot turn into the VAE input {spec.shape}: {exc}. "
                    "Use a VAE trained on this env's frames, or an env that emits the frames it was trained on"
                ) from exc

    def __call__(self, frames: Any, generator: Any = None) -> np.ndarray:
        """Latents ``(N, d)`` float32 of frames ``(N, *frame_shape)`` uint8 (2-D frames allowed)."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.shape[1:3] != self.frame_shape[:2]:
            raise ValueError(
                f"{self.source} returned frames of dtype {frames.dtype} and shape {frames.shape[1:]}; "
                f"expected uint8 frames of shape {self.frame_shape} as at construction"
            )
        frames = frames.reshape(len(frames), *self.frame_shape)
        if self.preprocess:
            frames = preprocess_frames(frames, self.encoder.frame_spec)
        return self.encoder.encode(frames, generator)


class EncodedObservations:
    """Observations ``(num_envs, D)`` float32 of ``num_envs`` envs' frames, as a :class:`LatentSpec` says.

    Args:
        spec: the VAE and options.
        num_envs: how many envs step together.
        frame_space: one env's observation space; must hold uint8 HWC (or HW) frames.
        action_space: one env's action space (for ``include_action`` and memory states).
        declared_specs: the frame specs the envs already apply (None for raw frames), one
            per env; they must agree.
        source: how to name the envs in error messages.
        wrapper: how to name the wrapper in error messages.
        state: builds the per-env state from the encoder; by default a :class:`LatentHistory`
            of ``spec.history`` latents (and the previous action with ``spec.include_action``).

    Attributes: ``spec``, ``encoder``, ``frame_latents``, ``state``, ``observation_space``
    (one env's) and ``generator`` (for ``latent="sample"``; see :meth:`seed`).
    """

    def __init__(
        self,
        spec: LatentSpec,
        num_envs: int,
        frame_space: gym.Space,
        action_space: gym.Space,
        declared_specs: Iterable[FrameSpec | None] = (None,),
        source: str = "the env",
        wrapper: str = "the latent wrapper",
        state: StateFactory | None = None,
    ) -> None:
        if not is_image_space(frame_space):
            raise ValueError(
                f"{wrapper} needs uint8 HWC image observations from {source}, got {frame_space}; wrap each "
                "sub-env in envs.PixelObservation (frames from render()) and optionally envs.FrameSpecObservation, "
                f"and put {wrapper} before any VecTransposeImage"
            )
        declared = set(declared_specs)
        if len(declared) > 1:
            raise ValueError(f"{source} apply different frame specs {declared}; use one for all")
        self.spec = spec
        self.num_envs = num_envs
        self.encoder = spec.load_encoder()
        self.frame_latents = FrameLatents(self.encoder, frame_shape_of(frame_space), declared.pop(), source)
        if state is None:
            history_actions = action_space if spec.include_action else None
            self.state: ObservationState = LatentHistory(
                num_envs, self.encoder.latent_dim, spec.history, history_actions
            )
        else:
            self.state = state(self.encoder, num_envs, action_space)
        self.observation_space = self.state.observation_space
        self.generator = self.encoder.make_generator()

    def seed(self, seed: int | None) -> None:
        """Seed the generator of sampled latents (``None`` leaves it as it is)."""
        if seed is not None:
            self.generator.manual_seed(seed)

    def encode(self, frames: Any) -> np.ndarray:
        """Latents ``(N, d)`` of frames ``(N, *frame_shape)``, in one forward pass."""
        return self.frame_latents(frames, self.generator)

    def reset(self, frames: Any, mask: np.ndarray | None = None) -> np.ndarray:
        """Start episodes at ``frames`` ``(num_envs, ...)``: all envs, or those in ``mask``; all observations."""
        return self.state.reset(self.encode(frames), mask)

    def step(
        self,
        frames: Any,
        actions: Any,
        final_frames: Sequence[np.ndarray] = (),
        ended: Sequence[int] | np.ndarray = (),
        restart: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Observations after all envs took ``actions``; ``frames`` and ``final_frames`` go through one forward pass.

        Args:
            frames: this step's frames ``(num_envs, ...)``; for an env reset automatically in
                this step, the first frame of its next episode.
            actions: the actions taken, one per env.
            final_frames: the last frames of the episodes that ended in this step (the
                envs ``ended``), which the actions led to in place of ``frames``.
            ended: the indices of those envs.
            restart: the envs whose next episode starts at this step's frame (their
                history restarts there), or None.

        Returns:
            ``(obs, final_obs)``: the observations ``(num_envs, D)`` and, for ``ended``,
            the observations the actions led to ``(len(ended), D)``.
        """
        n, ended = self.num_envs, np.asarray(ended, dtype=np.intp)
        batch = np.concatenate([frames, np.stack(final_frames)]) if ended.size else frames
        latents = self.encode(batch)  # (n + len(ended), d)
        step_latents = latents[:n].copy()
        step_latents[ended] = latents[n:]
        last = self.state.push(step_latents, actions)  # (n, D)
        final_obs = last[ended]  # (len(ended), D)
        obs = last if restart is None else self.state.reset(latents[:n], mask=restart)
        return obs, final_obs

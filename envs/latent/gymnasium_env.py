"""Observations as VAE latents for one Gymnasium env, and the frame checks all latent wrappers share.

:class:`LatentObservation` replaces each frame by its latent (plus, optionally, the last
k latents and the previous action), so any SB3 algorithm trains an ``MlpPolicy`` on a
``Box(-inf, inf, (d,), float32)`` observation. For several envs prefer the batched
:class:`envs.latent.sb3_vec_env.VecLatentObservation` (SB3) or
:class:`envs.latent.gymnasium_vector.VectorLatentObservation` (``gymnasium.vector``):
one forward pass for all envs in the main process.

:class:`FrameLatents` is the part the three wrappers share: it checks at construction
that the env's frames can become the VAE's input, then turns batches of frames (raw, or
already preprocessed by :class:`envs.frame_wrapper.FrameSpecObservation` with the
checkpoint's spec) into latents.

On normalisation: ``normalize=True`` standardises latents with fixed statistics from the
VAE's training set, which keeps observations identical at training and evaluation time;
then leave ``VecNormalize(norm_obs=False)`` (reward normalisation is still fine).
Without statistics in the checkpoint, put ``VecNormalize(norm_obs=True)`` after the
latent wrapper (never both) and save its statistics beside the agent.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import gymnasium as gym
import numpy as np

from envs.latent.history import LatentHistory
from envs.pixels import PixelObservation, env_name, is_image_space
from worldmodel.frames import FrameSpec, preprocess_frames
from worldmodel.vae.checkpoint import VAECheckpoint
from worldmodel.vae.encoder import LatentEncoder

ENCODER_DEFAULTS = {
    name: p.default for name, p in inspect.signature(LatentEncoder).parameters.items() if p.kind is p.KEYWORD_ONLY
}


def latent_encoder(vae: LatentEncoder | VAECheckpoint | str | os.PathLike, **options: Any) -> LatentEncoder:
    """The wrappers' encoder: built from a checkpoint (path or loaded) with ``options``, or ``vae`` itself.

    Passing a :class:`LatentEncoder` shares one model (and one ``torch.compile``) between
    wrappers, e.g. training and evaluation envs; its options are then fixed, so ``options``
    must be left at their defaults.
    """
    if not isinstance(vae, LatentEncoder):
        return LatentEncoder(vae, **options)
    changed = {name: value for name, value in options.items() if value != ENCODER_DEFAULTS[name]}
    if changed:
        raise ValueError(
            f"{changed} cannot change an existing LatentEncoder; pass them when building it, or pass the checkpoint"
        )
    return vae


def frame_shape_of(space: gym.spaces.Box) -> tuple[int, int, int]:
    """HWC shape of the frames of an image space (a 2-D grayscale space gains a channel axis)."""
    shape = tuple(space.shape)
    return shape if len(shape) == 3 else (*shape, 1)  # type: ignore[return-value]


class FrameLatents:
    """Checked ``frames -> latents`` step shared by the latent wrappers.

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


class LatentObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Observation = the VAE latent of the env's frame (optionally stacked, with the previous action).

    Frames come from image observations or, for other envs, from ``render()`` (the env
    needs ``render_mode="rgb_array"``; it is wrapped in :class:`envs.pixels.PixelObservation`,
    which also keeps the original observation in ``info["state"]``). The checkpoint's
    frame spec is applied to each frame unless the env already applies it
    (:class:`envs.frame_wrapper.FrameSpecObservation`).

    Args:
        env: the env.
        vae: a VAE checkpoint path (then the wrapper can be rebuilt from its recorded
            constructor arguments, as ``check_env`` and rl-zoo do), a loaded checkpoint, or a
            :class:`~worldmodel.vae.encoder.LatentEncoder` to share (see :func:`latent_encoder`).
        device, latent, normalize, drop_inactive, precision, compile: see
            :class:`worldmodel.vae.encoder.LatentEncoder`. ``latent="sample"`` draws from a
            generator seeded by ``reset(seed=...)``.
        history: stack the last ``history`` latents (oldest first); reset each episode.
        include_action: append the previous action (flattened; zeros after a reset).

    >>> import tempfile, pathlib
    >>> import gymnasium as gym
    >>> import envs
    >>> from worldmodel.vae.checkpoint import save_vae
    >>> from worldmodel.frames import FrameSpec
    >>> from worldmodel.vae.model import ConvVAE, VAEConfig
    >>> path = str(pathlib.Path(tempfile.mkdtemp()) / "vae.safetensors")
    >>> save_vae(path, ConvVAE(VAEConfig(16, 16, latent_dim=4, width_multiplier=0.25)), FrameSpec(16, 16))
    >>> env = LatentObservation(gym.make("worldmodel/DotTarget-v0"), path, device="cpu", history=2)
    >>> env.observation_space
    Box(-inf, inf, (8,), float32)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, obs.dtype
    ((8,), dtype('float32'))
    """

    def __init__(
        self,
        env: gym.Env,
        vae: LatentEncoder | VAECheckpoint | str | os.PathLike,
        *,
        device: str = "auto",
        latent: str = "mean",
        history: int = 1,
        include_action: bool = False,
        normalize: bool = False,
        drop_inactive: bool = False,
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self,
            vae=vae,
            device=device,
            latent=latent,
            history=history,
            include_action=include_action,
            normalize=normalize,
            drop_inactive=drop_inactive,
            precision=precision,
            compile=compile,
        )
        encoder = latent_encoder(
            vae,
            device=device,
            latent=latent,
            normalize=normalize,
            drop_inactive=drop_inactive,
            precision=precision,
            compile=compile,
        )
        action_space = env.action_space if include_action else None
        self._setup(env, encoder, LatentHistory(1, encoder.latent_dim, history, action_space))

    def _setup(self, env: gym.Env, encoder: LatentEncoder, history: Any) -> None:
        """Wrap ``env`` (its frames from ``render()`` unless they are observations); ``history`` builds the
        observations from latents: ``reset(latents, mask)``, ``push(latents, actions)``, ``observation_space``."""
        if not is_image_space(env.observation_space):
            env = PixelObservation(env)
        gym.ObservationWrapper.__init__(self, env)
        self.encoder = encoder
        declared = env.get_wrapper_attr("frame_spec") if env.has_wrapper_attr("frame_spec") else None
        self.frame_latents = FrameLatents(
            encoder, frame_shape_of(env.observation_space), declared, source=env_name(env)
        )
        self.history = history
        self.observation_space = history.observation_space
        self.generator = encoder.make_generator()

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """The latent ``(latent_dim,)`` of one frame (``reset``/``step`` add the history)."""
        return self.frame_latents(observation[None], self.generator)[0]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self.generator.manual_seed(seed)
        frame, info = self.env.reset(seed=seed, options=options)
        return self.history.reset(self.observation(frame)[None])[0], info

    def step(self, action):
        frame, reward, terminated, truncated, info = self.env.step(action)
        return self.history.push(self.observation(frame)[None], [action])[0], reward, terminated, truncated, info

"""How to make an env: :class:`EnvConfig` (id, ``gym.make`` keywords, frame skip, skipped start frames,
episode limit, render mode, backend, default frame spec) and the per-env presets :func:`env_preset` gives.

>>> env_preset("CarRacing-v3").frame_skip, env_preset("CarRacing-v3").skip_start_frames
(1, 50)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from worldmodel.frames import FrameSpec

BACKENDS = ("gymnasium", "envpool")
"""Env backends: ``gymnasium`` (``gym.make``, the official envs) and ``envpool`` (C++ ports, batched)."""


@dataclass(frozen=True)
class EnvConfig:
    """How to make an env, and the frame spec collection uses for it by default."""

    env_id: str
    """Gymnasium id, e.g. ``CarRacing-v3``, ``ALE/Pong-v5``, ``worldmodel/DotTarget-v0``."""
    frame_skip: int = 1
    """Repeat each agent action this many base-env frames (rewards summed)."""
    skip_start_frames: int = 0
    """No-op frames taken after each reset before the episode starts (CarRacing zooms in for ~50)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for ``gym.make`` (e.g. ``{"continuous": false}``)."""
    max_episode_steps: int | None = None
    """``gym.make``'s time limit in base-env frames; None keeps the registered one."""
    frame_spec: FrameSpec = field(default_factory=FrameSpec)
    """Default preprocessing of this env's frames for collection and the VAE."""
    render_mode: str | None = None
    """None: automatic (``rgb_array`` when pixels are asked for and observations are not images)."""
    backend: str = "gymnasium"
    """``gymnasium`` (``gym.make``, the official envs) or ``envpool`` (C++ CarRacing-v3 and Atari, ~5x faster)."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")

    def replace(self, **changes: Any) -> EnvConfig:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (stored in dataset and run manifests)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["frame_spec"] = self.frame_spec.to_dict()
        return d


CAR_RACING_SPEC = FrameSpec(height=64, width=64)
"""CarRacing-v3's default frame spec: the whole 96x96 frame, dashboard included, resized to 64x64.

World Models cropped the bottom 12 dashboard rows (``crop=(0, 0, 84, 96)``) before resizing.
We keep them: measured on 900 frames of Brownian driving (3 tracks, after the zoom-in), the
dashboard is 12.5% of the frame and 8.7% of its pixel variance, and a linear probe reads the
car's speed from the 64x64 frame's 8 dashboard rows with R^2 = 0.97 -- information a
single-frame controller otherwise only sees indirectly. The crop also squeezes the aspect
ratio (84x96 to 64x64). ``--crop 0 0 84 96`` reproduces World Models.
"""

PRESETS: dict[str, EnvConfig] = {
    "CarRacing-v3": EnvConfig(
        "CarRacing-v3", skip_start_frames=50, frame_spec=CAR_RACING_SPEC
    ),  # continuous actions; discrete: env_kwargs={"continuous": False}
    "worldmodel/DotTarget-v0": EnvConfig("worldmodel/DotTarget-v0", frame_spec=FrameSpec(height=64, width=64)),
    "worldmodel/DotTargetContinuous-v0": EnvConfig(
        "worldmodel/DotTargetContinuous-v0", frame_spec=FrameSpec(height=64, width=64)
    ),
}


def env_preset(env_id: str) -> EnvConfig:
    """The preset for ``env_id``, or a generic one (64x64 RGB, no skips) for any other id.

    Atari (``ALE/*``) ids move ALE's internal frame skip (4 in v5) into :class:`FrameSkip`
    (``frameskip=1`` plus ``frame_skip=4``, the same dynamics) so that ``info["frames"]``
    counts emulator frames.

    >>> env_preset("CarRacing-v3").skip_start_frames
    50
    >>> env_preset("Pendulum-v1").frame_spec.shape
    (64, 64, 3)
    >>> env_preset("ALE/Pong-v5").frame_skip
    4
    """
    if env_id in PRESETS:
        return PRESETS[env_id]
    if env_id.startswith("ALE/"):
        return EnvConfig(env_id, frame_skip=4, env_kwargs={"frameskip": 1})
    return EnvConfig(env_id)


def resets_from_np_random(env_id: str) -> bool:
    """Whether ``env_id``'s reset draws all its randomness from Gymnasium's ``np_random``, so that
    restoring that generator restarts a sequence of episodes exactly (ALE keeps its own in the emulator).

    >>> resets_from_np_random("CarRacing-v3"), resets_from_np_random("ALE/Pong-v5")
    (True, False)
    """
    return not env_id.startswith("ALE/")

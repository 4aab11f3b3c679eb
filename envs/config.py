"""How to make an env: :class:`EnvConfig` (id, ``gym.make`` keywords, frame skip, skipped start frames,
episode limit, render mode, backend, default frame spec) and the per-env presets :func:`env_preset` gives.

>>> env_preset("CarRacing-v3").frame_skip, env_preset("CarRacing-v3").skip_start_frames
(1, 50)
>>> env_preset("ALE/Pong-v5").env_kwargs["repeat_action_probability"]
0.25
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

ATARI_SPEC = FrameSpec(height=64, width=64)
"""Atari's default frame spec: the whole 210x160 frame, score included, resized to 64x64 RGB (``area``).

The aspect ratio is squeezed (210x160 to 64x64), as DQN's 84x84 squeezes it. The ball (2 pixels
wide, 4 high) survives the resize: removing it from a frame changes the 64x64 frame by at least 54
(Pong) and 25 (Breakout) levels of 255, by 123 and 108 in the median frame (800 frames of each).
"""

ATARI_FRAME_SKIP = 4
"""Emulator frames per agent action in ALE v5."""
ATARI_MAX_FRAMES = 108_000
"""ALE v5's ``max_num_frames_per_episode``: 30 minutes of play at 60 Hz (27,000 agent steps)."""
ATARI_V5_KWARGS: dict[str, Any] = {
    "repeat_action_probability": 0.25,
    "full_action_space": False,
    "max_num_frames_per_episode": ATARI_MAX_FRAMES,
}
"""ALE v5's defaults: sticky actions (Machado et al., 2018), the game's minimal action set, 30-minute episodes.
The EnvPool backend maps the same keywords onto EnvPool's options (:func:`envs.envpool.env.envpool_spec`)."""

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
    """The preset for ``env_id``: :data:`PRESETS`, :func:`atari_preset` for ``ALE/*`` ids, or a generic one
    (64x64 RGB, no skips) for any other id.

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
        return atari_preset(env_id)
    return EnvConfig(env_id)


def atari_preset(env_id: str) -> EnvConfig:
    """An ``ALE/*-v5`` game with ALE v5's standard settings (:data:`ATARI_V5_KWARGS`) and :data:`ATARI_SPEC`.

    ALE's own frame skip (4 in v5) moves into :class:`~envs.frame_skip.FrameSkip` (``frameskip=1``
    plus ``frame_skip=4``: the same dynamics, sticky actions drawn per emulator frame either way),
    so that ``info["frames"]`` counts emulator frames. Frames are the last of each skip, as in ALE
    v5 (EnvPool max-pools the last two).

    >>> config = atari_preset("ALE/Breakout-v5")
    >>> config.frame_skip, config.env_kwargs["frameskip"], config.env_kwargs["max_num_frames_per_episode"]
    (4, 1, 108000)
    """
    kwargs = {"frameskip": 1, **ATARI_V5_KWARGS}
    return EnvConfig(env_id, frame_skip=ATARI_FRAME_SKIP, env_kwargs=kwargs, frame_spec=ATARI_SPEC)

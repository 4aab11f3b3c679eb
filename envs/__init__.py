"""Gymnasium and Stable-Baselines3 adapters: pixel sources, env factory, collection, wrappers, toy env.

Importing this package registers the toy env ids (``worldmodel/DotTarget-v0``,
``worldmodel/DotTargetContinuous-v0``).
"""

from envs.pixels import PixelObservation, is_image_space
from envs.toy import DotTargetEnv, register_toy_envs

register_toy_envs()

__all__ = ["DotTargetEnv", "PixelObservation", "is_image_space", "register_toy_envs"]

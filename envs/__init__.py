"""Gymnasium and Stable-Baselines3 adapters: pixel sources, env factory, collection, wrappers, toy env.

Importing this package registers the toy env ids (``worldmodel/DotTarget-v0``,
``worldmodel/DotTargetContinuous-v0``).
"""

from envs.envpool.env import EnvPoolEnv
from envs.envpool.vec_env import EnvPoolVecEnv
from envs.frame_wrapper import FrameSpecObservation
from envs.latent.gymnasium_env import LatentObservation
from envs.latent.gymnasium_vector import VectorLatentObservation
from envs.latent.sb3_vec_env import VecLatentObservation
from envs.latent.spec import LatentSpec
from envs.memory.gymnasium_env import MemoryObservation
from envs.memory.sb3_vec_env import VecMemoryObservation
from envs.pixels import PixelObservation, is_image_space
from envs.toy import DotTargetEnv, register_toy_envs

register_toy_envs()

__all__ = [
    "DotTargetEnv",
    "EnvPoolEnv",
    "EnvPoolVecEnv",
    "FrameSpecObservation",
    "LatentObservation",
    "LatentSpec",
    "MemoryObservation",
    "PixelObservation",
    "VecLatentObservation",
    "VecMemoryObservation",
    "VectorLatentObservation",
    "is_image_space",
    "register_toy_envs",
]

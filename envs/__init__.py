"""Gymnasium and Stable-Baselines3 adapters: pixel sources, env factory, collection, wrappers, toy env.

Importing this package registers the toy env ids (``worldmodel/DotTarget-v0``,
``worldmodel/DotTargetContinuous-v0``).
"""

from envs.envpool_env import EnvPoolEnv
from envs.envpool_vec_env import EnvPoolVecEnv
from envs.frame_wrapper import FrameSpecObservation
from envs.latent_observation import LatentObservation
from envs.memory_observation import MemoryObservation
from envs.pixels import PixelObservation, is_image_space
from envs.toy import DotTargetEnv, register_toy_envs
from envs.vec_latent_observation import VecLatentObservation
from envs.vec_memory_observation import VecMemoryObservation
from envs.vector_latent_observation import VectorLatentObservation

register_toy_envs()

__all__ = [
    "DotTargetEnv",
    "EnvPoolEnv",
    "EnvPoolVecEnv",
    "FrameSpecObservation",
    "LatentObservation",
    "MemoryObservation",
    "PixelObservation",
    "VecLatentObservation",
    "VecMemoryObservation",
    "VectorLatentObservation",
    "is_image_space",
    "register_toy_envs",
]

"""Frames to VAE latents inside the env: one wrapper per API (Gymnasium env, Gymnasium vector env, SB3 VecEnv).

All three take one :class:`~envs.latent.spec.LatentSpec` and hand their work to
:class:`~envs.latent.encoded_observations.EncodedObservations`.
"""

"""Frames to VAE latents inside the env: one wrapper per API (Gymnasium env, Gymnasium vector env, SB3 VecEnv)."""

"""CarRacing-v3 from latents vs pixels: the full-run presets and ``python -m experiments.carracing``."""

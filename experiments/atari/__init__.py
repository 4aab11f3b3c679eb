"""Issue 36's Atari 100k study: latent PPO against rl-zoo's pixel PPO at 400k env frames per game."""

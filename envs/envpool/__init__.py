"""EnvPool backends: a batch of C++ envs as one Gymnasium env or as an SB3 ``VecEnv``."""

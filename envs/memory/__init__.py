"""The memory model's hidden state ``h`` beside the latent: ``[z, h]`` observations."""

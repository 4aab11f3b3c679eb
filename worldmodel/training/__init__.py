"""What both trainers (VAE and memory model) share: run state, resume, metrics, the NaN guard, DDP."""

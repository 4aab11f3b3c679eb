"""``worldmodel info CHECKPOINT``: what a VAE checkpoint describes (config, frame spec, metadata), as JSON."""

from __future__ import annotations

import argparse
import json

from worldmodel.vae.checkpoint import load_vae

COMMAND_HELP = "describe a VAE checkpoint (config, frame spec, metadata)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``worldmodel info``."""
    parser.add_argument("checkpoint", help="path to a VAE checkpoint (.safetensors)")


def run(args: argparse.Namespace) -> int:
    """``worldmodel info CHECKPOINT``: print what the checkpoint describes, as JSON."""
    ckpt = load_vae(args.checkpoint)
    n_params = sum(p.numel() for p in ckpt.vae.parameters())
    description = {
        "path": str(ckpt.path),
        "vae_config": ckpt.vae.config.to_dict(),
        "frame_spec": ckpt.frame_spec.to_dict(),
        "parameters": n_params,
        "metadata": ckpt.metadata,
        "latent_stats": None
        if ckpt.latent_stats is None
        else {"active_dims": int(ckpt.latent_stats.active.sum()), "latent_dim": len(ckpt.latent_stats.active)},
    }
    print(json.dumps(description, indent=2))
    return 0

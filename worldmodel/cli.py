"""The ``worldmodel`` command line: the one module that sees every layer.

Each subcommand lives in the module of its stage, which provides
``add_arguments(parser)`` and ``run(args) -> int``; this file only lists them and
imports a stage when its subcommand runs, so ``worldmodel --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

# subcommand -> (module providing add_arguments/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("worldmodel.cli", "describe a VAE checkpoint (config, frame spec, metadata)"),
    "train-vae": ("worldmodel.train", "train the VAE on a collected dataset (also under torchrun for DDP)"),
    "encode": ("worldmodel.latent_sequences", "encode a dataset's episodes with a VAE into latent sequences"),
    "train-memory": ("worldmodel.train_memory", "train the memory model (MDN-RNN) on a dataset's VAE latents"),
    "collect": (
        "agents.bundle_policy",
        "collect rollouts from any Gymnasium env (random, brownian or a trained agent) into a dataset (resumable)",
    ),
    "train-agent": ("agents.train", "train an SB3 agent on VAE latents (or --pixels) into a run directory"),
    "evaluate": ("agents.evaluate", "evaluate a train-agent run: returns, episode lengths, --video"),
    "iterate": ("experiments.iterate", "collect -> train VAE -> train agent, in R resumable rounds"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``worldmodel info``."""
    parser.add_argument("checkpoint", help="path to a VAE checkpoint (.safetensors)")


def run(args: argparse.Namespace) -> int:
    """``worldmodel info CHECKPOINT``: print what the checkpoint describes, as JSON."""
    from worldmodel.checkpoint import load_vae

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


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only the ``selected`` subcommand's arguments are filled in."""
    parser = argparse.ArgumentParser(
        prog="worldmodel",
        description="Collect frames, train a VAE on them, and train RL agents on its latents.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.set_defaults(_module=module_name)
        if name == selected:
            importlib.import_module(module_name).add_arguments(cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(selected=next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    if args.version:
        from worldmodel import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 1
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``worldmodel`` command line: subcommands found through entry points.

Each subcommand lives in the module of its stage, which provides ``add_arguments(parser)``,
``run(args) -> int`` and ``COMMAND_HELP``; each layer declares its own in ``pyproject.toml``
(group ``worldmodel.commands``, see :mod:`worldmodel.common.plugins`), so this module names no
module above it and an installed package can add a command. A stage is imported only when its
subcommand runs, so ``worldmodel --help`` stays fast.

Errors are handled here, once for every subcommand. An exception that :func:`is_user_error`
accepts ends the command with one line ``worldmodel COMMAND: error: MESSAGE`` on stderr and
exit status 2 (as argparse does for a bad option); any other exception is a bug and keeps
its traceback. ``--debug`` (or ``WORLDMODEL_DEBUG=1``) shows the traceback of user errors
too. Exit statuses: 0 done, 1 a bug (traceback), 2 an error the message explains,
130 interrupted. Stages never call ``sys.exit`` or print their own errors; they raise.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from worldmodel.common.errors import UserError
from worldmodel.common.plugins import COMMANDS_GROUP, command_help, entry_point_modules

DEBUG_ENV = "WORLDMODEL_DEBUG"
"""Set to 1 to see the traceback of every error, as ``--debug`` does."""

OPTIONAL_EXTRAS = {"optuna": "tune", "sb3_contrib": "contrib", "envpool": "envpool", "ale_py": "atari"}
"""Optional packages a subcommand's module may import, and the extra that installs each."""


def commands() -> dict[str, str]:
    """``{subcommand: module}`` of every installed command, in name order.

    >>> commands()["train-vae"], commands()["collect"]
    ('worldmodel.vae.train', 'envs.collect')
    """
    found = entry_point_modules(COMMANDS_GROUP)
    if not found:
        raise UserError(
            "no worldmodel commands are registered: the package's metadata is missing or stale; "
            "reinstall it (pip install -e . or make install)"
        )
    return dict(sorted(found.items()))


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an error the user can fix from its message, rather than a bug.

    That is: the project's own errors (:class:`~worldmodel.common.errors.UserError`: ``DatasetError``,
    ``CheckpointError``, ``BundleError``, ``TrainVAEError``, ``CollectError``, ``StageError``, ...);
    ``ValueError``, which every library function raises for an argument it refuses, with the fix
    in its message; ``OSError`` (a path that is missing, unreadable or unwritable); and
    gymnasium's errors (an unknown env id, a missing dependency). Checked against gymnasium only
    when a stage has imported it: this package never imports gymnasium itself.

    >>> is_user_error(FileNotFoundError("VAE checkpoint v.safetensors does not exist")), is_user_error(KeyError("x"))
    (True, False)
    """
    if isinstance(exc, UserError | ValueError | OSError):
        return True
    gym_error = sys.modules.get("gymnasium.error")
    return gym_error is not None and isinstance(exc, gym_error.Error)


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only the ``selected`` subcommand's arguments are filled in."""
    parser = argparse.ArgumentParser(
        prog="worldmodel",
        description="Collect frames, train a VAE on them, and train RL agents on its latents.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    debug_help = f"show the traceback of an error (also: {DEBUG_ENV}=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in commands().items():
        help_text = command_help(module_name)
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.set_defaults(_module=module_name)
        cmd.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
        if name == selected:
            importlib.import_module(module_name).add_arguments(cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(selected=selected)
    except UserError as exc:  # no commands registered
        print(f"worldmodel: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # a subcommand whose optional package is not installed
        extra = OPTIONAL_EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"worldmodel {selected}: error: it needs {exc.name}, which is not installed: "
              f"pip install 'worldmodel[{extra}]' (make install installs it)", file=sys.stderr)  # fmt: skip
        return 2
    args = parser.parse_args(argv)
    if args.version:
        from worldmodel import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 1
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt as exc:
        print(f"worldmodel {args.command}: interrupted{f': {exc}' if str(exc) else ''}", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0") or not is_user_error(exc):
            raise
        print(f"worldmodel {args.command}: error: {str(exc) or type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

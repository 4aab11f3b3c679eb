"""Entry points: how each layer (and any installed package) adds commands and collection policies.

A package declares its subcommands in ``pyproject.toml``, one entry point per command naming
the module that serves it, the way pytest and flake8 find their plugins::

    [project.entry-points."worldmodel.commands"]
    train-agent = "agents.train"

The module provides ``add_arguments(parser)``, ``run(args) -> int`` and a one-line
``COMMAND_HELP`` string, which :func:`command_help` reads from the module's source without
importing it, so ``worldmodel --help`` stays fast. The bottom package thereby names nothing
above it, and a third party adds a command by installing a package with such an entry point.

>>> sorted(entry_point_modules("worldmodel.commands"))[:3]
['collect', 'encode', 'evaluate']
"""

from __future__ import annotations

import ast
import importlib.util
from importlib.metadata import entry_points

COMMANDS_GROUP = "worldmodel.commands"
"""Entry-point group of subcommands: ``name = "module"``."""
POLICIES_GROUP = "worldmodel.policies"
"""Entry-point group of collection policy providers: ``name = "module:function"``, see :mod:`envs.collect`."""


def entry_point_modules(group: str) -> dict[str, str]:
    """``{name: value}`` of the installed entry points of ``group`` (value: ``module`` or ``module:attr``)."""
    return {ep.name: ep.value for ep in entry_points(group=group)}


def load_entry_points(group: str) -> dict[str, object]:
    """``{name: object}``: each entry point of ``group`` imported and loaded, in name order."""
    return {ep.name: ep.load() for ep in sorted(entry_points(group=group), key=lambda ep: ep.name)}


def command_help(module: str) -> str:
    """The module's ``COMMAND_HELP`` string, read from its source without running it ("" if it has none).

    >>> command_help("worldmodel.vae.info")
    'describe a VAE checkpoint (config, frame spec, metadata)'
    """
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return ""
    with open(spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        target = (
            node.target
            if isinstance(node, ast.AnnAssign)
            else (node.targets[0] if isinstance(node, ast.Assign) else None)
        )
        if isinstance(target, ast.Name) and target.id == "COMMAND_HELP" and isinstance(node.value, ast.Constant):
            return str(node.value.value)
    return ""

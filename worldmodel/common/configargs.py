"""Command-line arguments generated from frozen config dataclasses.

Each entry point has one config dataclass; the docstring line under each field becomes
its ``--help`` text, so the config and the command line never drift apart.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Demo:
...     data_dir: str
...     '''Where the data lives.'''
...     batch_size: int = 32
...     '''Frames per batch.'''
>>> parser = argparse.ArgumentParser()
>>> add_config_arguments(parser, Demo, positional=("data_dir",))
>>> config_from_args(Demo, parser.parse_args(["d", "--batch-size", "8"]))
Demo(data_dir='d', batch_size=8)
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import json
import textwrap
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal


def field_docs(cls: type) -> dict[str, str]:
    """The docstring line under each field of dataclass ``cls`` (and its dataclass bases)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def add_config_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    positional: Iterable[str] = (),
    skip: Iterable[str] = (),
) -> None:
    """Add one argument per field of dataclass ``cls`` to ``parser``.

    Field ``batch_size`` becomes ``--batch-size``; names in ``positional`` become
    positional arguments; ``bool`` fields get ``--x/--no-x``; tuples and lists take
    several values; ``dict`` fields take JSON; ``Literal`` fields get choices. The help
    text ends with ``(default: VALUE)`` unless the field's docstring states its default
    itself with ``default:`` (e.g. ``(default: the preset's)`` for a None that a preset fills).
    """
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    positional, skip = set(positional), set(skip)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp, optional = _unwrap_optional(hints[f.name])
        origin = typing.get_origin(tp)
        kwargs: dict[str, Any] = {"help": docs.get(f.name, "")}
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if has_default:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            kwargs["default"] = default
            if "default:" not in kwargs["help"]:  # a field whose default a preset decides says so itself
                kwargs["help"] += f" (default: {default})"
        kwargs["help"] = kwargs["help"].replace("%", "%%")  # argparse %-formats help text
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin is Literal:
            kwargs["choices"] = list(typing.get_args(tp))
            kwargs["type"] = type(typing.get_args(tp)[0])
        elif origin in (tuple, list):
            args = [a for a in typing.get_args(tp) if a is not Ellipsis]
            kwargs["type"] = args[0] if args else str
            fixed = origin is tuple and Ellipsis not in typing.get_args(tp)
            kwargs["nargs"] = len(args) if fixed else "+"
        elif tp is dict or origin is dict:
            kwargs["type"] = _json_dict
        elif tp in (int, float, str, Path):
            kwargs["type"] = tp
        else:
            raise TypeError(f"field {cls.__name__}.{f.name} has a type the command line cannot parse: {tp}")
        if f.name in positional:
            if optional:
                kwargs["nargs"] = "?"
            parser.add_argument(f.name, **kwargs)
        else:
            kwargs["required"] = not has_default
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kwargs)


def config_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """Build ``cls`` from the parsed ``args`` (fields only), tuples restored, ``overrides`` applied."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init or not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        tp, _ = _unwrap_optional(hints[f.name])
        if typing.get_origin(tp) is tuple and value is not None:
            value = tuple(value)
        values[f.name] = value
    values.update(overrides)
    return cls(**values)

"""Frozen config dataclasses that round-trip through JSON-friendly dicts (as checkpoints store them).

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Demo(DictConfig):
...     size: int = 1
>>> Demo.from_dict(Demo(2).to_dict())
Demo(size=2)
>>> Demo.from_dict({"colour": 1})
Traceback (most recent call last):
...
ValueError: unknown Demo fields ['colour']; known fields are ['size']
"""

from __future__ import annotations

import dataclasses
from typing import Any, Self


def check_known_fields(cls: type, data: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the keys of ``data`` that are no field of dataclass ``cls``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; known fields are {sorted(known)}")


class DictConfig:
    """Mixin for frozen dataclasses: ``to_dict`` and ``from_dict`` (unknown keys are an error)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        check_known_fields(cls, data)
        return cls(**data)

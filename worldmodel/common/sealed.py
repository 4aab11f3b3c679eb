"""JSON records that carry a SHA-256 of their own content, so that a flipped bit is noticed when they are read.

A run's ``config.json`` and an evaluation's progress file are read back to decide what to
do (which tracks to evaluate, where to resume); a bit flipped in a value still parses.

>>> record = sealed({"eval_seed": 1000000})
>>> seal_matches(record), seal_matches({**record, "eval_seed": 1000001}), seal_matches({"eval_seed": 1})
(True, False, None)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

CHECKSUM_KEY = "checksum_sha256"


def content_sha256(data: dict[str, Any]) -> str:
    """SHA-256 of ``data`` without its checksum, as canonical JSON (sorted keys, no spaces)."""
    content = {k: v for k, v in data.items() if k != CHECKSUM_KEY}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sealed(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its checksum under :data:`CHECKSUM_KEY`."""
    return {**data, CHECKSUM_KEY: content_sha256(data)}


def seal_matches(data: dict[str, Any]) -> bool | None:
    """Whether ``data`` matches its checksum; None when it carries none (written before checksums)."""
    if CHECKSUM_KEY not in data:
        return None
    return data[CHECKSUM_KEY] == content_sha256(data)

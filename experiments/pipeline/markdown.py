"""Markdown every report writer shares: means with Student-t intervals, table cells, paths as the
repository shows them, and the generated part of a report written without losing the prose around it.

>>> round(confidence_interval([1.0, 2.0, 3.0]), 3)
2.484
>>> mean_ci([1.0, 2.0, 3.0])
'2.0 ± 2.5'
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from worldmodel.common.atomic import atomic_path

# Two-sided 95% Student-t quantiles t_{0.975, dof} for dof 1-10, from the tables.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
_Z975 = 1.959963984540054
"""The normal's 0.975 quantile: t_{0.975, dof} tends to it as dof grows."""


def t95(dof: int) -> float:
    """Student's t_{0.975, dof}: the table for 1-10 degrees of freedom, beyond it the Cornish-Fisher
    expansion in 1/dof to its 1/dof^4 term (Abramowitz and Stegun 26.7.5; within 1e-5 of the exact
    quantile from 11 dof on).

    >>> [round(t95(dof), 3) for dof in (4, 20, 30, 40, 100)]
    [2.776, 2.086, 2.042, 2.021, 1.984]
    """
    if dof < 1:
        raise ValueError(f"Student's t needs at least 1 degree of freedom, got {dof}")
    if dof in _T95:
        return _T95[dof]
    z = _Z975
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / dof + g2 / dof**2 + g3 / dof**3 + g4 / dof**4


def confidence_interval(values: list[float]) -> float:
    """Half-width of the 95% confidence interval of the mean of ``values`` (Student t; needs >= 2 values)."""
    n = len(values)
    if n < 2:
        raise ValueError(f"a confidence interval needs at least 2 values, got {n}")
    return t95(n - 1) * float(np.std(values, ddof=1)) / math.sqrt(n)


def mean_ci(values: Any, digits: int = 1) -> str:
    """``mean ± half-width of its 95% confidence interval`` of ``values``, to ``digits`` decimals.

    >>> mean_ci([1.0, 2.0, 3.0])
    '2.0 ± 2.5'
    """
    return f"{np.mean(values):.{digits}f} ± {confidence_interval(values):.{digits}f}"


def cell(value: Any, digits: int = 1) -> str:
    """A markdown table cell: thousands separators, ``digits`` decimals for floats, an en dash for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def relative(path: str | Path) -> str:
    """``path`` relative to the working directory: reports never name a file by an absolute path of the machine.

    >>> relative(Path.cwd() / "runs" / "car"), relative("./runs/car")
    ('runs/car', 'runs/car')
    """
    return os.path.relpath(path)


def generated_markers(part: str | None = None) -> tuple[str, str]:
    """The comment lines around a report's generated part (``part`` names one of several in one report).

    >>> generated_markers()
    ('<!-- generated: begin -->', '<!-- generated: end -->')
    """
    suffix = f" {part}" if part else ""
    return f"<!-- generated: begin{suffix} -->", f"<!-- generated: end{suffix} -->"


def write_markdown(path: str | Path, sections: Sequence[str], *, part: str | None = None) -> Path:
    """Write ``sections``, a blank line between them, as the generated part of the report ``path``, atomically;
    returns ``path``.

    The generated part lies between the lines of :func:`generated_markers`; everything outside them (prose written
    by hand above or below, other generated parts) is kept as it is. A new report is the marked part alone; a named
    ``part`` that a report does not hold yet is added at its end. A report without the markers of its (unnamed)
    generated part is refused rather than overwritten: its text would be lost.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "README.md"
    >>> _ = write_markdown(path, ["# Title", "Table, first run."])
    >>> _ = path.write_text("Written by hand.\\n" + path.read_text())
    >>> print(write_markdown(path, ["# Title", "Table, second run."]).read_text(), end="")
    Written by hand.
    <!-- generated: begin -->
    # Title
    <BLANKLINE>
    Table, second run.
    <!-- generated: end -->
    """
    path = Path(path)
    begin, end = generated_markers(part)
    body = "\n\n".join(sections).strip("\n")
    block = f"{begin}\n{body}\n{end}"
    text = path.read_text() if path.is_file() else ""
    starts = [m.start() for m in re.finditer(f"^{re.escape(begin)}$", text, re.MULTILINE)]
    ends = [m.end() for m in re.finditer(f"^{re.escape(end)}$", text, re.MULTILINE)]
    if len(starts) > 1 or len(ends) > 1 or len(starts) != len(ends) or (starts and ends[0] < starts[0]):
        raise ValueError(
            f"{path}: expected one '{begin}' line followed by one '{end}' line around the generated part, found "
            f"{len(starts)} and {len(ends)}: fix the markers by hand, keeping the prose outside them"
        )
    if starts:
        text = text[: starts[0]] + block + text[ends[0] :]
    elif not text.strip():
        text = block + "\n"
    elif part is not None:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        raise ValueError(
            f"{path} exists without the '{begin}' and '{end}' lines, so writing the report would replace its text: "
            "put them around the part that is generated (the rest is kept), or move the file away"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path

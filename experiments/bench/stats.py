"""How benchmarks summarise repeated runs: the median, with the spread of the runs beside it."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def median_range(values: Sequence[float], spec: str = ",.0f") -> str:
    """``median (min-max)`` of ``values``, each number formatted with the format ``spec``.

    >>> median_range([1250.0, 980.4, 1311.6])
    '1,250 (980-1,312)'
    >>> median_range([1.19, 0.97, 1.04], ".2f")
    '1.04 (0.97-1.19)'
    """
    if not values:
        raise ValueError("median_range needs at least one run's figure, got none")
    return f"{statistics.median(values):{spec}} ({min(values):{spec}}-{max(values):{spec}})"

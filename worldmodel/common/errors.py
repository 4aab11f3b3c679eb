"""The base class of the errors the project raises on purpose, for a cause the user can fix.

Each module keeps its own error type (``DatasetError``, ``CheckpointError``, ``BundleError``,
...); deriving from :class:`UserError` as well is what tells the command line to print the
message in one line instead of a traceback (see :mod:`worldmodel.cli`).
"""

from __future__ import annotations


class UserError(Exception):
    """A refused input or a stopped run whose message names the problem and what to do about it."""

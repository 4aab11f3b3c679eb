"""Nothing committed carries an absolute path of the machine that made it (run metadata, READMEs, reports)."""

from __future__ import annotations

import re
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(?<![\w.~/-])/(?:work|home|tmp|root|scratch|Users|mnt)/[\w.-]")
"""An absolute path under a home or scratch directory; the lookbehind skips URLs and relative paths (``a/tmp/x``)."""
SKIPPED_SUFFIXES = {".py"}
"""Python sources may use ``/tmp/...`` in doctest examples; they are code, not records of a run."""


def tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in listed.decode().split("\0") if name]


def texts(path: Path) -> list[tuple[str, str]]:
    """``(where, text)`` of a tracked file, or of each text member of a zip archive (SB3 models); binary: none."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [(f"{path.name}:{name}", archive.read(name)) for name in archive.namelist()]
    else:
        members = [(path.name, path.read_bytes())]
    found = []
    for where, data in members:
        try:
            found.append((where, data.decode("utf-8")))
        except UnicodeDecodeError:
            continue
    return found


def test_machine_path_pattern():
    assert MACHINE_PATH.search('"out": "/work/data/runs/car"') and MACHINE_PATH.search("--out /home/me/runs")
    for legit in ("runs/car", "https://example.org/home/x", "demo_output/tmp/x", "~/tmp/x", "OUT/round<r>/data/"):
        assert not MACHINE_PATH.search(legit), legit


def test_no_tracked_file_names_an_absolute_machine_path():
    offenders = [
        f"{path.relative_to(ROOT)} ({where}): {match.group()}..."
        for path in tracked_files()
        if path.suffix not in SKIPPED_SUFFIXES and path.is_file()
        for where, text in texts(path)
        for match in MACHINE_PATH.finditer(text)
    ]
    assert offenders == [], "write these paths relative to the repository or the run directory"

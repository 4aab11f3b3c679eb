"""OpenMP defaults (worldmodel.common.openmp): set before torch loads, a user's own setting kept.

Each check runs in a fresh interpreter: in this one torch is loaded already.
"""

import os
import re
import subprocess
import sys

import pytest

from worldmodel.common.openmp import OPENMP_DEFAULTS, apply_openmp_defaults

# Records OMP_WAIT_POLICY at the moment something first imports torch, then runs the given imports.
SPY = """
import os, sys
seen = []
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY"))
sys.meta_path.insert(0, Spy())
{imports}
print(seen[0], os.environ.get("OMP_WAIT_POLICY"))
"""


def fresh(imports: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``imports`` under :data:`SPY` in a new interpreter, without the OpenMP variables of this one."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_DISPLAY_ENV")}
    result = subprocess.run(
        [sys.executable, "-c", SPY.format(imports=imports)],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result


def libgomp_spincount(stderr: str) -> str:
    """The spin count libgomp reports under OMP_DISPLAY_ENV=verbose (skips where torch uses another OpenMP)."""
    found = re.search(r"GOMP_SPINCOUNT = '(\w+)'", stderr)
    if found is None:
        pytest.skip("torch's OpenMP runtime here is not libgomp: it reports no GOMP_SPINCOUNT")
    return found.group(1)


def test_wait_policy_is_set_before_torch_loads():
    assert fresh("import worldmodel").stdout.split() == ["PASSIVE", "PASSIVE"]


def test_the_cli_sets_it_before_torch_loads():
    assert fresh("import worldmodel.cli").stdout.split() == ["PASSIVE", "PASSIVE"]


def test_users_own_setting_is_kept():
    assert fresh("import worldmodel", OMP_WAIT_POLICY="ACTIVE").stdout.split() == ["ACTIVE", "ACTIVE"]
    # a spin count of the user's own is a choice of how threads wait too: no policy is added over it
    assert fresh("import worldmodel", GOMP_SPINCOUNT="300000").stdout.split() == ["None", "None"]


def test_libgomp_sleeps_at_once_only_when_worldmodel_comes_first():
    first = fresh("import worldmodel", OMP_DISPLAY_ENV="verbose")
    assert libgomp_spincount(first.stderr) == "0"
    # torch first: libgomp has read its settings before worldmodel sets the policy (the probe can tell)
    late = fresh("import torch, worldmodel", OMP_DISPLAY_ENV="verbose")
    assert late.stdout.split() == ["None", "PASSIVE"]
    assert libgomp_spincount(late.stderr) != "0"


def test_apply_openmp_defaults_sets_nothing_over_a_users_wait_setting():
    for own in ({"OMP_WAIT_POLICY": "active"}, {"GOMP_SPINCOUNT": "1000"}):
        environ = dict(own)
        apply_openmp_defaults(environ)
        assert environ == own
    environ = {"PATH": "/bin"}
    apply_openmp_defaults(environ)
    assert environ == {"PATH": "/bin", **OPENMP_DEFAULTS}

"""OpenMP defaults for torch on shared CPUs, set when :mod:`worldmodel` is imported, before torch loads.

torch's CPU kernels run on libgomp (GNU OpenMP), which reads its settings once, when
``import torch`` loads it, so they must be in the environment before that: ``worldmodel``
imports this module first, and every ``worldmodel`` command imports ``worldmodel`` before
torch. Worker processes inherit the environment, and a value the user set is kept.

``OMP_WAIT_POLICY=PASSIVE``: a thread that waits for the others at the end of a parallel
region sleeps at once. libgomp's default spins first, for 300,000 iterations, long enough to
span the gap to the next region, so a waiting thread never gives up its core. With one core
of two taken by another process, torch's second thread then holds the free core spinning,
the scheduler leaves the main thread sharing the other core with the neighbour at half
speed, and every region waits for it. Measured on 2 cores (AMD EPYC, torch 2.13) beside one
``python -c "while True: pass"`` (experiments/reports/benchmarks/README.md, section
busy_neighbour, 3 interleaved runs each), the share of the idle speed kept went from 32% to
55% for VAE training, 41% to 58% for batch encoding and 21% to 90% for latent PPO on the toy
env; beside two busy loops, from 15-32% to 47-52%. The cost: a sleeping thread must be woken
for the next region. Idle, VAE training and batch encoding ran at 0.94x (within the spread
of the runs), and latent PPO on the toy env (many small regions with env steps between them)
at 0.69x. On a machine that runs nothing else, ``GOMP_SPINCOUNT=300000`` (libgomp's default)
or ``OMP_WAIT_POLICY=ACTIVE`` brings the spinning back: a wait setting of your own is kept.

>>> environ = {"OMP_WAIT_POLICY": "ACTIVE"}
>>> apply_openmp_defaults(environ)
>>> environ
{'OMP_WAIT_POLICY': 'ACTIVE'}
>>> apply_openmp_defaults(environ := {"GOMP_SPINCOUNT": "300000"})
>>> environ
{'GOMP_SPINCOUNT': '300000'}
>>> apply_openmp_defaults(environ := {})
>>> environ
{'OMP_WAIT_POLICY': 'PASSIVE'}
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

OPENMP_DEFAULTS: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}
"""Environment variables set unless the user chose how threads wait (see the module docstring for why)."""
WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
"""A user's value for any of these is a choice of how threads wait: then nothing is set."""


def apply_openmp_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set :data:`OPENMP_DEFAULTS` in ``environ`` unless one of :data:`WAIT_SETTINGS` is set there.

    It acts on torch only when called before torch is first imported in the process.
    """
    if not any(name in environ for name in WAIT_SETTINGS):
        environ.update(OPENMP_DEFAULTS)


apply_openmp_defaults()

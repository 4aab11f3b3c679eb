"""What a latent wrapper encodes with: one frozen options object for all of them.

:class:`LatentSpec` names the VAE (a checkpoint path, a loaded checkpoint or a shared
:class:`~worldmodel.vae.encoder.LatentEncoder`), the encoder's options and how
observations are built from latents (history, previous action). The three latent
wrappers (:class:`~envs.latent.gymnasium_env.LatentObservation`,
:class:`~envs.latent.gymnasium_vector.VectorLatentObservation`,
:class:`~envs.latent.sb3_vec_env.VecLatentObservation`) and the two memory wrappers take
one, so they cannot disagree on a default.

Each wrapper also accepts a plain checkpoint path (a spec with the defaults) or a dict
of the fields, which is how rl-zoo's YAML (``vec_env_wrapper``) and Gymnasium's recorded
constructor arguments (``gym.make(env.spec)``) pass it.

>>> spec = LatentSpec("runs/vae/best.safetensors", device="cpu", history=2)
>>> spec.history, spec.latent
(2, 'mean')
>>> LatentSpec.from_dict(spec.to_dict()) == spec
True
>>> LatentSpec.coerce({"vae": "runs/vae/best.safetensors", "history": 2, "device": "cpu"}) == spec
True
>>> LatentSpec("vae.safetensors", latent="median")
Traceback (most recent call last):
    ...
ValueError: LatentSpec.latent must be one of ('mean', 'sample'), got 'median'
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

import torch

from worldmodel.vae.checkpoint import VAECheckpoint
from worldmodel.vae.encoder import LATENT_MODES, PRECISIONS, LatentEncoder

ENCODER_DEFAULTS = {
    name: p.default for name, p in inspect.signature(LatentEncoder).parameters.items() if p.kind is p.KEYWORD_ONLY
}
"""The keyword options of :class:`LatentEncoder` and their defaults (fields of :class:`LatentSpec` too)."""


@dataclass(frozen=True)
class LatentSpec:
    """Options shared by the latent observation wrappers: the VAE, its encoder's options, the observation layout.

    All fields but ``vae`` are keyword-only. Options that configure the encoder
    (``device`` to ``compile``) must stay at their defaults when ``vae`` is a
    :class:`LatentEncoder`, whose options are fixed.
    """

    vae: str | VAECheckpoint | LatentEncoder
    """A VAE checkpoint path (the only kind :meth:`to_dict` can write), a loaded checkpoint, or a
    :class:`LatentEncoder` to share one model (and one ``torch.compile``) between wrappers."""
    _: KW_ONLY
    device: str = "auto"
    """``auto`` (cuda, else mps, else cpu) or a torch device string such as ``cpu`` or ``cuda:0``."""
    latent: str = "mean"
    """``mean`` (the posterior mean) or ``sample`` (drawn from a generator seeded by the wrapper's reset/seed)."""
    history: int = 1
    """Stack the last ``history`` latents, oldest first (restarted with each episode)."""
    include_action: bool = False
    """Append the previous action, flattened (zeros after a reset)."""
    normalize: bool = False
    """Standardise each latent dimension with the checkpoint's latent statistics."""
    drop_inactive: bool = False
    """Keep only the dimensions the checkpoint's statistics mark active."""
    precision: str = "fp32"
    """``fp32``, ``bf16``, ``fp16`` (CUDA only) or ``auto`` (per device)."""
    compile: bool = False
    """Wrap the encoder's forward pass in ``torch.compile``."""

    def __post_init__(self) -> None:
        vae = self.vae
        if isinstance(vae, os.PathLike):
            vae = os.fspath(vae)
            object.__setattr__(self, "vae", vae)
        if not isinstance(vae, (str, VAECheckpoint, LatentEncoder)):
            raise TypeError(
                "LatentSpec.vae must be a VAE checkpoint path, a loaded VAECheckpoint or a LatentEncoder, "
                f"got {type(vae).__name__} {vae!r}"
            )
        if self.latent not in LATENT_MODES:
            raise ValueError(f"LatentSpec.latent must be one of {LATENT_MODES}, got {self.latent!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"LatentSpec.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if isinstance(self.history, bool) or not isinstance(self.history, int) or self.history < 1:
            raise ValueError(f"LatentSpec.history must be a positive integer number of latents, got {self.history!r}")
        for name in ("include_action", "normalize", "drop_inactive", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"LatentSpec.{name} must be true or false, got {getattr(self, name)!r}")
        self._check_device()
        if isinstance(vae, LatentEncoder):
            changed = {
                name: getattr(self, name) for name in ENCODER_DEFAULTS if getattr(self, name) != ENCODER_DEFAULTS[name]
            }
            if changed:
                raise ValueError(
                    f"{changed} cannot change an existing LatentEncoder; pass them when building it, "
                    "or pass the checkpoint"
                )

    def _check_device(self) -> None:
        if isinstance(self.device, torch.device):
            object.__setattr__(self, "device", str(self.device))
        if not isinstance(self.device, str):
            raise ValueError(f"LatentSpec.device must be a device string such as 'cpu', got {self.device!r}")
        if self.device == "auto":
            return
        try:
            torch.device(self.device)
        except RuntimeError as exc:
            raise ValueError(
                f"LatentSpec.device must be 'auto' or a torch device such as 'cpu', 'cuda' or 'cuda:0', "
                f"got {self.device!r}"
            ) from exc

    @classmethod
    def coerce(cls, value: LatentSpecLike) -> LatentSpec:
        """A spec from what a wrapper accepts: a spec, a dict of its fields, or just the VAE (all defaults)."""
        if isinstance(value, LatentSpec):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        if isinstance(value, (str, os.PathLike, VAECheckpoint, LatentEncoder)):
            return cls(value)
        raise TypeError(
            "expected a LatentSpec, a dict of its fields (e.g. {'vae': 'runs/vae/best.safetensors', 'history': 2}) "
            f"or a VAE checkpoint path, got {type(value).__name__} {value!r}"
        )

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> LatentSpec:
        """The spec of a dict as :meth:`to_dict` writes it (missing fields take their defaults)."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(fields) - set(names))
        if unknown:
            raise ValueError(f"unknown LatentSpec field(s) {unknown}; the fields are {names}")
        if "vae" not in fields:
            raise ValueError(f"a LatentSpec needs 'vae' (a VAE checkpoint path), got only {sorted(fields)}")
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON/YAML-friendly values; needs ``vae`` to be a checkpoint path."""
        if not isinstance(self.vae, str):
            raise TypeError(
                f"only a LatentSpec whose vae is a checkpoint path can be written as a dict, got a "
                f"{type(self.vae).__name__}; build the spec from the checkpoint's path"
            )
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def recorded(self) -> dict[str, Any] | LatentSpec:
        """What a wrapper records for ``gym.make(env.spec)``: :meth:`to_dict` when it can, else the spec itself."""
        return self.to_dict() if isinstance(self.vae, str) else self

    def load_encoder(self) -> LatentEncoder:
        """The encoder: built from the checkpoint with this spec's options, or ``vae`` itself when it is one."""
        if isinstance(self.vae, LatentEncoder):
            return self.vae
        return LatentEncoder(self.vae, **{name: getattr(self, name) for name in ENCODER_DEFAULTS})


LatentSpecLike = LatentSpec | Mapping[str, Any] | str | os.PathLike | VAECheckpoint | LatentEncoder
"""What the wrappers accept as their spec (see :meth:`LatentSpec.coerce`)."""

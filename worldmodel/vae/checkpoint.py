"""Self-describing VAE checkpoints in safetensors: weights plus JSON metadata, no pickle.

A checkpoint holds the model weights, the :class:`VAEConfig`, the :class:`FrameSpec`
the VAE was trained with, a format version, free-form training metadata (step,
dataset id, ...) and optionally per-dimension latent statistics. :func:`load_vae`
rebuilds everything from the file alone.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "vae.safetensors"
>>> save_vae(path, ConvVAE(VAEConfig()), FrameSpec(), step=0)
>>> ckpt = load_vae(path)
>>> ckpt.vae.config.latent_dim, ckpt.frame_spec.shape, ckpt.metadata["step"]
(32, (64, 64, 3), 0)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from worldmodel.common.atomic import atomic_path
from worldmodel.common.errors import UserError
from worldmodel.frames import FrameSpec
from worldmodel.vae.model import ConvVAE, VAEConfig

FORMAT_NAME = "worldmodel.vae"  # the header every VAE checkpoint carries: never rename it
FORMAT_VERSION = 1
STATS_PREFIX = "latent_stats."
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


class CheckpointError(UserError, ValueError):
    """A file that cannot be loaded as a VAE checkpoint; the message names the file and the problem."""


@dataclass(frozen=True)
class LatentStats:
    """Per-dimension statistics of the latent means over a training set.

    Used by the wrappers to standardise latents and to drop inactive dimensions.
    """

    mean: np.ndarray
    """``(z,)`` mean of mu per dimension."""
    std: np.ndarray
    """``(z,)`` standard deviation of mu per dimension."""
    active: np.ndarray
    """``(z,)`` bool: dimensions that carry information (KL above a threshold)."""

    def __post_init__(self) -> None:
        shapes = {np.shape(self.mean), np.shape(self.std), np.shape(self.active)}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            raise ValueError(f"LatentStats mean, std and active must all have shape (z,), got {sorted(shapes)}")


@dataclass(frozen=True)
class VAECheckpoint:
    """What :func:`load_vae` returns: the model in eval mode and everything that describes it."""

    vae: ConvVAE
    frame_spec: FrameSpec
    metadata: dict[str, Any] = field(default_factory=dict)
    latent_stats: LatentStats | None = None
    path: Path | None = None


def clean_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of the weights of ``model``, without ``_orig_mod.``/``module.`` prefixes.

    Works for plain, ``torch.compile``d, DDP-wrapped and channels-last models alike.
    """
    clean = {}
    for name, tensor in model.state_dict().items():
        for prefix in _WRAPPER_PREFIXES:
            name = name.replace(prefix, "")
        clean[name] = tensor.detach().to("cpu").contiguous()
    return clean


def save_vae(
    path: str | os.PathLike,
    vae: torch.nn.Module,
    frame_spec: FrameSpec,
    *,
    latent_stats: LatentStats | None = None,
    **metadata: Any,
) -> None:
    """Write ``vae`` with its frame spec and JSON-serialisable ``metadata`` to ``path`` atomically."""
    inner = getattr(vae, "module", vae)
    inner = getattr(inner, "_orig_mod", inner)
    config: VAEConfig = inner.config
    if (frame_spec.height, frame_spec.width, frame_spec.channels) != (config.height, config.width, config.channels):
        raise ValueError(
            f"frame spec output {frame_spec.shape} does not match the VAE input "
            f"{(config.height, config.width, config.channels)}"
        )
    tensors = clean_state_dict(vae)
    if latent_stats is not None:
        tensors[STATS_PREFIX + "mean"] = torch.as_tensor(np.asarray(latent_stats.mean, dtype=np.float32))
        tensors[STATS_PREFIX + "std"] = torch.as_tensor(np.asarray(latent_stats.std, dtype=np.float32))
        tensors[STATS_PREFIX + "active"] = torch.as_tensor(np.asarray(latent_stats.active, dtype=bool))
    header = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "vae_config": json.dumps(config.to_dict()),
        "frame_spec": json.dumps(frame_spec.to_dict()),
        "metadata": json.dumps(metadata),
    }
    save_tensors(path, tensors, header)


def save_untrained_vae(path: str | os.PathLike | None = None, *, size: int = 16, latent_dim: int = 4) -> str:
    """Save a small untrained VAE for ``size`` x ``size`` RGB frames (plain resize) and return its path.

    For runnable examples and smoke tests; ``path`` defaults to ``vae.safetensors`` in a new
    temporary folder.

    >>> load_vae(save_untrained_vae()).vae.config.latent_dim
    4
    """
    if path is None:
        path = Path(tempfile.mkdtemp()) / "vae.safetensors"
    config = VAEConfig(size, size, latent_dim=latent_dim, width_multiplier=0.25)
    save_vae(path, ConvVAE(config), FrameSpec(size, size))
    return str(path)


@dataclass(frozen=True)
class FileFormat:
    """What a self-describing safetensors file declares in its header, and how to make one (for errors)."""

    name: str
    """The header's ``format`` value."""
    version: int
    """The header's ``format_version`` this worldmodel reads."""
    kind: str
    """What the file is, in words: ``"VAE checkpoint"``."""
    maker: str
    """What writes such files, in words."""
    resume_hint: str
    """How to get a good file back after a truncated one."""


VAE_FORMAT = FileFormat(
    FORMAT_NAME,
    FORMAT_VERSION,
    "VAE checkpoint",
    "`worldmodel train-vae` or worldmodel.save_vae",
    "`worldmodel train-vae --resume` continues from the last good checkpoint",
)


def _unreadable(path: Path, exc: Exception, fmt: FileFormat) -> str:
    return (
        f"{path} is not a readable safetensors file (truncated or corrupt?): {exc}. "
        f"Re-copy it or retrain; {fmt.resume_hint}."
    )


def read_format_header(path: str | os.PathLike, fmt: FileFormat = VAE_FORMAT) -> dict[str, str]:
    """The JSON-string metadata of a safetensors file, checked for ``fmt``'s format and version; loads no weights.

    Cheap and free of torch computation, so worker processes can learn a checkpoint's
    frame spec without touching torch's thread pool.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise FileNotFoundError(
            f"{fmt.kind} {path} {what}; pass a .safetensors file written by {fmt.maker} (e.g. RUN_DIR/best.safetensors)"
        )
    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(_unreadable(path, exc, fmt)) from exc
    if header.get("format") != fmt.name:
        raise CheckpointError(
            f"{path} is a safetensors file but not a worldmodel {fmt.kind} (format={header.get('format')!r}); "
            f"{fmt.kind}s are written by {fmt.maker}"
        )
    if header.get("format_version") != str(fmt.version):
        raise CheckpointError(
            f"{path} has checkpoint format version {header.get('format_version')!r}; this worldmodel reads "
            f"version {fmt.version}. Upgrade worldmodel or re-save the checkpoint."
        )
    return header


CHECKSUM_KEY = "tensors_sha256"
"""Header key of the SHA-256 of a checkpoint's tensors (:func:`tensors_sha256`); files written before it have none."""


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """Hex SHA-256 of tensors: each one's name, dtype, shape and bytes, in name order.

    >>> tensors_sha256({"w": torch.zeros(2)}) == tensors_sha256({"w": torch.zeros(2)})
    True
    >>> tensors_sha256({"w": torch.zeros(2)}) == tensors_sha256({"w": torch.tensor([0.0, 1e-30])})
    False
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], header: dict[str, str]) -> None:
    """Write ``tensors`` and ``header`` to a safetensors file atomically, with the checksum of the tensors."""
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={**header, CHECKSUM_KEY: tensors_sha256(tensors)})


def read_tensors(path: str | os.PathLike, fmt: FileFormat = VAE_FORMAT) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, on the CPU.

    A truncated file, tensors that no longer match the checksum the file was written with
    (flipped bytes), or weights that are NaN or infinite (a diverged training saved without
    the NaN guard) raise :class:`CheckpointError`.
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}
            expected = (f.metadata() or {}).get(CHECKSUM_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(_unreadable(Path(path), exc, fmt)) from exc
    if expected is not None and tensors_sha256(tensors) != expected:
        raise CheckpointError(
            f"{path}: its tensors do not match the checksum it was written with (the file is corrupt). "
            f"Re-copy it or retrain; {fmt.resume_hint}."
        )
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} of its tensors hold NaN or infinite values ({', '.join(sorted(bad)[:3])}"
            f"{', ...' if len(bad) > 3 else ''}): the training that wrote it diverged. Use an earlier checkpoint "
            f"of that run or retrain; {fmt.resume_hint}."
        )
    return tensors


def read_header(path: str | os.PathLike) -> dict[str, str]:
    """The JSON-string metadata of a VAE checkpoint, checked for format and version; loads no weights."""
    return read_format_header(path, VAE_FORMAT)


def read_frame_spec(path: str | os.PathLike) -> FrameSpec:
    """The :class:`FrameSpec` stored in a VAE checkpoint, read from its header only."""
    header = read_header(path)
    try:
        return FrameSpec.from_dict(json.loads(header["frame_spec"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has malformed checkpoint metadata: {exc}") from exc


def load_vae(path: str | os.PathLike, device: torch.device | str = "cpu") -> VAECheckpoint:
    """Rebuild the VAE (in eval mode, on ``device``) and its frame spec from a checkpoint file.

    Raises :class:`CheckpointError` for a truncated file, a file that is not a VAE
    checkpoint, an unknown format version, or weights that do not match the config.
    """
    path = Path(path)
    header = read_header(path)
    tensors = read_tensors(path)
    try:
        config = VAEConfig.from_dict(json.loads(header["vae_config"]))
        frame_spec = FrameSpec.from_dict(json.loads(header["frame_spec"]))
        metadata = json.loads(header.get("metadata", "{}"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has malformed checkpoint metadata: {exc}") from exc
    stats_tensors = {k[len(STATS_PREFIX) :]: tensors.pop(k) for k in list(tensors) if k.startswith(STATS_PREFIX)}
    vae = ConvVAE(config)
    try:
        vae.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the stored VAEConfig {config}: {exc}") from exc
    latent_stats = None
    if stats_tensors:
        try:
            latent_stats = LatentStats(
                mean=stats_tensors["mean"].numpy(),
                std=stats_tensors["std"].numpy(),
                active=stats_tensors["active"].numpy().astype(bool),
            )
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"{path}: incomplete latent statistics: {exc}") from exc
        if latent_stats.mean.shape != (config.latent_dim,):
            raise CheckpointError(
                f"{path}: latent statistics have shape {latent_stats.mean.shape}, expected ({config.latent_dim},)"
            )
    return VAECheckpoint(
        vae=vae.to(device).eval(),
        frame_spec=frame_spec,
        metadata=metadata,
        latent_stats=latent_stats,
        path=path,
    )


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (bundles record it to detect a changed VAE)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

"""The one source of truth for turning environment frames into VAE inputs.

Frames are ``uint8``, HWC, 0..255 everywhere except inside :func:`frames_to_tensor`.
Collection, training and the wrappers all call :func:`preprocess_frame` (through
:meth:`FrameSpec.apply` / :func:`preprocess_frames`) and :func:`frames_to_tensor`;
nothing else may crop, resize or normalise frames. The :class:`FrameSpec` travels
inside every dataset manifest and VAE checkpoint.

>>> import numpy as np
>>> spec = FrameSpec(height=64, width=64, crop=(0, 0, 84, 96))
>>> frame = np.zeros((96, 96, 3), dtype=np.uint8)
>>> spec.apply(frame).shape
(64, 64, 3)
>>> frames_to_tensor(spec.apply(frame)[None], spec).shape
torch.Size([1, 3, 64, 64])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from worldmodel.common.dictconfig import check_known_fields

INTERPOLATIONS = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST,
    "cubic": cv2.INTER_CUBIC,
}


@dataclass(frozen=True)
class FrameSpec:
    """How a raw ``uint8`` HWC frame becomes a VAE input frame.

    Applied in this order: crop, resize, colour conversion.
    """

    height: int = 64
    """Output height in pixels."""
    width: int = 64
    """Output width in pixels."""
    crop: tuple[int, int, int, int] | None = None
    """Crop box ``(top, left, bottom, right)`` in source pixels, bottom/right exclusive; None keeps all."""
    grayscale: bool = False
    """Convert RGB to one luminance channel (output keeps a channel axis: ``(h, w, 1)``)."""
    interpolation: str = "area"
    """cv2 interpolation used by the resize: one of ``area``, ``linear``, ``nearest``, ``cubic``."""

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"FrameSpec size must be positive, got height={self.height} width={self.width}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"FrameSpec interpolation must be one of {sorted(INTERPOLATIONS)}, got {self.interpolation!r}"
            )
        if self.crop is not None:
            crop = tuple(int(v) for v in self.crop)
            if len(crop) != 4:
                raise ValueError(f"FrameSpec crop must be (top, left, bottom, right), got {self.crop!r}")
            top, left, bottom, right = crop
            if top < 0 or left < 0 or bottom <= top or right <= left:
                raise ValueError(
                    f"FrameSpec crop box (top, left, bottom, right)={crop} is empty or negative; "
                    "it needs 0 <= top < bottom and 0 <= left < right"
                )
            object.__setattr__(self, "crop", crop)

    @property
    def channels(self) -> int:
        """Channels of the output frame: 1 for grayscale, 3 for RGB."""
        return 1 if self.grayscale else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        """Output frame shape ``(height, width, channels)``."""
        return (self.height, self.width, self.channels)

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """Preprocess one frame; see :func:`preprocess_frame`."""
        return preprocess_frame(frame, self)

    def check_source(self, frame_shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` if frames of ``frame_shape`` (HWC) cannot be preprocessed by this spec."""
        if len(frame_shape) != 3 or frame_shape[2] not in (1, 3):
            raise ValueError(f"expected an image frame of shape (H, W, 1 or 3), got shape {tuple(frame_shape)}")
        if self.crop is not None:
            _top, _left, bottom, right = self.crop
            h, w = frame_shape[:2]
            if bottom > h or right > w:
                raise ValueError(
                    f"crop box (top, left, bottom, right)={self.crop} lies outside the {h}x{w} (HxW) frame; "
                    f"use a box with bottom <= {h} and right <= {w}"
                )
        if not self.grayscale and frame_shape[2] == 1:
            raise ValueError("the spec asks for RGB output but frames have 1 channel; set grayscale=True")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (lists, not tuples)."""
        d = dataclasses.asdict(self)
        d["crop"] = list(self.crop) if self.crop is not None else None
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrameSpec:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        check_known_fields(cls, data)
        data = dict(data)
        if data.get("crop") is not None:
            data["crop"] = tuple(data["crop"])
        return cls(**data)


def preprocess_frame(frame: np.ndarray, spec: FrameSpec) -> np.ndarray:
    """Crop, resize and colour-convert one ``uint8`` HWC frame to ``spec.shape``.

    >>> import numpy as np
    >>> wide = np.zeros((40, 80, 3), dtype=np.uint8)
    >>> preprocess_frame(wide, FrameSpec(height=32, width=48, grayscale=True)).shape
    (32, 48, 1)
    """
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        got = frame.dtype if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"expected a uint8 numpy frame, got {got}")
    if frame.ndim == 2:
        frame = frame[:, :, None]
    spec.check_source(frame.shape)
    if spec.crop is not None:
        top, left, bottom, right = spec.crop
        frame = frame[top:bottom, left:right]
    if frame.shape[:2] != (spec.height, spec.width):
        # cv2 sizes are (width, height).
        frame = cv2.resize(frame, (spec.width, spec.height), interpolation=INTERPOLATIONS[spec.interpolation])
        if frame.ndim == 2:
            frame = frame[:, :, None]
    if spec.grayscale and frame.shape[2] == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[:, :, None]
    return np.ascontiguousarray(frame)


def preprocess_frames(frames: np.ndarray, spec: FrameSpec) -> np.ndarray:
    """Apply :func:`preprocess_frame` to a batch ``(N, H, W, C)``; returns ``(N, *spec.shape)`` uint8."""
    out = np.empty((len(frames), *spec.shape), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = preprocess_frame(frame, spec)
    return out


def check_frames(frames: np.ndarray | torch.Tensor, spec: FrameSpec) -> None:
    """Raise ``ValueError`` unless ``frames`` is a uint8 batch of preprocessed frames ``(N, *spec.shape)``."""
    dtype_ok = frames.dtype == (torch.uint8 if isinstance(frames, torch.Tensor) else np.uint8)
    if not dtype_ok:
        raise ValueError(f"expected uint8 frames, got dtype {frames.dtype}")
    if frames.ndim != 4:
        raise ValueError(f"expected a batch of frames (N, H, W, C), got rank {frames.ndim} shape {tuple(frames.shape)}")
    if tuple(frames.shape[1:]) != spec.shape:
        raise ValueError(
            f"expected frames of shape (N, {spec.height}, {spec.width}, {spec.channels}) after the frame spec, "
            f"got {tuple(frames.shape)}"
        )


def frames_to_tensor(
    frames: np.ndarray | torch.Tensor,
    spec: FrameSpec,
    device: torch.device | str = "cpu",
    *,
    channels_last: bool = False,
) -> torch.Tensor:
    """Turn uint8 frames ``(N, h, w, c)`` into float32 ``(N, c, h, w)`` in [0, 1] on ``device``.

    The uint8 batch is moved to the device first (4x less to transfer), then converted.
    """
    check_frames(frames, spec)
    x = torch.as_tensor(frames).to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (N, c, h, w)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return x.contiguous(memory_format=memory_format)


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`frames_to_tensor`: float ``(N, c, h, w)`` in [0, 1] to uint8 ``(N, h, w, c)``.

    >>> import numpy as np
    >>> frames = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    >>> spec = FrameSpec(height=4, width=4)
    >>> bool((tensor_to_frames(frames_to_tensor(frames, spec)) == frames).all())
    True
    """
    x = x.detach().float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()

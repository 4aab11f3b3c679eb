"""Browser-playable H.264 videos of an agent: env frame | VAE reconstruction | return so far.

Panels are scaled with :class:`~worldmodel.frames.FrameSpec` (nearest neighbour), the
one place frames are resized; the file is written through imageio-ffmpeg with libx264
and yuv420p, which browsers play (OpenCV's pip wheel only writes mp4v).

>>> import tempfile, pathlib
>>> import numpy as np
>>> path = pathlib.Path(tempfile.mkdtemp()) / "demo.mp4"
>>> with PanelVideoWriter(path, panel=64, fps=10) as video:
...     video.add(np.zeros((96, 96, 3), np.uint8), np.zeros((32, 32, 1), np.uint8), [0.5, 1.0])
>>> video_codec(path), video.size
('h264', (192, 64))
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from worldmodel.common.atomic import atomic_path
from worldmodel.frames import FrameSpec

TEXT_COLOUR = (255, 255, 255)
CURVE_COLOUR = (80, 200, 120)
PANEL_BACKGROUND = 24


def fit_panel(frame: np.ndarray, panel: int) -> np.ndarray:
    """Scale a uint8 HWC frame to ``(panel, panel, 3)`` (nearest neighbour; grayscale shown as RGB)."""
    rgb = np.repeat(frame, 3, axis=2) if frame.ndim == 3 and frame.shape[2] == 1 else frame
    return FrameSpec(height=panel, width=panel, interpolation="nearest").apply(rgb)


def return_panel(returns: list[float], panel: int) -> np.ndarray:
    """A panel with the return so far as text and its curve over the episode's steps."""
    image = np.full((panel, panel, 3), PANEL_BACKGROUND, dtype=np.uint8)
    scale = panel / 192
    current = returns[-1] if returns else 0.0
    cv2.putText(image, "return", (8, int(24 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, TEXT_COLOUR, 1)
    cv2.putText(
        image, f"{current:.2f}", (8, int(60 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, 1.0 * scale, TEXT_COLOUR, 2
    )
    cv2.putText(
        image, f"step {len(returns)}", (8, int(84 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, TEXT_COLOUR, 1
    )
    if len(returns) >= 2:
        values = np.asarray(returns, dtype=np.float64)
        top, bottom = int(panel * 0.5), panel - 8
        low, high = min(values.min(), 0.0), max(values.max(), 0.0)
        span = max(high - low, 1e-6)
        xs = np.linspace(8, panel - 8, len(values))
        ys = bottom - (values - low) / span * (bottom - top)
        points = np.stack([xs, ys], axis=1).round().astype(np.int32)
        cv2.polylines(image, [points.reshape(-1, 1, 2)], False, CURVE_COLOUR, 1)
    return image


class PanelVideoWriter:
    """Write three-panel frames to an H.264 MP4, atomically (the file appears when closed)."""

    def __init__(self, path: str | os.PathLike, *, panel: int = 192, fps: int = 30) -> None:
        if panel % 2:
            raise ValueError(f"panel size must be even for H.264 (yuv420p), got {panel}")
        self.path = Path(path)
        self.panel = panel
        self.size = (3 * panel, panel)  # (width, height), as ffmpeg and cv2 take sizes
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        import imageio_ffmpeg  # imported on use: evaluating without a video needs no ffmpeg

        self._writer = imageio_ffmpeg.write_frames(
            str(tmp),
            self.size,
            fps=fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            macro_block_size=2,
            output_params=["-f", "mp4", "-movflags", "+faststart"],
        )
        self._writer.send(None)

    def add(self, env_frame: np.ndarray, reconstruction: np.ndarray, returns: list[float]) -> None:
        """Append one video frame from the raw env frame, the VAE reconstruction and the returns so far."""
        panels = [fit_panel(env_frame, self.panel), fit_panel(reconstruction, self.panel)]
        row = np.concatenate([*panels, return_panel(returns, self.panel)], axis=1)
        self._writer.send(np.ascontiguousarray(row).tobytes())

    def close(self, error: BaseException | None = None) -> None:
        self._writer.close()
        if error is None:
            self._atomic.__exit__(None, None, None)
        else:
            self._atomic.__exit__(type(error), error, error.__traceback__)

    def __enter__(self) -> PanelVideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(exc)


def video_codec(path: str | os.PathLike) -> str:
    """The codec name of the first video stream of ``path``, as ffmpeg reports it (e.g. ``h264``)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    reader.close()
    return str(meta["codec"]).split()[0]

"""Gather the next batches of frames in a background thread while the model trains.

:class:`BatchPrefetcher` works on any frame source with ``frames(indices)`` (a
:class:`~worldmodel.data.reader.FrameDataset` or a :class:`~worldmodel.data.mixture.FrameMixture`):
reading memory-mapped shards overlaps the training step instead of stalling it.

>>> [c.tolist() for c in chunks(np.arange(5), 2)]
[[0, 1], [2, 3], [4]]
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def chunks(indices: np.ndarray, size: int) -> list[np.ndarray]:
    """``indices`` in consecutive pieces of ``size`` (the last one shorter)."""
    return [indices[i : i + size] for i in range(0, len(indices), size)]


class BatchPrefetcher:
    """Gather uint8 batches ``dataset.frames(indices)`` in a background thread, ``depth`` ahead.

    Iterating yields uint8 tensors ``(B, h, w, c)`` (pinned when ``pin_memory``);
    ``wait_s`` is the time the consumer spent blocked waiting for data. An error in the
    thread is raised in the consumer.

    >>> class Source:
    ...     def frames(self, idx): return np.zeros((len(idx), 2, 2, 3), np.uint8)
    >>> with BatchPrefetcher(Source(), [np.arange(4), np.arange(2)]) as batches:
    ...     [tuple(b.shape) for b in batches]
    [(4, 2, 2, 3), (2, 2, 2, 3)]
    """

    def __init__(self, dataset: Any, batches: list[np.ndarray], *, depth: int = 3, pin_memory: bool = False) -> None:
        self.wait_s = 0.0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._count = len(batches)
        self._thread = threading.Thread(target=self._work, args=(dataset, batches, pin_memory), daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, dataset: Any, batches: list[np.ndarray], pin_memory: bool) -> None:
        try:
            for idx in batches:
                frames = torch.from_numpy(dataset.frames(idx))
                if not self._put(frames.pin_memory() if pin_memory else frames):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for _ in range(self._count):
            start = time.perf_counter()
            item = self._queue.get()
            self.wait_s += time.perf_counter() - start
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> BatchPrefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

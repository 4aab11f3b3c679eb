import time

import numpy as np
import pytest

from worldmodel.training.prefetch import BatchPrefetcher


def test_prefetcher_reports_errors_and_waits():
    class Broken:
        def frames(self, idx):
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"), BatchPrefetcher(Broken(), [np.arange(2)]) as batches:
        list(batches)

    class Slow:
        def frames(self, idx):
            time.sleep(0.05)
            return np.zeros((len(idx), 2, 2, 3), np.uint8)

    with BatchPrefetcher(Slow(), [np.arange(2)] * 3) as batches:
        assert len(list(batches)) == 3
    assert batches.wait_s > 0.1

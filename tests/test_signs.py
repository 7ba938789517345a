"""One sign convention after every compression: modes agree at 1, 2 and 3 ranks.

Each method runs on the row-distributed matrix and, on every rank, serially on the whole
matrix; this rank's rows of the distributed modes must equal the same rows of the serial
modes without any sign alignment by the test.
"""

from __future__ import annotations

import numpy as np
import pytest

import rom
from rom.parallel import distribute_rows

pytestmark = [pytest.mark.mpi, pytest.mark.partition]

N, M, RANK = 300, 24, 5

METHODS = {
    "pod-snapshots": lambda X, c: rom.pod(X, comm=c, pod_method="snapshots", rank=RANK),
    "pod-qr": lambda X, c: rom.pod(X, comm=c, pod_method="qr", rank=RANK),
    "isvd": lambda X, c: rom.IncrementalSVD(rank=RANK, comm=c).fit(X, chunk=5),
    "compress-incremental": lambda X, c: rom.compress(
        X, method="incremental", comm=c, rank=RANK, chunk=5
    ),
    "compress-hapod": lambda X, c: rom.compress(
        X, method="hapod", comm=c, rel_l2_err=1e-3, chunk=6
    ),
    "randomized": lambda X, c: rom.randomized_svd(X, rank=RANK, comm=c, seed=1),
}


def _modes(result) -> np.ndarray:
    for name in ("modes", "modes_"):
        if hasattr(result, name):
            return np.asarray(getattr(result, name))
    return np.asarray(result[0])


@pytest.mark.parametrize("method", sorted(METHODS))
def test_modes_agree_across_rank_counts_without_sign_alignment(method, comm):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((N, M)) @ np.diag(0.6 ** np.arange(M)) @ rng.standard_normal((M, M))
    U_serial = _modes(METHODS[method](X, None))
    U_dist = _modes(METHODS[method](distribute_rows(X, comm), comm))
    k = min(U_serial.shape[1], U_dist.shape[1], RANK)
    assert k == RANK
    np.testing.assert_allclose(U_dist[:, :k], distribute_rows(U_serial, comm)[:, :k], atol=1e-8)

"""Shared fixtures. The suite runs serially and under ``mpirun -n 2`` / ``-n 3``.

* Tests marked ``mpi`` are collective: they run at 1 rank and again at 2 ranks
  (``mpirun -n 2 python -m pytest -m mpi``); ``partition`` tests also at 3 ranks.
* Every test gets the world communicator from the ``comm`` fixture; a barrier after each test
  keeps the ranks in step.
* ``scripts/test.sh`` sends the output of ranks > 0 to ``.pytest-rank<r>.log`` (printed when a
  rank fails), so the console shows rank 0 only.
"""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from rom.parallel import limit_blas_per_rank

_WORLD = MPI.COMM_WORLD
limit_blas_per_rank()  # under mpirun: one BLAS pool per rank, sized to its share of the cores


@pytest.fixture
def comm():
    """The world communicator (size 1 in the serial run)."""
    return _WORLD


@pytest.fixture
def rng():
    """A seeded generator, identical on every rank."""
    return np.random.default_rng(20261122)


@pytest.fixture
def shared_tmp_path(tmp_path, comm):
    """A temporary directory that every rank agrees on (rank 0's ``tmp_path``)."""
    path = comm.bcast(str(tmp_path) if comm.rank == 0 else None, root=0)
    from pathlib import Path

    return Path(path)


@pytest.fixture(autouse=True)
def _barrier_after_test():
    yield
    _WORLD.Barrier()

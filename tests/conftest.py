"""Shared fixtures. The suite runs serially and under ``mpirun -n 2`` / ``-n 3``.

* Tests marked ``mpi`` are collective: they run at 1 rank and again at 2 ranks
  (``mpirun -n 2 python -m pytest -m mpi``); ``partition`` tests also at 3 ranks.
* Every test gets the world communicator from the ``comm`` fixture; a barrier after each test
  keeps the ranks in step.
* ``run_case`` runs a case of ``cases/`` once per session and argument list, so that
  ``tests/test_case_*.py`` and ``tests/test_regression.py`` share the run; ``case_summary``
  adds the checks of the summary every case writes.
* ``scripts/test.sh`` sends the output of ranks > 0 to ``.pytest-rank<r>.log`` (printed when a
  rank fails), so the console shows rank 0 only.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from mpi4py import MPI

from rom.parallel import limit_blas_per_rank

# pyMOR, imported by test_pymor.py at collection, starts an MPI event loop on every rank but 0
# when MPI is enabled in its config; the suite runs under mpirun, so that must be off.
os.environ.setdefault("PYMOR_CONFIG_DISABLE", "MPI")

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


@pytest.fixture(scope="session")
def run_case(tmp_path_factory):
    """``run_case(name, args) -> (out, results)``: run ``cases/<name>.py`` as a script with
    ``args`` into a fresh directory (collective), once per session and argument list; later
    calls with the same arguments return the first run's directory and results."""
    import runpy
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    runs: dict[tuple, tuple] = {}

    def run(name: str, args: list[str]):
        key = (name, tuple(args))
        if key not in runs:
            base = str(tmp_path_factory.mktemp(name)) if _WORLD.rank == 0 else None
            out = Path(_WORLD.bcast(base, root=0)) / name
            if str(root / "cases") not in sys.path:
                sys.path.insert(0, str(root / "cases"))  # cases/common.py
            script = root / "cases" / f"{name}.py"
            saved, sys.argv = sys.argv, [str(script), *args, "--out", str(out)]
            try:
                results = runpy.run_path(str(script), run_name="__main__")["results"]
            finally:
                sys.argv = saved
            runs[key] = (out, results)
        return runs[key]

    return run


@pytest.fixture(scope="session")
def case_summary(run_case):
    """``case_summary(name, args, files=()) -> (out, results, summary)``: ``run_case``, then the
    checks every case's run passes: its ``summary.json`` names the case and the rank count and
    has the keys ``cases/common.py`` writes, and the ``files`` are in ``out``."""
    import json

    def run(name: str, args: list[str], files=()):
        out, results = run_case(name, args)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["case"] == name and summary["ranks"] == _WORLD.size
        for key in ("args", "results", "timings_s", "files", "version"):
            assert key in summary
        for f in files:
            assert (out / f).exists(), f
        return out, results, summary

    return run


@pytest.fixture(autouse=True)
def _barrier_after_test():
    yield
    _WORLD.Barrier()

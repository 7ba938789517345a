r"""Time-local bases: one POD basis per time window, selected by time, switched online.

The training trajectories :math:`U_j = (u_j^1, \dots, u_j^T)` share one time grid. The steps
:math:`1..T` are cut into :math:`W` contiguous windows :math:`I_1, \dots, I_W` of (nearly)
equal length, and window :math:`w` gets the :math:`M`-orthonormal POD basis :math:`\Psi_w` of
the snapshots of every trajectory at its steps,

.. math::

    S_w = [u_j^t]_{j,\ t \in I_w^{+}}, \qquad
    I_w^{+} = \{\max(a_w - o, 1), \dots, b_w\},

with :math:`I_w = \{a_w..b_w\}` and the ``overlap`` :math:`o` steps before the window added
(with :math:`o \ge 1` the basis also represents the state its ROM starts from). Sizes follow
the truncation rule of :mod:`rom.compression.truncation` per window.

Online the basis is chosen by the time step alone (no field, no parameter: selection costs
nothing). A reduced trajectory runs window by window; at the switch from :math:`w` to
:math:`w+1` the state is carried over by the :math:`M`-orthogonal projection of the
reconstructed field onto the new basis,

.. math::

    c_{w+1}^{a_{w+1}-1} = \Psi_{w+1}^T M \Psi_w\, c_w^{b_w}, \qquad
    \text{(the } N_{w+1}\times N_w \text{ transfer matrix, computed once offline)},

the best approximation of :math:`\Psi_w c_w` in :math:`\mathrm{span}(\Psi_{w+1})`
(docs/theory.md §3.5). Each window trades fewer directions (the states of a short stretch of
time) against one projection per switch.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.compression import CompressionResult
from rom.compression import pod
from rom.compression.truncation import truncation_rank
from rom.compression.truncation import validate_truncation
from rom.local._items import group_items
from rom.options import Interval
from rom.options import keep_options
from rom.options import option_error
from rom.parallel import Product
from rom.parallel import allreduce_sum
from rom.parallel import apply_product
from rom.parallel import check_collective
from rom.parallel import get_comm
from rom.parallel import norms
from rom.parallel import validate_local_rows

__all__ = ["TimeWindowBases"]


class TimeWindowBases:
    r"""One POD basis per time window of the training trajectories (module docstring).

    Parameters
    ----------
    n_windows : int
        :math:`W`, at most the number of steps :math:`T`.
    rank : int, optional
        Basis size cap per window.
    rel_l2_err : float, optional
        Energy tolerance :math:`\varepsilon` per window. At least one of ``rank`` and
        ``rel_l2_err``.
    product : operator, optional
        Inner product :math:`M` on owned rows (Euclidean when ``None``).
    comm : mpi4py communicator, optional
        Serial when ``None``; :meth:`fit` and :meth:`transfer` are collective.
    compressor : callable
        ``compressor(X, product=, comm=)`` returning all modes (default
        :func:`rom.compression.pod`).
    overlap : int
        :math:`o \ge 0` steps before each window added to its training snapshots.

    Attributes
    ----------
    windows_ : ndarray of shape (n_windows, 2)
        ``[start, stop)`` column positions within a trajectory (0-based: column ``t`` holds
        step ``t + 1``).
    modes_ : list of ndarray
        All POD modes of each window's training snapshots (owned rows).
    singular_values_ : list of ndarray
    energies_ : ndarray of shape (n_windows,)
        :math:`\|S_w\|_M^2`.
    bases_ : list of ndarray of shape (n_local, N_w)
        The truncated bases.
    basis_sizes_ : ndarray of shape (n_windows,)
    n_steps_ : int
        :math:`T`.
    """

    def __init__(
        self,
        *,
        n_windows: int = 2,
        rank: int | None = None,
        rel_l2_err: float | None = None,
        product: Product | None = None,
        comm: MPI.Comm | None = None,
        compressor: Callable[..., CompressionResult] = pod,
        overlap: int = 1,
    ) -> None:
        keep_options(self, locals())

    def _option_error(self) -> str | None:
        err = option_error(
            self,
            {
                "n_windows": Interval(1, None, integer=True),
                "overlap": Interval(0, None, integer=True),
            },
        )
        if err is not None:
            return err
        if self.rank is None and self.rel_l2_err is None:
            return "give rank= or rel_l2_err= (the window basis size rule)"
        return validate_truncation(rank=self.rank, rel_l2_err=self.rel_l2_err)

    def fit(self, X: np.ndarray, groups: np.ndarray) -> TimeWindowBases:
        """POD basis of every window from the trajectories ``groups`` of ``X`` (collective).

        Parameters
        ----------
        X : ndarray of shape (n_local, n)
            Owned rows of the training snapshots.
        groups : ndarray of shape (n,)
            Trajectory id of each column; every trajectory has the same number :math:`T` of
            columns, in time order (step ``t + 1`` is its ``t``-th column).

        Returns
        -------
        self
        """
        comm = get_comm(self.comm)
        err = self._option_error()
        items: list[np.ndarray] = []
        if err is None:
            items, err = group_items(np.shape(X)[1] if np.ndim(X) == 2 else 0, groups)
        if err is None and int(self.n_windows) > len(items[0]):
            err = f"n_windows={self.n_windows} exceeds the number of steps ({len(items[0])})"
        check_collective(err, comm)
        X, _ = validate_local_rows(X, "X", comm)
        T = len(items[0])
        cuts = np.array_split(np.arange(T), int(self.n_windows))
        self.windows_ = np.array([[c[0], c[-1] + 1] for c in cuts], dtype=np.int64)
        self.n_steps_ = T
        self._n_local = X.shape[0]
        steps = np.array(items)  # (n_trajectories, T): column of step t of trajectory j
        self.modes_, self.singular_values_, self.bases_, energies = [], [], [], []
        for start, stop in self.windows_:
            cols = np.sort(steps[:, max(start - int(self.overlap), 0) : stop].ravel())
            Xw = X[:, cols]
            r = self.compressor(Xw, product=self.product, comm=comm)
            energy = float(np.sum(norms(Xw, comm, self.product) ** 2))
            N = truncation_rank(
                r.singular_values, rank=self.rank, rel_l2_err=self.rel_l2_err, total_energy=energy
            )
            self.modes_.append(r.modes)
            self.singular_values_.append(np.asarray(r.singular_values))
            self.bases_.append(r.modes[:, :N])
            energies.append(energy)
        self.energies_ = np.array(energies)
        self.basis_sizes_ = np.array([B.shape[1] for B in self.bases_], dtype=np.int64)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "bases_"):
            raise RuntimeError("TimeWindowBases is not fitted; call fit first")

    def window_of(self, t: int) -> int:
        """Window of trajectory column ``t`` (step ``t + 1``), ``0 <= t < T``."""
        self._check_fitted()
        if not 0 <= int(t) < self.n_steps_:
            raise ValueError(f"t must be in [0, {self.n_steps_}), got {t}")
        return int(np.searchsorted(self.windows_[:, 1], int(t), side="right"))

    def basis(self, w: int, n: int | None = None) -> np.ndarray:
        """The first ``n`` modes of window ``w`` (default: the truncated basis ``bases_[w]``)."""
        self._check_fitted()
        if not 0 <= w < len(self.bases_):
            raise ValueError(f"window index must be in [0, {len(self.bases_)}), got {w}")
        return self.bases_[w] if n is None else self.modes_[w][:, : int(n)]

    def transfer(self, sizes: Sequence[int] | None = None) -> list[np.ndarray]:
        r"""Transfer matrices :math:`\Psi_{w+1}^T M \Psi_w` between consecutive windows.

        ``sizes`` (one per window) truncates each basis to its first modes (default: the
        fitted sizes). Replicated on every rank; collective.
        """
        self._check_fitted()
        sizes = self._sizes(sizes)
        comm = get_comm(self.comm)
        out = []
        for w in range(len(self.bases_) - 1):
            A, B = self.basis(w, sizes[w]), self.basis(w + 1, sizes[w + 1])
            out.append(allreduce_sum(B.T @ apply_product(self.product, A), comm))
        return out

    def _sizes(self, sizes: Sequence[int] | None) -> list[int]:
        if sizes is None:
            return [int(n) for n in self.basis_sizes_]
        s = [int(n) for n in sizes]
        if len(s) != len(self.bases_) or any(
            not 1 <= n <= m.shape[1] for n, m in zip(s, self.modes_, strict=False)
        ):
            raise ValueError(
                f"sizes must give 1..(modes of the window) for each of {len(self.bases_)} windows"
            )
        return s

    def solve(
        self,
        roms: Sequence[Any],
        mu: Any,
        *,
        dt: float,
        c0: np.ndarray,
        transfers: Sequence[np.ndarray],
        **options: Any,
    ) -> list[np.ndarray]:
        r"""Reduced trajectory switching bases window by window (module docstring).

        Parameters
        ----------
        roms : sequence of reduced models
            One per window, on the bases of the sizes of ``transfers``; each has
            ``solve(mu, dt=, n_steps=, c0=, t0=, **options)`` returning the states
            :math:`c^0..c^n` as columns (:class:`rom.models.galerkin.LinearAffineROM`).
        mu : parameter
        dt : float
        c0 : ndarray of shape (N_1,)
            Initial reduced state on the first window's basis.
        transfers : sequence of ndarray
            :meth:`transfer` at the sizes of ``roms``.

        Returns
        -------
        states : list of ndarray of shape (N_w, stop_w - start_w)
            The reduced states of the steps of each window, in the coordinates of its basis
            (no communication: everything is replicated).
        """
        self._check_fitted()
        if len(roms) != len(self.bases_) or len(transfers) != len(self.bases_) - 1:
            raise ValueError(
                f"need {len(self.bases_)} reduced models and {len(self.bases_) - 1} transfers"
            )
        out, c = [], np.asarray(c0, dtype=np.float64)
        for w, (start, stop) in enumerate(self.windows_):
            if w > 0:
                c = transfers[w - 1] @ out[-1][:, -1]
            C = roms[w].solve(mu, dt=dt, n_steps=int(stop - start), c0=c, t0=start * dt, **options)
            out.append(C[:, 1:])
        return out

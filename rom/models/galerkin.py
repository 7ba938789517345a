"""Galerkin reduced models of affine linear stationary and evolution problems.

Full-order model (e.g. :class:`solvers.heat.HeatModel`), stationary or time dependent:

.. math::

    A(\\mu) u = f(\\mu) \\qquad\\text{or}\\qquad
    M \\dot u + A(\\mu) u = f(\\mu, t), \\quad u(t_0) = u_0,

    A(\\mu) = \\sum_{q=1}^{Q_a} \\theta^a_q(\\mu) A_q, \\quad
    f(\\mu, t) = \\sum_{q=1}^{Q_f} \\theta^f_q(\\mu, t) f_q, \\quad
    s(u) = \\sum_{q=1}^{Q_l} \\theta^l_q(\\mu) l_q^T u .

With a basis :math:`V` (rows distributed over ranks), :math:`u \\approx V c` and Galerkin
projection give :math:`\\hat A_q = V^T A_q V`, :math:`\\hat f_q = V^T f_q`,
:math:`\\hat M = V^T M V`, :math:`\\hat l_q = V^T l_q`; each reduced matrix is a local product
summed over ranks (offline, once). In time, the theta-scheme with step :math:`\\Delta t` and
:math:`t_k = t_0 + k\\Delta t`,

.. math::

    \\Big(\\frac{\\hat M}{\\Delta t} + \\vartheta \\hat A(\\mu)\\Big) c^{k+1}
    = \\Big(\\frac{\\hat M}{\\Delta t} - (1-\\vartheta) \\hat A(\\mu)\\Big) c^k
    + \\vartheta \\hat f(\\mu, t_{k+1}) + (1-\\vartheta) \\hat f(\\mu, t_k),

is implicit Euler for :math:`\\vartheta = 1` and Crank-Nicolson for :math:`\\vartheta = 1/2`.
The online cost per parameter is :math:`O(Q_a N^2 + N^3)` for assembling and factoring plus
:math:`O(N^2)` per step: independent of the number of dofs. With a complete basis the
reduced solution equals the full-order one (to round-off).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.interop import from_pymor
from rom.models.affine import AffineDecomposition
from rom.parallel import Product
from rom.parallel import allreduce_sum
from rom.parallel import apply_product
from rom.parallel import check_collective
from rom.parallel import validate_local_rows

__all__ = ["project_operator", "project_vector", "LinearAffineROM", "space_time_error"]


def project_operator(
    operator: Product, V: np.ndarray, *, W: np.ndarray | None = None, comm: MPI.Comm | None = None
) -> np.ndarray:
    """Reduced matrix :math:`W^T A V` (Galerkin: ``W = V``), replicated on every rank.

    ``operator`` acts on owned rows like a product (:func:`rom.parallel.apply_product`).
    """
    W = V if W is None else W
    return allreduce_sum(W.T @ apply_product(operator, V), comm)


def project_vector(f: np.ndarray, V: np.ndarray, *, comm: MPI.Comm | None = None) -> np.ndarray:
    """Reduced vector :math:`V^T f` (owned rows of ``f``), replicated."""
    return allreduce_sum(V.T @ np.asarray(f, dtype=np.float64).reshape(V.shape[0]), comm)


def _as_decomposition(terms, coefficients, what: str) -> AffineDecomposition:
    if isinstance(terms, AffineDecomposition):
        if coefficients is not None:
            raise ValueError(f"{what}: give coefficients inside the AffineDecomposition, not both")
        return terms
    return AffineDecomposition(list(terms), coefficients)


class LinearAffineROM:
    """Galerkin ROM of :math:`A(\\mu)u = f(\\mu)` or :math:`M\\dot u + A(\\mu)u = f(\\mu, t)`.

    See the module doc for the equations and the theta-scheme.

    Parameters
    ----------
    mass : ndarray of shape (N, N) or None
        :math:`\\hat M = V^T M V` (the identity for an :math:`M`-orthonormal basis; ``None``
        means the identity).
    stiffness : AffineDecomposition or sequence of ndarray of shape (N, N)
        :math:`\\hat A_q` (with their coefficients :math:`\\theta^a_q(\\mu)`).
    rhs : AffineDecomposition or sequence of ndarray of shape (N,)
        :math:`\\hat f_q` (coefficients :math:`\\theta^f_q(\\mu)`, or :math:`\\theta^f_q(\\mu, t)`
        when the decomposition is ``time_dependent``).
    theta_a, theta_f : callable, optional
        :math:`\\mu \\mapsto (\\theta^a_q(\\mu))_q` and :math:`(\\theta^f_q(\\mu))_q` when the
        terms are plain sequences; without them :meth:`solve` takes the coefficient vectors.
    outputs : AffineDecomposition or sequence of ndarray of shape (N,) or (N, n_out), optional
        :math:`\\hat l_q` of the output :math:`s = \\sum_q \\theta^l_q(\\mu) \\hat l_q^T c`.
    theta_l : callable, optional
        :math:`\\mu \\mapsto (\\theta^l_q(\\mu))_q` for plain output terms.
    basis : ndarray of shape (n_local, N), optional
        Owned rows of :math:`V`, for :meth:`reconstruct` (set by :meth:`from_full`).
    """

    def __init__(
        self,
        mass: np.ndarray | None,
        stiffness: AffineDecomposition | Sequence[np.ndarray],
        rhs: AffineDecomposition | Sequence[np.ndarray],
        *,
        theta_a: Callable | None = None,
        theta_f: Callable | None = None,
        outputs: AffineDecomposition | Sequence[np.ndarray] | None = None,
        theta_l: Callable | None = None,
        basis: np.ndarray | None = None,
    ) -> None:
        a = _as_decomposition(stiffness, theta_a, "stiffness")
        f = _as_decomposition(rhs, theta_f, "rhs")
        self.operator = a.with_terms([np.asarray(x, dtype=np.float64) for x in a.terms])
        self.load = f.with_terms([np.asarray(x, dtype=np.float64) for x in f.terms])
        N = self.operator.terms[0].shape[0] if len(self.operator) else 0
        self.mass = None if mass is None else np.asarray(mass, dtype=np.float64)
        if (
            len(self.operator) == 0
            or any(x.shape != (N, N) for x in self.operator.terms)
            or (self.mass is not None and self.mass.shape != (N, N))
        ):
            raise ValueError("reduced mass and stiffness matrices must all be (N, N)")
        if any(x.shape != (N,) for x in self.load.terms):
            raise ValueError(f"reduced right-hand sides must have shape ({N},)")
        self.output = None
        if outputs is not None:
            o = _as_decomposition(outputs, theta_l, "outputs")
            terms = [np.asarray(x, dtype=np.float64).reshape(N, -1) for x in o.terms]
            if len({x.shape for x in terms}) != 1:
                raise ValueError(f"reduced output terms must all be (N, n_out) with N = {N}")
            self.output = o.with_terms(terms)
        self.basis = basis

    @property
    def n_modes(self) -> int:
        """Reduced dimension :math:`N`."""
        return self.operator.terms[0].shape[0]

    @property
    def stiffness(self) -> list[np.ndarray]:
        """Reduced operator terms :math:`\\hat A_q`."""
        return self.operator.terms

    @property
    def rhs(self) -> list[np.ndarray]:
        """Reduced load terms :math:`\\hat f_q`."""
        return self.load.terms

    @classmethod
    def from_full(
        cls,
        V: np.ndarray,
        *,
        stiffness: AffineDecomposition | Sequence[Product],
        rhs: AffineDecomposition | Sequence[np.ndarray],
        mass: Product | None = None,
        outputs: AffineDecomposition | Sequence[np.ndarray] | None = None,
        comm: MPI.Comm | None = None,
        theta_a: Callable | None = None,
        theta_f: Callable | None = None,
        theta_l: Callable | None = None,
    ) -> LinearAffineROM:
        """Galerkin projection of full-order affine terms onto the basis ``V`` (owned rows).

        Operators act on owned rows like a product (:func:`rom.parallel.apply_product`); load
        and output terms are owned rows of vectors. Collective: one reduction per term.
        ``mass=None`` leaves the reduced mass unset (stationary problems, or the identity).
        """
        V, _ = validate_local_rows(V, "basis V", comm)
        a = _as_decomposition(stiffness, theta_a, "stiffness")
        f = _as_decomposition(rhs, theta_f, "rhs")
        o = None if outputs is None else _as_decomposition(outputs, theta_l, "outputs")
        return cls(
            None if mass is None else project_operator(mass, V, comm=comm),
            a.with_terms([project_operator(x, V, comm=comm) for x in a.terms]),
            f.with_terms([project_vector(x, V, comm=comm) for x in f.terms]),
            outputs=None
            if o is None
            else o.with_terms([_project_output(x, V, comm) for x in o.terms]),
            basis=V,
        )

    def truncated(self, n: int) -> LinearAffineROM:
        """The ROM on the first ``n`` basis vectors (leading blocks; no full-order work)."""
        if not 0 < n <= self.n_modes:
            raise ValueError(f"n must be in [1, {self.n_modes}], got {n}")
        out = self.output
        return LinearAffineROM(
            None if self.mass is None else self.mass[:n, :n],
            self.operator.with_terms([a[:n, :n] for a in self.operator.terms]),
            self.load.with_terms([f[:n] for f in self.load.terms]),
            outputs=None if out is None else out.with_terms([x[:n] for x in out.terms]),
            basis=None if self.basis is None else self.basis[:, :n],
        )

    def _load_matrix(self) -> np.ndarray:
        """Reduced load terms as columns, shape (N, Q_f)."""
        if len(self.load) == 0:
            return np.zeros((self.n_modes, 0))
        return np.column_stack(self.load.terms)

    def solve_stationary(
        self,
        mu: Any = None,
        *,
        t: float | None = None,
        theta_a: np.ndarray | None = None,
        theta_f: np.ndarray | None = None,
    ) -> np.ndarray:
        """Reduced solution :math:`c` of :math:`\\hat A(\\mu) c = \\hat f(\\mu)`, shape (N,).

        ``t`` evaluates time-dependent load coefficients at that time.
        """
        ta = self.operator.evaluate(mu, given=theta_a)
        tf = self.load.evaluate(mu, t, given=theta_f)
        return np.linalg.solve(self.operator.combine(ta), self._load_matrix() @ tf)

    def solve(
        self,
        mu: Any = None,
        *,
        dt: float,
        n_steps: int,
        c0: np.ndarray | None = None,
        theta: float = 1.0,
        t0: float = 0.0,
        theta_a: np.ndarray | None = None,
        theta_f: np.ndarray | None = None,
    ) -> np.ndarray:
        """Reduced trajectory :math:`c^0, c^1, \\dots, c^n` of the theta-scheme, shape (N, n+1).

        Column ``k`` is the state at :math:`t_k = t_0 + k \\Delta t`; column 0 is ``c0``
        (default zero). ``theta=1`` is implicit Euler, ``theta=0.5`` Crank-Nicolson. One LU
        factorization per parameter gives the one-step map
        :math:`c^{k+1} = B c^k + G(\\vartheta \\phi_{k+1} + (1-\\vartheta)\\phi_k)` with
        :math:`\\phi_k = \\theta^f(\\mu, t_k)`. ``theta_f`` (explicit coefficients) is for
        time-independent loads only.
        """
        n = int(n_steps)
        if not (dt > 0) or n < 1 or not 0.0 <= theta <= 1.0:
            raise ValueError(
                f"need dt > 0, n_steps >= 1 and 0 <= theta <= 1, got dt={dt}, "
                f"n_steps={n_steps}, theta={theta}"
            )
        if self.load.time_dependent and theta_f is not None:
            raise ValueError("theta_f cannot be given for a time-dependent load; give mu")
        N = self.n_modes
        A = self.operator.combine(self.operator.evaluate(mu, given=theta_a))
        Mdt = (np.eye(N) if self.mass is None else self.mass) / dt
        times = t0 + dt * np.arange(n + 1)
        if self.load.time_dependent:
            phi = np.array([self.load.evaluate(mu, t) for t in times]).reshape(n + 1, -1)
        else:
            phi = np.tile(self.load.evaluate(mu, given=theta_f), (n + 1, 1))
        # One factorization: B = K^{-1}(M/dt - (1 - theta) A), G = K^{-1} F; then one N x N
        # mat-vec per step.
        BG = np.linalg.solve(
            Mdt + theta * A, np.column_stack([Mdt - (1.0 - theta) * A, self._load_matrix()])
        )
        B, G = BG[:, :N], BG[:, N:]
        drive = G @ (theta * phi[1:] + (1.0 - theta) * phi[:-1]).T  # (N, n)
        C = np.empty((N, n + 1))
        C[:, 0] = 0.0 if c0 is None else np.asarray(c0, dtype=np.float64).reshape(N)
        for k in range(n):
            C[:, k + 1] = B @ C[:, k] + drive[:, k]
        return C

    def outputs(
        self,
        C: np.ndarray,
        mu: Any = None,
        *,
        times: np.ndarray | None = None,
        theta_l: np.ndarray | None = None,
    ) -> np.ndarray:
        """Outputs :math:`s = \\sum_q \\theta^l_q(\\mu) \\hat l_q^T c` of reduced states.

        ``C`` of shape (N,) gives shape (n_out,); of shape (N, K) (a trajectory) gives
        (n_out, K), one column per time step. Time-dependent output coefficients are evaluated
        at ``times`` (one per column).
        """
        if self.output is None:
            raise ValueError("this model has no outputs; pass outputs= when building it")
        C = np.asarray(C, dtype=np.float64)
        Cm = C.reshape(self.n_modes, -1)
        if self.output.time_dependent:
            if times is None or np.size(times) != Cm.shape[1]:
                raise ValueError("time-dependent outputs need one time per column of C")
            S = np.column_stack(
                [self._output_matrix(mu, t, theta_l).T @ c for t, c in zip(times, Cm.T)]
            )
        else:
            S = self._output_matrix(mu, None, theta_l).T @ Cm
        return S[:, 0] if C.ndim == 1 else S

    def _output_matrix(self, mu, t, theta_l) -> np.ndarray:
        """:math:`\\sum_q \\theta^l_q \\hat l_q`, shape (N, n_out)."""
        return self.output.combine(self.output.evaluate(mu, t, given=theta_l))

    def project_state(
        self, u: np.ndarray, *, product: Product | None = None, comm: MPI.Comm | None = None
    ) -> np.ndarray:
        """Coordinates :math:`V^T P u` of owned rows ``u`` (e.g. an initial state; collective).

        For a :math:`P`-orthonormal basis these are the coordinates of the :math:`P`-orthogonal
        projection of :math:`u` onto the span of :math:`V`.
        """
        if self.basis is None:
            raise ValueError("no basis stored: build with from_full or pass basis=")
        u = np.asarray(from_pymor(u), dtype=np.float64).reshape(self.basis.shape[0], -1)
        C = allreduce_sum(self.basis.T @ apply_product(product, u), comm)
        return C[:, 0] if C.shape[1] == 1 else C

    def reconstruct(self, C: np.ndarray) -> np.ndarray:
        """Owned rows of :math:`V c` (``C`` of shape (N,) or (N, K)); needs the basis."""
        if self.basis is None:
            raise ValueError("no basis stored: build with from_full or pass basis=")
        return self.basis @ np.asarray(C, dtype=np.float64)


def _project_output(l_q: np.ndarray, V: np.ndarray, comm: MPI.Comm | None) -> np.ndarray:
    """Reduced output term :math:`V^T l_q` (owned rows of one or several functionals)."""
    L = np.asarray(l_q, dtype=np.float64).reshape(V.shape[0], -1)
    return allreduce_sum(V.T @ L, comm)


def space_time_error(
    U: np.ndarray,
    U_approx: np.ndarray,
    *,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
) -> float:
    """Relative space-time error :math:`\\sqrt{\\sum_k \\|u^k - \\tilde u^k\\|_M^2 /
    \\sum_k \\|u^k\\|_M^2}` of trajectories stored column-wise (owned rows; collective)."""
    err = (
        None
        if np.shape(U) == np.shape(U_approx)
        else (f"trajectories differ in shape: {np.shape(U)} vs {np.shape(U_approx)}")
    )
    check_collective(err, comm)
    E = U - U_approx
    num = float(allreduce_sum(np.sum(E * apply_product(product, E)), comm))
    den = float(allreduce_sum(np.sum(U * apply_product(product, U)), comm))
    return float(np.sqrt(max(num, 0.0) / den)) if den > 0 else float(np.sqrt(max(num, 0.0)))

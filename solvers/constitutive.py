"""Von Mises elasto-viscoplasticity with Norton flow: a vectorized local integrator (numpy only).

The law of :mod:`solvers.mechanics`, usable on *any* set of material points, so that a reduced
model (Casenave & Akkari, MCA 24(2):41, 2019) integrates exactly the same law at its few reduced
quadrature points as the full-order model does at all of them.

Tensors in Mandel notation
--------------------------
Symmetric tensors are vectors of ``n_comp`` components with the normal components first and the
shear components scaled by :math:`\\sqrt 2`:

* 2-D plane strain, ``n_comp = 4``: :math:`(a_{xx}, a_{yy}, a_{zz}, \\sqrt2 a_{xy})`;
* 3-D, ``n_comp = 6``: :math:`(a_{xx}, a_{yy}, a_{zz}, \\sqrt2 a_{yz}, \\sqrt2 a_{xz},
  \\sqrt2 a_{xy})`.

Then :math:`a : b = \\sum_c a_c b_c` (the cubature integrand :math:`\\sigma : \\varepsilon(\\psi_i)`
is a plain dot product), :math:`\\|a\\| = \\sqrt{a : a}` and fourth-order tensors are symmetric
``n_comp x n_comp`` matrices. In plane strain the total :math:`\\varepsilon_{zz} = 0` while
:math:`\\sigma_{zz}` and :math:`\\varepsilon^{vp}_{zz}` are free.

The model
---------
Small strains, additive split :math:`\\varepsilon = \\varepsilon^e + \\varepsilon^{vp} +
\\varepsilon^{th}`, :math:`\\varepsilon^{th} = \\alpha (T - T_{ref}) \\mathbf 1`, Hooke's law
:math:`\\sigma = \\mathbb C(T) : \\varepsilon^e = 3\\kappa\\, \\mathbb J : \\varepsilon^e
+ 2\\mu\\, \\mathbb K : \\varepsilon^e` (:math:`\\mathbb J = \\tfrac13 \\mathbf 1 \\otimes
\\mathbf 1`, :math:`\\mathbb K = \\mathbb I - \\mathbb J`), von Mises stress
:math:`\\sigma_{eq} = \\sqrt{3/2}\\, \\|s\\|`, :math:`s = \\mathbb K : \\sigma`, Norton flow with
linear isotropic hardening:

.. math::

    \\dot p = \\left\\langle \\frac{\\sigma_{eq} - R(p, T)}{K(T)} \\right\\rangle_+^{n(T)},
    \\qquad R = \\sigma_y(T) + H p, \\qquad
    \\dot\\varepsilon^{vp} = \\frac32 \\dot p \\frac{s}{\\sigma_{eq}}.

Temperature laws (:class:`Material`): :math:`E(T) = E_0 (1 - c_E (T - T_{ref}))`,
:math:`\\sigma_y(T) = \\sigma_{y0} (1 - c_y (T - T_{ref}))`,
:math:`K(T) = K_0 \\exp(-c_K (T - T_{ref}))`, :math:`n(T) = n_0 + c_n (T - T_{ref})`; constant
:math:`\\nu`, :math:`H`, :math:`\\alpha`.

Backward Euler and radial return
--------------------------------
Over a step :math:`\\Delta t` with the parameters at :math:`T_{n+1}`: the trial stress
:math:`\\sigma^{tr} = \\mathbb C : (\\varepsilon_{n+1} - \\varepsilon^{vp}_n -
\\varepsilon^{th}_{n+1})` with deviator :math:`s^{tr}` and von Mises stress :math:`q^{tr}`;
elastic when :math:`f^{tr} = q^{tr} - R(p_n) \\le 0`. Otherwise the flow direction
:math:`N = s^{tr} / \\|s^{tr}\\|` is that of the solution (radial return) and the increment
:math:`\\Delta p > 0` solves the scalar equation

.. math::

    r(\\Delta p) = f^{tr} - (3\\mu + H) \\Delta p - K \\left(\\frac{\\Delta p}{\\Delta t}
    \\right)^{1/n} = 0,

decreasing and convex on :math:`[0, f^{tr}/(3\\mu + H)]`, with :math:`r(0) = f^{tr} > 0` and
:math:`r < 0` at the right end: a root is bracketed and unique. It is solved by Newton's method
safeguarded by bisection, vectorized over all points. Then
:math:`\\sigma = \\sigma^{tr} - 2\\mu\\sqrt{3/2}\\, \\Delta p\\, N`,
:math:`\\varepsilon^{vp} = \\varepsilon^{vp}_n + \\sqrt{3/2}\\, \\Delta p\\, N`,
:math:`p = p_n + \\Delta p`.

Consistent (algorithmic) tangent, from differentiating the update with respect to
:math:`\\varepsilon_{n+1}` (Simo & Hughes, *Computational Inelasticity*, 1998, ch. 3, for the
rate-independent case; here :math:`h = 3\\mu + H + \\phi'(\\Delta p)` with
:math:`\\phi(\\Delta p) = K (\\Delta p / \\Delta t)^{1/n}`):

.. math::

    \\mathbb C^{alg} = \\mathbb C - \\frac{6\\mu^2}{h} N \\otimes N
        - \\frac{6\\mu^2 \\Delta p}{q^{tr}} (\\mathbb K - N \\otimes N),

which gives the global Newton of :mod:`solvers.mechanics` its quadratic convergence.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Material",
    "ConstitutiveResult",
    "n_components",
    "mandel_identity",
    "deviatoric_projector",
    "von_mises",
    "elastic_stiffness",
    "integrate",
]

logger = logging.getLogger(__name__)

_SQRT2 = np.sqrt(2.0)
_SQRT32 = np.sqrt(1.5)


@dataclass(frozen=True)
class Material:
    """Temperature-dependent parameters of the elasto-viscoplastic law (module docstring).

    Units are the user's (defaults: MPa, s, and a temperature in K or degrees C);
    ``*_slope`` and ``norton_K_rate`` are per unit of temperature.

    Parameters
    ----------
    young, young_slope : float
        :math:`E(T) = E_0 (1 - c_E (T - T_{ref}))`.
    poisson : float
        :math:`\\nu \\in (-1, 1/2)`.
    yield_stress, yield_slope : float
        :math:`\\sigma_y(T) = \\sigma_{y0} (1 - c_y (T - T_{ref}))`.
    hardening : float
        :math:`H \\ge 0` in :math:`R = \\sigma_y + H p`.
    norton_K, norton_K_rate : float
        :math:`K(T) = K_0 \\exp(-c_K (T - T_{ref}))` (stress times time^(1/n)).
    norton_n, norton_n_slope : float
        :math:`n(T) = n_0 + c_n (T - T_{ref}) \\ge 1`.
    expansion : float
        Thermal expansion :math:`\\alpha`, :math:`\\varepsilon^{th} = \\alpha (T - T_{ref})
        \\mathbf 1`.
    T_ref : float
        Reference temperature (stress-free, parameters at their base values).
    density : float
        :math:`\\rho`, for the centrifugal load :math:`\\rho \\omega^2 r` (tonne/mm^3 with MPa
        and mm).
    """

    young: float = 200e3
    young_slope: float = 4e-4
    poisson: float = 0.3
    yield_stress: float = 150.0
    yield_slope: float = 5e-4
    hardening: float = 2e3
    norton_K: float = 300.0
    norton_K_rate: float = 2e-3
    norton_n: float = 5.0
    norton_n_slope: float = 0.0
    expansion: float = 1.2e-5
    T_ref: float = 20.0
    density: float = 8e-9

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not np.isfinite(v):
                raise ValueError(f"Material.{f.name} must be finite, got {v}")
        if not -1.0 < self.poisson < 0.5:
            raise ValueError(f"Material.poisson must lie in (-1, 0.5), got {self.poisson}")
        if self.young <= 0 or self.norton_K <= 0 or self.norton_n < 1:
            raise ValueError(
                f"need young > 0, norton_K > 0, norton_n >= 1; got {self.young}, "
                f"{self.norton_K}, {self.norton_n}"
            )
        if self.hardening < 0 or self.yield_stress < 0 or self.density < 0:
            raise ValueError(
                f"need hardening, yield_stress, density >= 0; got {self.hardening}, "
                f"{self.yield_stress}, {self.density}"
            )

    # temperature laws ---------------------------------------------------------------
    def young_modulus(self, T: np.ndarray) -> np.ndarray:
        """:math:`E(T)`."""
        return self.young * (1.0 - self.young_slope * (np.asarray(T, float) - self.T_ref))

    def yield_strength(self, T: np.ndarray) -> np.ndarray:
        """:math:`\\sigma_y(T)`."""
        return self.yield_stress * (1.0 - self.yield_slope * (np.asarray(T, float) - self.T_ref))

    def norton_resistance(self, T: np.ndarray) -> np.ndarray:
        """:math:`K(T)`."""
        return self.norton_K * np.exp(-self.norton_K_rate * (np.asarray(T, float) - self.T_ref))

    def norton_exponent(self, T: np.ndarray) -> np.ndarray:
        """:math:`n(T)`."""
        return self.norton_n + self.norton_n_slope * (np.asarray(T, float) - self.T_ref)

    def thermal_strain(self, T: np.ndarray) -> np.ndarray:
        """Scalar :math:`\\alpha (T - T_{ref})` (times the identity)."""
        return self.expansion * (np.asarray(T, float) - self.T_ref)

    def check_temperature(self, T: np.ndarray) -> str | None:
        """None if every parameter is admissible at ``T``, else a message naming the problem."""
        T = np.asarray(T, dtype=float)
        if T.size == 0:
            return None
        if not np.all(np.isfinite(T)):
            return f"temperature contains NaN or Inf ({int(np.sum(~np.isfinite(T)))} values)"
        lo, hi = float(T.min()), float(T.max())
        ends = np.array([lo, hi])  # the laws are linear in T: extremes at the ends
        problems = []
        if np.any(self.young_modulus(ends) <= 0):
            problems.append("E(T) <= 0")
        if np.any(self.yield_strength(ends) < 0):
            problems.append("sigma_y(T) < 0")
        if np.any(self.norton_exponent(ends) < 1):
            problems.append("n(T) < 1")
        if problems:
            return (
                f"material parameters out of range for temperatures in [{lo:g}, {hi:g}]: "
                + ", ".join(problems)
            )
        return None


@dataclass
class ConstitutiveResult:
    """Output of :func:`integrate` at ``m`` points.

    Attributes
    ----------
    sigma : ndarray (m, n_comp)
        Stress at the end of the step (Mandel).
    eps_vp : ndarray (m, n_comp)
        Viscoplastic strain (Mandel).
    p : ndarray (m,)
        Cumulated plastic strain.
    tangent : ndarray (m, n_comp, n_comp)
        Consistent tangent :math:`d\\sigma / d\\varepsilon` (symmetric).
    converged : ndarray of bool (m,)
        Whether the local Newton met its tolerance (always True at elastic points).
    iterations : int
        Local Newton iterations (maximum over points).
    """

    sigma: np.ndarray
    eps_vp: np.ndarray
    p: np.ndarray
    tangent: np.ndarray
    converged: np.ndarray
    iterations: int


def n_components(dim: int) -> int:
    """Number of Mandel components: 4 (2-D plane strain) or 6 (3-D)."""
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    return 4 if dim == 2 else 6


def mandel_identity(n_comp: int) -> np.ndarray:
    """:math:`\\mathbf 1` in Mandel notation, shape (n_comp,)."""
    one = np.zeros(n_comp)
    one[:3] = 1.0
    return one


def deviatoric_projector(n_comp: int) -> np.ndarray:
    """:math:`\\mathbb K = \\mathbb I - \\tfrac13 \\mathbf 1 \\otimes \\mathbf 1`, shape
    (n_comp, n_comp)."""
    one = mandel_identity(n_comp)
    return np.eye(n_comp) - np.outer(one, one) / 3.0


def von_mises(sigma: np.ndarray) -> np.ndarray:
    """:math:`\\sigma_{eq} = \\sqrt{3/2}\\,\\|\\mathbb K : \\sigma\\|` over the last axis."""
    sigma = np.asarray(sigma, dtype=float)
    s = sigma @ deviatoric_projector(sigma.shape[-1])
    return _SQRT32 * np.linalg.norm(s, axis=-1)


def elastic_stiffness(material: Material, T: np.ndarray, n_comp: int) -> np.ndarray:
    """:math:`\\mathbb C(T) = 3\\kappa \\mathbb J + 2\\mu \\mathbb K`, shape (m, n_comp, n_comp)."""
    E = np.atleast_1d(material.young_modulus(T))
    nu = material.poisson
    kappa, mu = E / (3 * (1 - 2 * nu)), E / (2 * (1 + nu))
    Kd = deviatoric_projector(n_comp)
    J = np.eye(n_comp) - Kd
    return 3 * kappa[:, None, None] * J + 2 * mu[:, None, None] * Kd


def _check_inputs(eps, eps_vp_old, p_old, T, dt) -> tuple[np.ndarray, ...]:
    eps = np.asarray(eps, dtype=float)
    eps_vp_old = np.asarray(eps_vp_old, dtype=float)
    p_old = np.asarray(p_old, dtype=float)
    T = np.asarray(T, dtype=float)
    if eps.ndim != 2 or eps.shape[1] not in (4, 6):
        raise ValueError(f"eps must have shape (m, 4) or (m, 6) (Mandel), got {eps.shape}")
    m = eps.shape[0]
    if eps_vp_old.shape != eps.shape:
        raise ValueError(f"eps_vp_old must have shape {eps.shape}, got {eps_vp_old.shape}")
    if p_old.shape != (m,):
        raise ValueError(f"p_old must have shape ({m},), got {p_old.shape}")
    if T.ndim == 0:
        T = np.full(m, float(T))
    if T.shape != (m,):
        raise ValueError(f"T must be a scalar or have shape ({m},), got {T.shape}")
    for name, a in (("eps", eps), ("eps_vp_old", eps_vp_old), ("p_old", p_old), ("T", T)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or Inf")
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"time step dt must be finite and > 0, got {dt}")
    if np.any(p_old < 0):
        raise ValueError("p_old must be >= 0 (cumulated plastic strain)")
    return eps, eps_vp_old, p_old, T


def integrate(
    material: Material,
    eps: np.ndarray,
    eps_vp_old: np.ndarray,
    p_old: np.ndarray,
    T: np.ndarray | float,
    dt: float,
    *,
    rtol: float = 1e-13,
    max_iter: int = 100,
    raise_on_failure: bool = True,
) -> ConstitutiveResult:
    """One backward-Euler step of the law at ``m`` independent points (module docstring).

    Parameters
    ----------
    material : Material
    eps : ndarray (m, n_comp)
        Total strain at the end of the step (Mandel; ``n_comp`` 4 or 6).
    eps_vp_old, p_old : ndarray (m, n_comp), (m,)
        Internal variables at the start of the step.
    T : float or ndarray (m,)
        Temperature at the end of the step (the parameters are evaluated there).
    dt : float
        Step length :math:`\\Delta t > 0`.
    rtol : float
        Local Newton stops when :math:`|r(\\Delta p)| \\le rtol \\cdot q^{tr}` or the bracket
        shrinks below :math:`rtol` relative.
    max_iter : int
        Iteration cap of the local Newton.
    raise_on_failure : bool
        Raise ``RuntimeError`` if some point does not converge; otherwise report it in
        ``converged`` (the caller then decides collectively, see :mod:`solvers.mechanics`).

    Returns
    -------
    ConstitutiveResult
    """
    eps, eps_vp_old, p_old, T = _check_inputs(eps, eps_vp_old, p_old, T, dt)
    err = material.check_temperature(T)
    if err is not None:
        raise ValueError(err)
    m, nc = eps.shape
    one = mandel_identity(nc)
    Kd = deviatoric_projector(nc)
    E = material.young_modulus(T)
    nu = material.poisson
    kappa, mu = E / (3 * (1 - 2 * nu)), E / (2 * (1 + nu))
    H = material.hardening
    sy = material.yield_strength(T)
    Kn = material.norton_resistance(T)
    nn = material.norton_exponent(T)

    eps_e_tr = eps - eps_vp_old - material.thermal_strain(T)[:, None] * one
    tr = eps_e_tr[:, :3].sum(axis=1)
    dev = eps_e_tr @ Kd
    sig_tr = kappa[:, None] * tr[:, None] * one + 2 * mu[:, None] * dev
    s_tr = 2 * mu[:, None] * dev
    s_norm = np.linalg.norm(s_tr, axis=1)
    q_tr = _SQRT32 * s_norm
    f_tr = q_tr - (sy + H * p_old)
    plastic = f_tr > 0.0

    dp = np.zeros(m)
    converged = np.ones(m, dtype=bool)
    iterations = 0
    idx = np.flatnonzero(plastic)
    if idx.size:
        dp_i, conv_i, iterations = _solve_increment(
            f_tr[idx], 3 * mu[idx] + H, Kn[idx], nn[idx], dt, q_tr[idx], rtol, max_iter
        )
        dp[idx] = dp_i
        converged[idx] = conv_i
    if raise_on_failure and not converged.all():
        raise RuntimeError(
            f"local Newton of the Norton law did not converge at {int((~converged).sum())} of "
            f"{m} points in {max_iter} iterations"
        )

    C = elastic_stiffness(material, T, nc)
    sigma = sig_tr.copy()
    eps_vp = eps_vp_old.copy()
    p = p_old + dp
    tangent = C
    if idx.size:
        N = s_tr[idx] / s_norm[idx, None]
        d = dp[idx]
        mu_i = mu[idx]
        sigma[idx] -= (2 * mu_i * _SQRT32 * d)[:, None] * N
        eps_vp[idx] += (_SQRT32 * d)[:, None] * N
        n_i, K_i = nn[idx], Kn[idx]
        dphi = K_i / (n_i * dt) * (d / dt) ** (1.0 / n_i - 1.0)
        h = 3 * mu_i + H + dphi
        NN = N[:, :, None] * N[:, None, :]
        a = 6 * mu_i**2 / h
        b = 6 * mu_i**2 * d / q_tr[idx]
        tangent = C.copy()
        tangent[idx] -= a[:, None, None] * NN + b[:, None, None] * (Kd - NN)
    return ConstitutiveResult(sigma, eps_vp, p, tangent, converged, iterations)


def _solve_increment(
    f_tr: np.ndarray,
    h_lin: np.ndarray,
    K: np.ndarray,
    n: np.ndarray,
    dt: float,
    q_tr: np.ndarray,
    rtol: float,
    max_iter: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Root of :math:`r(x) = f - h x - K (x/\\Delta t)^{1/n}` on :math:`(0, f/h)`.

    Newton's method kept inside a shrinking bracket :math:`[lo, hi]` (bisection when a Newton
    iterate leaves it). Start: the explicit estimate :math:`\\Delta t (f/K)^n` (where
    :math:`r < 0`, i.e. right of the root) clipped to the bracket.
    """
    lo = np.zeros_like(f_tr)
    hi = f_tr / h_lin
    x = np.minimum(dt * (f_tr / K) ** n, hi)
    x = np.where(x > 0, x, 0.5 * hi)
    inv_n = 1.0 / n
    active = np.ones(f_tr.shape, dtype=bool)
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        ia = np.flatnonzero(active)
        xa = x[ia]
        rate = (xa / dt) ** inv_n[ia]
        r = f_tr[ia] - h_lin[ia] * xa - K[ia] * rate
        # r decreases in x: r > 0 means the root is to the right
        lo[ia] = np.where(r > 0, xa, lo[ia])
        hi[ia] = np.where(r < 0, xa, hi[ia])
        done = (np.abs(r) <= rtol * q_tr[ia]) | (hi[ia] - lo[ia] <= rtol * hi[ia])
        active[ia[done]] = False
        keep = ~done
        if not keep.any():
            break
        ia, xa, r, rate = ia[keep], xa[keep], r[keep], rate[keep]
        dr = -h_lin[ia] - K[ia] * inv_n[ia] * rate / xa
        x_new = xa - r / dr
        outside = ~((x_new > lo[ia]) & (x_new < hi[ia]))
        x_new[outside] = 0.5 * (lo[ia][outside] + hi[ia][outside])
        x[ia] = x_new
    return x, ~active, n_iter

"""Truncation rules for singular value decompositions (docs/theory.md §1).

With singular values :math:`\\sigma_1 \\ge \\sigma_2 \\ge \\dots` of a snapshot matrix
:math:`S` and total energy :math:`\\|S\\|_F^2`, the best rank-:math:`N` error is the tail
:math:`E_N^2 = \\sum_{n>N} \\sigma_n^2` (Schmidt-Eckart-Young). Rules (each gives the smallest
:math:`N` that meets it):

``rank``
    :math:`N \\le` ``rank`` (a cap, applied last).
``rtol``
    :math:`N = \\#\\{n : \\sigma_n \\ge \\mathrm{rtol}\\,\\sigma_1\\}`.
``l2_err``
    :math:`\\sum_{n>N} \\sigma_n^2 \\le \\mathrm{l2\\_err}^2` (absolute).
``rel_l2_err``
    :math:`\\sum_{n>N} \\sigma_n^2 \\le \\mathrm{rel\\_l2\\_err}^2 \\, \\|S\\|_F^2`, i.e. the
    relative error :math:`e_N = E_N/\\|S\\|_F \\le` ``rel_l2_err``; equivalently the kept
    energy fraction is at least :math:`1 - \\mathrm{rel\\_l2\\_err}^2`.

When several accuracy rules are given, all are met (the largest :math:`N`), then ``rank``
caps. Tails are summed from the smallest term (never as total minus kept: that difference is
noise below :math:`e_N \\approx \\sqrt{u}`).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from rom.linalg import tail_energies

__all__ = [
    "ToleranceWarning",
    "validate_truncation",
    "truncation_rank",
    "tail_energies",
    "warn_unmet_tolerance",
]


class ToleranceWarning(UserWarning):
    """A requested ``l2_err`` / ``rel_l2_err`` (or HAPOD ``eps``) below what the method can
    certify: every mode it can resolve is kept and the reported bound, which is still an
    upper bound of the error, exceeds the request (the rounding floor of docs/theory.md §1)."""


def validate_truncation(
    *,
    rank: int | None = None,
    rtol: float | None = None,
    l2_err: float | None = None,
    rel_l2_err: float | None = None,
    n_columns: int | None = None,
) -> str | None:
    """Return an error message for invalid truncation options, else ``None``.

    ``rank`` must be a positive integer, at most ``n_columns`` (the number of snapshots) when
    that is known. Meant to be passed to :func:`rom.parallel.check_collective`.
    """
    if rank is not None and (
        isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1
    ):
        return f"rank must be a positive integer, got {rank!r}"
    if rank is not None and n_columns is not None and rank > n_columns:
        return f"rank={rank} exceeds the number of snapshots ({n_columns})"
    for name, val in (("rtol", rtol), ("l2_err", l2_err), ("rel_l2_err", rel_l2_err)):
        if val is None:
            continue
        try:
            v = float(val)
        except (TypeError, ValueError):
            return f"{name} must be a number, got {val!r}"
        if not math.isfinite(v) or v < 0:
            return f"{name} must be finite and >= 0, got {val!r}"
    if rtol is not None and float(rtol) > 1:
        return f"rtol must be in [0, 1], got {rtol!r}"
    return None


def truncation_rank(
    sv: np.ndarray,
    *,
    rank: int | None = None,
    rtol: float | None = None,
    l2_err: float | None = None,
    rel_l2_err: float | None = None,
    total_energy: float | None = None,
    extra_tail: float = 0.0,
) -> int:
    """Number of singular values to keep under the rules of this module.

    Parameters
    ----------
    sv : ndarray of shape (k,)
        Singular values in non-increasing order (non-negative).
    rank, rtol, l2_err, rel_l2_err : optional
        The truncation rules (module docstring). With none given, every value is kept.
    total_energy : float, optional
        :math:`\\|S\\|_F^2` for ``rel_l2_err``; defaults to ``sum(sv**2) + extra_tail``.
    extra_tail : float
        Energy already discarded elsewhere (e.g. values not in ``sv``); it counts against
        ``l2_err`` and ``rel_l2_err``: the rule checked is
        :math:`\\sum_{n>N}\\sigma_n^2 + \\text{extra\\_tail} \\le \\text{tol}^2`. If even
        keeping everything cannot meet it, everything is kept.
    """
    sv = np.asarray(sv, dtype=np.float64)
    k = len(sv)
    if k == 0:
        return 0
    tails = tail_energies(sv) + extra_tail
    n = 0
    any_rule = False
    if rtol is not None:
        any_rule = True
        n = max(n, int(np.count_nonzero(sv >= float(rtol) * sv[0])))
    if l2_err is not None:
        any_rule = True
        ok = np.nonzero(tails <= float(l2_err) ** 2)[0]
        n = max(n, int(ok[0]) if ok.size else k)
    if rel_l2_err is not None:
        any_rule = True
        tot = float(np.sum(sv**2) + extra_tail) if total_energy is None else float(total_energy)
        ok = np.nonzero(tails <= float(rel_l2_err) ** 2 * tot)[0]
        n = max(n, int(ok[0]) if ok.size else k)
    if not any_rule:
        n = k
    if rank is not None:
        n = min(n, int(rank))
    return n


def warn_unmet_tolerance(
    who: str,
    error_bound: float | None,
    total_energy: float,
    *,
    n_modes: int,
    rank: int | None = None,
    l2_err: float | None = None,
    rel_l2_err: float | None = None,
    asked: str | None = None,
    hint: str = "",
    stacklevel: int = 3,
) -> str | None:
    """Warn (:class:`ToleranceWarning`) when ``error_bound`` exceeds the requested tolerance.

    The request is :math:`\\min(\\mathrm{l2\\_err}, \\mathrm{rel\\_l2\\_err}\\,
    \\|S\\|)` with :math:`\\|S\\|^2` = ``total_energy``. A result that ``rank`` capped
    (``n_modes >= rank``) is what was asked for and is not reported. ``asked`` names the
    request in the message (default: the tolerance given). Returns the message (or ``None``);
    the same on every rank, since its inputs are replicated.
    """
    targets = []
    if l2_err is not None:
        targets.append((float(l2_err), f"l2_err={float(l2_err):.3g}"))
    if rel_l2_err is not None:
        rel = float(rel_l2_err) * math.sqrt(max(total_energy, 0.0))
        targets.append((rel, f"rel_l2_err={float(rel_l2_err):.3g}"))
    if error_bound is None or not targets or (rank is not None and n_modes >= rank):
        return None
    target, given = min(targets)
    asked = asked or given
    if error_bound <= target * (1 + 1e-9):
        return None
    norm = math.sqrt(max(total_energy, 0.0))
    relative = f" ({error_bound / norm:.2e} relative)" if norm > 0 else ""
    msg = (
        f"{who}: the requested tolerance ({asked}) is below what it can certify on these "
        f"snapshots: it keeps {n_modes} modes and its error bound is {error_bound:.3e}"
        f"{relative}, its rounding floor{hint}"
    )
    warnings.warn(msg, ToleranceWarning, stacklevel=stacklevel)
    return msg

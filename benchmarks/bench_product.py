"""Compression with a finite-element mass matrix as inner product (``product=M``): batch POD,
incremental SVD and HAPOD against their pyMOR counterparts at equal tolerance, in one run.

Serial (interleaved rounds, ``benchmarks/protocol.py``)::

    .venv/bin/python benchmarks/bench_product.py [--grid 448 --cols 400 --block 50 --rounds 5]

writes ``benchmarks/results/product.json``. ``--quick``: a 41 x 41 grid, 60 columns, 3 rounds
(smoke test; the figures mean nothing).

Inner product: the P1 mass matrix :math:`M` of the unit square meshed by a structured grid of
``grid`` x ``grid`` vertices (default 448 x 448 = 200,704 dofs), every cell split into two
triangles along its diagonal; assembled with scipy from the element matrices
:math:`M_T = \\frac{|T|}{12}(1 + \\delta_{ij})_{i,j=1}^3` (CSR, 7 nonzeros per row). Checked
exactly on P1 functions (the P1 mass matrix integrates their products exactly):
:math:`1^T M 1 = |\\Omega| = 1` and :math:`x^T M x = \\int_\\Omega x^2 = 1/3`.

Snapshots: smooth random fields :math:`s_j(x, y) = \\sum_{k,l<K} a_{kl}\\,c_{klj}
\\cos(k\\pi x)\\cos(l\\pi y)` at the vertices, with :math:`c_{klj}` standard normal and
:math:`a_{kl} = (1 + k^2 + l^2)^{-p}` (``--decay`` p, default 2), :math:`K^2 \\ge 1.4\\,m`
modes for :math:`m` columns, so the matrix has full column rank and a decaying spectrum.

Equal tolerance. Every contender is asked for the same relative error in the :math:`M`-norm,
``--rel-err`` :math:`r` (default 1e-3):

.. math:: \\|S - U U^T M S\\|_{M,F} \\le r\\,\\|S\\|_{M,F}, \\qquad
          \\ell = r\\,\\|S\\|_{M,F}, \\qquad \\varepsilon^* = \\ell/\\sqrt{m}.

- Batch POD: ``rom.compression.pod(product=M, l2_err=l)`` (both ``pod_method`` values) and
  pyMOR's ``pod(A, product=NumpyMatrixOperator(M), l2_err=l, rtol=0, atol=0)``; both keep the
  smallest :math:`N` with :math:`\\sum_{n>N}\\sigma_n^2 \\le \\ell^2` (pyMOR's docstring:
  "argmin_N { sum_{n=N+1}^{infty} s_n^2 <= l2_err^2 }"; ``rtol=0`` removes pyMOR's default
  relative cut-off 1e-7, as its HAPOD node PODs do). Both re-orthonormalize above
  ``orth_tol=1e-12``. Method against method: our method of snapshots against pyMOR's
  default (``method="method_of_snapshots"``), our accurate ``"qr"`` against pyMOR's
  ``method="qr_svd"`` (Gram-Schmidt QR, vector by vector, then an SVD of R: minutes per call
  at the default size, so a full run takes about (4 + 1) min per round, and one more round
  for the warm-up); our ``"qr"``
  against pyMOR's default is reported too, without a target.
- Incremental: ``IncrementalSVD(l2_err=l).fit(S, chunk=c)``, ``compress(method=
  "incremental", l2_err=l)`` and ``inc_hapod(eps=eps*, omega)`` against pyMOR's
  ``inc_vectorarray_hapod(ceil(m/c), A, eps*, omega, product)``.
- HAPOD: ``dist_hapod(eps=eps*, omega, chunk=c)`` (node PODs ``"auto"``, the default,
  ``"qr"`` and ``"snapshots"``) and ``compress(method="hapod", l2_err=l)`` (default nodes) (which sets
  :math:`\\varepsilon^* = \\ell/\\sqrt{m}`) against pyMOR's ``dist_vectorarray_hapod(ceil(m/c),
  A, eps*, omega, product=...)`` in both of its configurations: threaded BLAS, and its
  ``executor=`` with one worker thread per core, each with one BLAS thread (the leaves' PODs
  run concurrently; the faster of the two here). Each of ours must beat both; the HAPOD with
  ``"qr"`` nodes (more accurate than pyMOR's, which has no such option there) is reported
  without a target.

pyMOR's HAPOD ``eps`` is the "desired l2-mean approximation error" (its docstrings):
:math:`\\frac1m\\sum_j\\|s_j - Ps_j\\|_M^2 \\le \\varepsilon^{*2}`, the convention of
``rom.compression.hapod``'s ``eps``; its node tolerances (``std_local_eps`` in
``pymor/algorithms/hapod.py``) are :math:`\\omega\\varepsilon^*\\sqrt{|S|}` at the root and
:math:`\\sqrt{1-\\omega^2}\\,\\varepsilon^*\\sqrt{|S_\\alpha|}/\\sqrt{L-1}` elsewhere, the same
as ours (docs/theory.md §2.3); ``omega = 0.9`` for both. pyMOR's incremental HAPOD spreads the
same budget over its chain of node PODs, ours by the streaming allowance; both guarantee the
same mean-square bound. pyMOR's HAPOD functions take no ``orth_tol``: their root POD
re-orthonormalizes above pyMOR's default ``orth_tol`` (1e-10), the other nodes never; ours
return modes :math:`M`-orthonormal to 1e-12. The measured orthonormality is stored.

Accuracy, checked by this script on every output (not taken from the methods' own reports):
the relative projection error :math:`\\|S - UU^TMS\\|_{M,F}/\\|S\\|_{M,F}`, the
:math:`M`-orthonormality :math:`\\max|U^TMU - I|` and the number of modes, next to the
smallest number of modes that meets the target (from ``numpy.linalg.eigvalsh`` of
:math:`S^TMS`).

Figures: per pair (pyMOR's counterpart over ours) the median over rounds of
``t_pymor / t_rom`` within a round. Target: every one of ours at least 1.5x faster than its
pyMOR counterpart at the same tolerance; the script reports whether it is met.

Memory: the process keeps the memory it frees (:func:`protocol.keep_freed_memory`, for every
contender), and one untimed warm-up round lets its heap grow to the run's peak before the
first timed round; ``--allocator default`` leaves glibc's defaults and has no warm-up round.
Each HAPOD call allocates and frees about 1 GB; with the defaults every call faults it in
anew, and on a virtual machine identical calls then took 1.6 to 3.6 s; with the memory kept
but no warm-up round, a contender that first reached a new peak paid the faults in the
early rounds (the first run of 2026-12-03 19:00 UTC, ``docs/performance.md``).
"""

from __future__ import annotations

import argparse
import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import protocol
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

import rom
from rom.compression import IncrementalSVD
from rom.compression import compress
from rom.compression import dist_hapod
from rom.compression import inc_hapod
from rom.compression import pod
from rom.parallel import usable_cores

OMEGA = 0.9
TARGET_SPEEDUP = 1.5

#: (ours, pyMOR's counterpart): the same method where pyMOR has it (its POD's ``qr_svd``
#: for our accurate ``qr``; its HAPODs' node PODs are its method of snapshots), else pyMOR's
#: only variant.
PAIRS = [
    ("rom_pod_snapshots", "pymor_pod"),
    ("rom_pod_qr", "pymor_pod_qr_svd"),
    ("rom_incremental_svd", "pymor_inc_vectorarray_hapod"),
    ("rom_compress_incremental", "pymor_inc_vectorarray_hapod"),
    ("rom_inc_hapod", "pymor_inc_vectorarray_hapod"),
    ("rom_dist_hapod_auto", "pymor_dist_vectorarray_hapod"),
    ("rom_dist_hapod_snapshots", "pymor_dist_vectorarray_hapod"),
    ("rom_compress_hapod", "pymor_dist_vectorarray_hapod"),
    ("rom_dist_hapod_auto", "pymor_dist_vectorarray_hapod_executor"),
    ("rom_dist_hapod_snapshots", "pymor_dist_vectorarray_hapod_executor"),
    ("rom_compress_hapod", "pymor_dist_vectorarray_hapod_executor"),
]
#: Reported, no target: our accurate methods against pyMOR's method of snapshots, which has
#: no accurate counterpart in its HAPODs.
EXTRA_PAIRS = [
    ("rom_pod_qr", "pymor_pod"),
    ("rom_dist_hapod_qr", "pymor_dist_vectorarray_hapod"),
    ("rom_dist_hapod_qr", "pymor_dist_vectorarray_hapod_executor"),
]


def mass_matrix(nv: int) -> sp.csr_matrix:
    """P1 mass matrix on the unit square, ``nv`` x ``nv`` vertices, two triangles per cell.

    Vertex ``(i, j)`` (x index ``i``, y index ``j``) is dof ``i * nv + j``.
    """
    h = 1.0 / (nv - 1)
    i, j = np.meshgrid(np.arange(nv - 1), np.arange(nv - 1), indexing="ij")
    v00 = (i * nv + j).ravel()
    v10, v01, v11 = v00 + nv, v00 + 1, v00 + nv + 1
    tris = np.concatenate([np.stack([v00, v10, v11], 1), np.stack([v00, v11, v01], 1)])
    local = (h * h / 2) / 12 * (np.ones((3, 3)) + np.eye(3))  # |T|/12 (1 + delta_ij)
    rows = np.repeat(tris, 3, axis=1).ravel()
    cols = np.tile(tris, (1, 3)).ravel()
    vals = np.tile(local.ravel(), len(tris))
    n = nv * nv
    return sp.csr_matrix(sp.coo_matrix((vals, (rows, cols)), shape=(n, n)))


def check_mass(M: sp.csr_matrix, nv: int) -> dict:
    """Exact identities of the P1 mass matrix (it integrates products of P1 functions)."""
    x = np.repeat(np.linspace(0.0, 1.0, nv), nv)  # x coordinate of dof i * nv + j
    one = np.ones(M.shape[0])
    return {
        "n_dofs": M.shape[0],
        "nnz": int(M.nnz),
        "one_M_one_minus_area": float(one @ (M @ one) - 1.0),
        "x_M_x_minus_third": float(x @ (M @ x) - 1.0 / 3.0),
        "asymmetry": float(abs(M - M.T).max()),
    }


def snapshots(nv: int, m: int, *, decay: float = 2.0, seed: int = 0) -> np.ndarray:
    """Smooth random fields (module docstring) at the vertices, shape (nv*nv, m)."""
    K = math.ceil(math.sqrt(1.4 * m))
    k = np.arange(K)
    a = (1.0 + k[:, None] ** 2 + k[None, :] ** 2) ** (-decay)
    C = a[:, :, None] * np.random.default_rng(seed).standard_normal((K, K, m))
    t = np.linspace(0.0, 1.0, nv)
    B = np.cos(np.pi * np.outer(t, k))  # (nv, K), the same in x and y
    T = np.einsum("ik,klm->ilm", B, C)  # (nv, K, m)
    return np.einsum("ilm,jl->ijm", T, B).reshape(nv * nv, m)


def m_metrics(X, M, normX, U) -> dict:
    """Relative projection error and orthonormality in the M-norm, computed here."""
    k = U.shape[1]
    MU = M @ U
    R = X - U @ (MU.T @ X)
    err = math.sqrt(max(float(np.sum(R * (M @ R))), 0.0)) / normX
    orth = float(np.abs(U.T @ MU - np.eye(k)).max()) if k else 0.0
    return {"n_modes": k, "proj_rel_err_M": err, "orth_err_M": orth}


def _ours(X, M, c, l2, eps) -> dict:
    """Our contenders; each returns the modes."""

    def isvd():
        est = IncrementalSVD(l2_err=l2, product=M, keep_coefficients=False)
        return est.fit(X, chunk=c).modes_

    return {
        "rom_pod_snapshots": lambda: pod(X, product=M, pod_method="snapshots", l2_err=l2).modes,
        "rom_pod_qr": lambda: pod(X, product=M, pod_method="qr", l2_err=l2).modes,
        "rom_incremental_svd": isvd,
        "rom_compress_incremental": lambda: (
            compress(X, method="incremental", chunk=c, product=M, l2_err=l2).modes
        ),
        "rom_inc_hapod": lambda: inc_hapod(X, eps=eps, omega=OMEGA, chunk=c, product=M).modes,
        "rom_dist_hapod_auto": lambda: (
            dist_hapod(X, eps=eps, omega=OMEGA, chunk=c, product=M).modes
        ),
        "rom_dist_hapod_qr": lambda: (
            dist_hapod(X, eps=eps, omega=OMEGA, chunk=c, product=M, pod_method="qr").modes
        ),
        "rom_dist_hapod_snapshots": lambda: (
            dist_hapod(X, eps=eps, omega=OMEGA, chunk=c, product=M, pod_method="snapshots").modes
        ),
        "rom_compress_hapod": lambda: (
            compress(X, method="hapod", chunk=c, product=M, l2_err=l2, omega=OMEGA).modes
        ),
    }


def _pymor(X, M, c, l2, eps) -> dict:
    """pyMOR's counterparts (empty when pyMOR is not installed); each returns the modes."""
    if protocol.pymor_version() == "not installed":
        return {}
    from pymor.algorithms.hapod import dist_vectorarray_hapod
    from pymor.algorithms.hapod import inc_vectorarray_hapod
    from pymor.algorithms.pod import pod as pymor_pod
    from pymor.core.logger import set_log_levels
    from pymor.operators.numpy import NumpyMatrixOperator
    from pymor.vectorarrays.numpy import NumpyVectorSpace

    set_log_levels({"pymor": "WARNING"})
    A = NumpyVectorSpace(X.shape[0]).from_numpy(X)  # pyMOR >= 2024.1: vectors are columns
    P = NumpyMatrixOperator(M)
    steps = math.ceil(X.shape[1] / c)

    def first(fn, *a, **kw):
        return lambda: fn(*a, **kw)[0].to_numpy()  # (modes, svals, ...): modes as columns

    def dist_executor():
        with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=usable_cores()) as ex:
            return dist_vectorarray_hapod(steps, A, eps, OMEGA, product=P, executor=ex)[0]

    return {
        "pymor_pod": first(pymor_pod, A, product=P, l2_err=l2, rtol=0.0, atol=0.0, orth_tol=1e-12),
        "pymor_pod_qr_svd": first(
            pymor_pod, A, product=P, l2_err=l2, rtol=0.0, atol=0.0, orth_tol=1e-12, method="qr_svd"
        ),
        "pymor_inc_vectorarray_hapod": first(
            inc_vectorarray_hapod, steps, A, eps, OMEGA, product=P
        ),
        "pymor_dist_vectorarray_hapod": first(
            dist_vectorarray_hapod, steps, A, eps, OMEGA, product=P
        ),
        "pymor_dist_vectorarray_hapod_executor": lambda: dist_executor().to_numpy(),
    }


def optimal_rank(X, M, l2) -> tuple[int, np.ndarray]:
    """Smallest N with sum_{n>N} sigma_n^2 <= l2^2 (eigenvalues of S^T M S by LAPACK)."""
    lam = np.clip(np.linalg.eigvalsh(X.T @ (M @ X))[::-1], 0.0, None)
    tails = np.concatenate([np.cumsum(lam[::-1])[::-1], [0.0]])  # tails[N] = sum_{n>=N}
    return int(np.argmax(tails <= l2 * l2)), np.sqrt(lam)


def _targets(record, runs, rel_err) -> dict:
    targets = {}
    pairs = record.get("pairs", {})
    for ours, peer in PAIRS if pairs else ():  # no pairs: pyMOR is not installed
        pair = pairs.get(f"{peer}_over_{ours}")  # a missing pair is a target not met
        met = pair is not None and pair["median"] >= TARGET_SPEEDUP
        targets[f"{ours} >= {TARGET_SPEEDUP}x faster than {peer}"] = met
    for name, run in runs.items():
        targets[f"{name} within the error target"] = run["proj_rel_err_M"] <= rel_err
    return targets


def run(args, rounds) -> dict:
    t0 = time.perf_counter()
    M = mass_matrix(args.grid)
    X = snapshots(args.grid, args.cols, decay=args.decay)
    t_setup = time.perf_counter() - t0
    normX = math.sqrt(float(np.sum(X * (M @ X))))
    l2 = args.rel_err * normX
    eps = l2 / math.sqrt(args.cols)
    n_opt, sv = optimal_rank(X, M, l2)
    contenders = _ours(X, M, args.block, l2, eps)
    contenders.update(_pymor(X, M, args.block, l2, eps))
    pairs = {f"{p}_over_{o}": (p, o) for o, p in PAIRS + EXTRA_PAIRS if p in contenders}
    record, outs = protocol.run_rounds(
        contenders,
        rounds=rounds,
        reference="rom_pod_snapshots",
        pairs=pairs,
        warmup_round=args.allocator == "kept",
    )
    runs = {name: m_metrics(X, M, normX, U) for name, U in outs.items()}
    targets = _targets(record, runs, args.rel_err)
    speed = [v for k, v in targets.items() if "faster than" in k]
    return {
        "benchmark": "product",
        "shape": list(X.shape),
        "grid": [args.grid, args.grid],
        "block": args.block,
        "decay": args.decay,
        "mass_matrix": check_mass(M, args.grid),
        "setup_s": t_setup,
        "rel_err_target": args.rel_err,
        "l2_err": l2,
        "eps_mean_square": eps,
        "omega": OMEGA,
        "norm_M": normX,
        "n_modes_optimal": n_opt,
        "sigma_ratio_last_first": float(sv[-1] / sv[0]),
        "tolerance_mapping": {
            "rom.pod / IncrementalSVD / compress(batch, incremental)": "l2_err = r ||S||_M",
            "pymor pod": "l2_err = r ||S||_M, rtol = 0, atol = 0, orth_tol = 1e-12",
            "rom dist_hapod / inc_hapod": "eps = r ||S||_M / sqrt(m), omega",
            "rom compress(hapod)": "l2_err = r ||S||_M (eps = l2_err / sqrt(m)), omega",
            "pymor inc/dist_vectorarray_hapod": "eps = r ||S||_M / sqrt(m), omega, steps m/c",
        },
        "pymor": protocol.pymor_version(),
        "timing": record,
        "runs": runs,
        "targets": targets,
        "speedup_target_met": all(speed) if speed else None,  # None: no pyMOR
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--grid", type=int, default=None, help="vertices per side (default 448; --quick 41)"
    )
    p.add_argument("--cols", type=int, default=None, help="snapshots (default 400; --quick 60)")
    p.add_argument("--block", type=int, default=None, help="chunk (default 50; --quick 20)")
    p.add_argument("--rel-err", type=float, default=1e-3, help="relative M-norm error target")
    p.add_argument("--decay", type=float, default=2.0, help="exponent p of the field spectrum")
    p.add_argument(
        "--allocator",
        choices=["kept", "default"],
        default="kept",
        help="kept: the process keeps the memory it frees (default); default: glibc's",
    )
    protocol.add_common_arguments(p, rounds=5)
    args = p.parse_args(argv)
    rom.limit_blas_per_rank()
    allocator = {"mode": args.allocator}
    if args.allocator == "kept":
        allocator.update(protocol.keep_freed_memory())
    args.grid = args.grid or (41 if args.quick else 448)
    args.cols = args.cols or (60 if args.quick else 400)
    args.block = args.block or (20 if args.quick else 50)
    res = run(args, protocol.rounds_of(args, 5))
    res["allocator"] = allocator
    path = protocol.finish(args, res, "product.json")
    for label, pair in res["timing"].get("pairs", {}).items():
        print(f"{label}: {pair['median']:.2f}")
    return path


if __name__ == "__main__":
    main()

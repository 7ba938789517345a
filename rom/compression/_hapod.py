"""Hierarchical approximate POD (HAPOD) over trees of column chunks.

Himpe, Leibner, Rave, SIAM J. Sci. Comput. 40(5), 2018 (docs/theory.md §2.3). A tree
:math:`T` with root :math:`\\rho`; each leaf holds a slice of the snapshots (a column chunk);
every node :math:`\\alpha` computes a POD of its input (its snapshots, or its children's modes
scaled by their singular values) truncated with ``l2_err`` :math:`=\\varepsilon(\\alpha)`:
it keeps the smallest :math:`N` with :math:`\\sum_{n>N}\\sigma_n^2 \\le \\varepsilon(\\alpha)^2`.
With the local tails :math:`t_\\alpha \\le \\varepsilon(\\alpha)^2`,

.. math:: \\sum_{s\\in S} \\|s - P_\\rho s\\|_M^2 \\le \\sum_{\\alpha\\in T} t_\\alpha
          \\le \\sum_{\\alpha\\in T} \\varepsilon(\\alpha)^2 .

Tolerances for a mean-square target :math:`\\varepsilon^*`, :math:`\\omega\\in(0,1)`,
:math:`L` the number of levels that perform a POD and :math:`S_\\alpha` the snapshots below
:math:`\\alpha`:

.. math:: \\varepsilon(\\rho) = \\omega\\,\\varepsilon^*\\sqrt{|S|}, \\qquad
          \\varepsilon(\\alpha) = \\sqrt{1-\\omega^2}\\,\\varepsilon^*
          \\sqrt{|S_\\alpha|}/\\sqrt{L-1} \\quad (\\alpha\\ne\\rho),

which guarantee :math:`\\frac{1}{|S|}\\sum_s \\|s - P_\\rho s\\|_M^2 \\le \\varepsilon^{*2}`
(the :math:`S_\\alpha` of one level are disjoint). A single-level tree (the root is a leaf)
uses :math:`\\varepsilon(\\rho) = \\varepsilon^*\\sqrt{|S|}`.

Shapes: :func:`dist_hapod` is the star (two-level) tree over column chunks, :func:`inc_hapod`
the incremental chain, run as Brand updates (:class:`rom.compression.IncrementalSVD`) with the
streaming allowance of docs/theory.md §2.3: each block of :math:`c_t` columns may
discard :math:`(1-\\omega^2)\\varepsilon^{*2}c_t` (unused allowance carried forward) and the
final truncation brings the total to at most :math:`\\varepsilon^{*2}|S|`; no depth is needed
and the stream length may be unknown. Trees are built over column chunks, never over ranks,
so results do not depend on the rank count. Whether the root keeps no more modes than a POD
of :math:`S` at :math:`\\varepsilon(\\rho)` is not confirmed in the paper: it is logged, not
enforced.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import warnings
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.compression._pod import pod
from rom.compression._result import CompressionResult
from rom.compression.incremental_svd import IncrementalSVD
from rom.compression.truncation import ToleranceWarning
from rom.compression.truncation import warn_unmet_tolerance
from rom.parallel import Product
from rom.parallel import check_collective
from rom.parallel import get_comm

__all__ = ["Chunk", "hapod", "dist_hapod", "inc_hapod", "column_chunks"]


def _hapod_result(modes, sv, *, method, n, total_energy, eps, omega, n_levels, nodes, extra, t0):
    total = math.fsum(nd["local_error"] ** 2 for nd in nodes)
    details = dict(
        eps=eps,
        omega=omega,
        n_levels=n_levels,
        nodes=nodes,
        guaranteed_bound=eps * math.sqrt(n),
        mean_squared_error_bound=total / n if n else 0.0,
        timings={"total": time.perf_counter() - t0},
        **extra,
    )
    warn_unmet_tolerance(  # a node below its floor shows in the sum of the local tails
        method,
        math.sqrt(total),
        float(total_energy),
        n_modes=len(sv),
        l2_err=eps * math.sqrt(n),
        asked=f"eps={eps:.3g}, i.e. an error of {eps * math.sqrt(n):.3e}",
        stacklevel=4,
    )
    return CompressionResult(
        modes=modes,
        singular_values=sv,
        error_bound=math.sqrt(total),
        total_energy=float(total_energy),
        n_snapshots=n,
        method=method,
        details=details,
    )


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    """A lazily loaded leaf: ``load()`` returns this rank's rows, shape (n_local, n_columns)."""

    n_columns: int
    load: Callable[[], np.ndarray]


def is_store(source: Any) -> bool:
    """Whether ``source`` reads like a :class:`rom.io.SnapshotStore` (duck-typed)."""
    return hasattr(source, "iter_columns") and hasattr(source, "n_snapshots")


def column_chunks(
    source: Any, *, chunk: int = 64, field: str | None = None, comm: Any = None
) -> tuple[int, Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]]:
    """Column-chunk access to an ndarray of owned rows, a list of blocks, or a store.

    Returns ``(n_columns, blocks)`` where ``blocks()`` yields ``(column_indices, block)``
    afresh at each call; a :class:`rom.io.SnapshotStore` is streamed from disk
    (``store.iter_columns(field, chunk=chunk, comm=comm)``: with ``comm``, a damaged block
    raises on every rank), an array is sliced (views, no copy).
    """
    if is_store(source):
        n = int(source.n_snapshots)
        return n, lambda: source.iter_columns(field, chunk=chunk, comm=comm)
    if isinstance(source, np.ndarray):
        X = source if source.ndim == 2 else np.atleast_2d(source)
        n = X.shape[1]

        def gen() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for j in range(0, n, chunk):
                yield np.arange(j, min(j + chunk, n)), X[:, j : j + chunk]

        return n, gen
    if isinstance(source, (list, tuple)):
        blocks = [np.asarray(b) for b in source]
        blocks = [b[:, None] if b.ndim == 1 else b for b in blocks]
        sizes = np.cumsum([0] + [b.shape[1] for b in blocks])

        def gen_list() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for i, b in enumerate(blocks):
                yield np.arange(sizes[i], sizes[i + 1]), b

        return int(sizes[-1]), gen_list
    raise TypeError(
        f"source must be an ndarray of owned rows, a list of column blocks or a SnapshotStore, "
        f"got {type(source).__name__}"
    )


# --------------------------------------------------------------------------- generic tree
def _n_columns(tree: Any) -> int:
    if isinstance(tree, Chunk):
        return int(tree.n_columns)
    if isinstance(tree, np.ndarray):
        return 1 if tree.ndim == 1 else int(tree.shape[1])
    return sum(_n_columns(t) for t in tree)


def _depth(tree: Any) -> int:
    if isinstance(tree, (Chunk, np.ndarray)):
        return 1
    return 1 + max(_depth(t) for t in tree)


def _tree_error(tree: Any) -> str | None:
    if isinstance(tree, Chunk):
        return None if tree.n_columns >= 0 and callable(tree.load) else "invalid Chunk leaf"
    if isinstance(tree, np.ndarray):
        return None if tree.ndim in (1, 2) else f"a leaf has {tree.ndim} dimensions, expected 2"
    if isinstance(tree, (list, tuple)):
        if not tree:
            return "a tree node has no children"
        for t in tree:
            e = _tree_error(t)
            if e:
                return e
        return None
    return (
        f"tree nodes must be lists of subtrees, ndarrays or Chunk leaves, got {type(tree).__name__}"
    )


def _eps_error(eps: Any, omega: Any) -> str | None:
    try:
        e, w = float(eps), float(omega)
    except (TypeError, ValueError):
        return f"eps and omega must be numbers, got {eps!r}, {omega!r}"
    if not (math.isfinite(e) and e >= 0):
        return f"eps must be finite and >= 0, got {eps!r}"
    if not (0 < w < 1):
        return f"omega must be in (0, 1), got {omega!r}"
    return None


def _node_pod(X: np.ndarray, l2_err: float, *, product, comm, pod_method: str, root: bool):
    """POD of one node truncated at ``l2_err``.

    Only the root's modes are checked for :math:`M`-orthonormality (and repaired): an inner
    node passes its parent :math:`U\\Sigma = XV_N`, which does not depend on that check.

    The local tail :math:`t_\\alpha` is the pod's ``error_bound**2``: the dropped
    :math:`\\sigma^2` summed from the small end, including those the POD could not resolve,
    never ``total - kept`` (that difference is rounding noise of size :math:`u\\|X\\|^2`,
    docs/theory.md §1). With ``pod_method="qr"`` the singular values are accurate to about
    :math:`u\\sigma_1`, so the tails, and the bound, are reliable down to relative errors
    near :math:`u`; the method of snapshots resolves tails only above about
    :math:`\\sqrt{u}\\|X\\|`; ``"auto"`` (the default of the HAPOD functions) takes it where
    the node's tolerance is far above that, the accurate method elsewhere.
    """
    if X.shape[1] == 0:  # an empty leaf, or children that kept no modes: nothing to compress
        return CompressionResult(np.zeros((X.shape[0], 0)), np.zeros(0), 0.0, 0.0, 0, "batch", {})
    orth_tol = 1e-12 if root else math.inf
    with warnings.catch_warnings():  # a node's unmet tolerance is reported once, for the tree
        warnings.simplefilter("ignore", ToleranceWarning)
        return pod(
            X, product=product, comm=comm, pod_method=pod_method, l2_err=l2_err, orth_tol=orth_tol
        )


def _scaled_modes(children: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """:math:`[U_1\\Sigma_1, U_2\\Sigma_2, \\dots]`, written into one array (no copies)."""
    n_local = children[0][0].shape[0]
    X = np.empty((n_local, sum(len(s) for _, s in children)))
    j = 0
    for U, s in children:
        np.multiply(U, s, out=X[:, j : j + len(s)])
        j += len(s)
    return X


def hapod(
    tree: Any,
    *,
    eps: float,
    omega: float = 0.9,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    pod_method: str = "auto",
) -> CompressionResult:
    """HAPOD over a tree of column chunks with the tolerances of the module docstring.

    Parameters
    ----------
    tree : nested lists
        A leaf is an ndarray of shape (n_local, c) (this rank's rows of a column chunk) or a
        :class:`Chunk`; an inner node is a list of subtrees. Every rank passes the same tree
        shape (a tree over columns, not over ranks).
    eps : float
        Mean-square target :math:`\\varepsilon^*`: :math:`\\frac{1}{|S|}\\sum_s\\|s - P s\\|_M^2
        \\le \\varepsilon^{*2}`.
    omega : float
        Share of the error budget given to the root, in (0, 1).
    product : operator, optional
        Inner product :math:`M`.
    comm : mpi4py communicator, optional
        Serial when ``None``.
    pod_method : {"auto", "qr", "snapshots"}
        POD method of the nodes (:func:`rom.compression.pod`). ``"qr"`` resolves the local tails
        down to round-off, so the a-posteriori bound is reliable for any ``eps``;
        ``"snapshots"`` is faster but its tails are noise below about
        :math:`\\sqrt{u}\\,\\|X\\|` (relative errors near ``1e-8``); ``"auto"`` chooses per
        node, the method of snapshots where the node's tolerance lies far above that floor
        (``pod``'s rule), the accurate method otherwise (``nodes[i]["pod_method"]``).

    Returns
    -------
    CompressionResult
        ``method="hapod"``; ``error_bound`` :math:`= \\sqrt{\\sum_\\alpha t_\\alpha} \\ge
        \\|S - P_\\rho S\\|_{M,F}` (a posteriori). ``details``: ``eps``
        (:math:`\\varepsilon^*`), ``omega``, ``n_levels`` (:math:`L`), ``nodes`` (per node:
        ``path``, ``depth``, ``n_snapshots`` :math:`|S_\\alpha|`, ``tolerance``
        :math:`\\varepsilon(\\alpha)`, ``local_error`` :math:`\\sqrt{t_\\alpha}`,
        ``n_input``, ``n_modes``), ``guaranteed_bound`` (:math:`\\varepsilon^*\\sqrt{|S|}`,
        a priori), ``mean_squared_error_bound`` (``error_bound**2 / n_snapshots``
        :math:`\\le \\varepsilon^{*2}`), ``pod_method`` and ``timings``.
    """
    comm = get_comm(comm)
    err = _eps_error(eps, omega) or _tree_error(tree)
    if err is None and pod_method not in ("auto", "qr", "snapshots"):
        err = f"pod_method must be 'auto', 'qr' or 'snapshots', got {pod_method!r}"
    check_collective(err, comm)
    t0 = time.perf_counter()
    n = _n_columns(tree)
    L = _depth(tree)
    eps, omega = float(eps), float(omega)
    nodes: list[dict] = []
    leaf_energy = [0.0]

    def tol(n_alpha: int, is_root: bool) -> float:
        if L == 1:
            return eps * math.sqrt(n_alpha)
        if is_root:
            return omega * eps * math.sqrt(n_alpha)
        return math.sqrt(1 - omega**2) * eps * math.sqrt(n_alpha) / math.sqrt(L - 1)

    def visit(t: Any, path: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        n_alpha = _n_columns(t)
        if isinstance(t, Chunk):
            X = t.load()
        elif isinstance(t, np.ndarray):
            X = t[:, None] if t.ndim == 1 else t
        else:
            X = _scaled_modes([visit(child, path + (i,)) for i, child in enumerate(t)])
        e = tol(n_alpha, not path)
        r = _node_pod(X, e, product=product, comm=comm, pod_method=pod_method, root=not path)
        if isinstance(t, (Chunk, np.ndarray)):
            leaf_energy[0] += r.total_energy
        nodes.append(
            dict(
                path=path,
                depth=len(path) + 1,
                n_snapshots=n_alpha,
                tolerance=e,
                local_error=r.error_bound,
                n_input=X.shape[1],
                n_modes=r.n_modes,
                pod_method=r.details.get("pod_method"),
            )
        )
        return r.modes, r.singular_values

    U, s = visit(tree, ())
    res = _hapod_result(
        U,
        s,
        method="hapod",
        n=n,
        total_energy=leaf_energy[0],
        eps=eps,
        omega=omega,
        n_levels=L,
        nodes=nodes,
        extra={"pod_method": pod_method},
        t0=t0,
    )
    logger.debug(
        "hapod: %d nodes, %d levels, %d modes, bound %.3e (a priori %.3e)",
        len(nodes),
        L,
        len(s),
        res.error_bound,
        res.details["guaranteed_bound"],
    )
    return res


def _read_columns(store: Any, field: str | None, start: int, chunk: int, comm: Any) -> np.ndarray:
    stop = min(start + chunk, int(store.n_snapshots))
    return store.read(field, columns=slice(start, stop), comm=comm)  # every rank reads a leaf


def _leaves(source: Any, chunk: int, field: str | None, comm: Any = None) -> list:
    if is_store(source):
        n = int(source.n_snapshots)
        return [
            Chunk(
                min(chunk, n - j), functools.partial(_read_columns, source, field, j, chunk, comm)
            )
            for j in range(0, n, chunk)
        ]
    if isinstance(source, np.ndarray):
        X = source[:, None] if source.ndim == 1 else source
        return [X[:, j : j + chunk] for j in range(0, X.shape[1], chunk)]
    if isinstance(source, (list, tuple)):
        return list(source)
    raise TypeError(
        f"source must be an ndarray of owned rows, a list of column blocks or a SnapshotStore, "
        f"got {type(source).__name__}"
    )


def dist_hapod(
    source: Any,
    *,
    eps: float,
    omega: float = 0.9,
    chunk: int = 64,
    field: str | None = None,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    pod_method: str = "auto",
) -> CompressionResult:
    """Distributed HAPOD: a star (two-level) tree over column chunks.

    Each chunk of ``chunk`` columns (of an ndarray of owned rows, a list of blocks, or a
    :class:`rom.io.SnapshotStore`, read chunk by chunk) is a leaf POD at
    :math:`\\sqrt{1-\\omega^2}\\varepsilon^*\\sqrt{|S_\\alpha|}`; the root PODs the scaled leaf
    modes at :math:`\\omega\\varepsilon^*\\sqrt{|S|}` (:math:`L = 2`). Leaves are chunks of
    columns, not ranks, so results do not depend on the rank count. Same returns as
    :func:`hapod` (``method="hapod"``).
    """
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        check_collective(f"chunk must be a positive integer, got {chunk!r}", comm)
    leaves = _leaves(source, int(chunk), field, comm)
    # the list of leaves is the star: a root above every leaf (L = 2)
    return hapod(leaves, eps=eps, omega=omega, product=product, comm=comm, pod_method=pod_method)


def inc_hapod(
    source: Any | Iterable[np.ndarray],
    *,
    eps: float,
    omega: float = 0.9,
    chunk: int = 64,
    field: str | None = None,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    novelty_tol: float = 1e-10,
) -> CompressionResult:
    """Incremental HAPOD (a chain) by Brand updates with the streaming allowance.

    Block :math:`t` (of :math:`c_t` columns) may discard :math:`(1-\\omega^2)
    \\varepsilon^{*2}c_t` plus what earlier blocks left unused; a final truncation keeps the
    total discarded energy :math:`\\le \\varepsilon^{*2}|S|` (module docstring). ``source``:
    an ndarray of owned rows, a list of blocks, a :class:`rom.io.SnapshotStore`, or any
    iterable of blocks (a stream of unknown length). Memory :math:`O(n_{local}(N + c))`.
    Same returns as :func:`hapod` (``method="inc_hapod"``, ``n_levels`` 0, no ``pod_method``);
    ``details["nodes"]`` has one entry per block plus the final truncation.
    """
    comm = get_comm(comm)
    err = _eps_error(eps, omega)
    if err is None and (
        isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1
    ):
        err = f"chunk must be a positive integer, got {chunk!r}"
    check_collective(err, comm)
    t0 = time.perf_counter()
    eps, omega = float(eps), float(omega)
    if is_store(source) or isinstance(source, (np.ndarray, list, tuple)):
        _, blocks = column_chunks(source, chunk=int(chunk), field=field, comm=comm)
        it: Iterable[np.ndarray] = (b for _, b in blocks())
    else:
        it = source
    est = IncrementalSVD(
        column_allowance=(1 - omega**2) * eps**2,
        novelty_tol=novelty_tol,
        product=product,
        comm=comm,
        keep_coefficients=False,
    )
    nodes: list[dict] = []
    for t, block in enumerate(it):
        est.partial_fit(block)
        nodes.append(
            dict(
                path=(t,),
                depth=t + 1,
                n_snapshots=est.n_samples_seen_,
                tolerance=math.sqrt(est.block_allowance_[-1]),
                local_error=math.sqrt(est.block_discarded_energy_[-1]),
                n_modes=est.n_components_,
            )
        )
    n = est.n_samples_seen_ if hasattr(est, "n_samples_seen_") else 0
    if n == 0:
        check_collective("inc_hapod: the source has no columns", comm)
    D0 = est.discarded_energy_
    est.truncate(l2_err=eps * math.sqrt(n))
    est.check_orthonormality()
    nodes.append(
        dict(
            path=("final",),
            depth=len(nodes) + 1,
            n_snapshots=n,
            tolerance=math.sqrt(max(eps**2 * n - D0, 0.0)),
            local_error=math.sqrt(est.discarded_energy_ - D0),
            n_modes=est.n_components_,
        )
    )
    return _hapod_result(
        est.modes_,
        est.singular_values_,
        method="inc_hapod",
        n=n,
        total_energy=est.total_energy_,
        eps=eps,
        omega=omega,
        n_levels=0,
        nodes=nodes,
        extra={},
        t0=t0,
    )

"""rom.sweeps against the same products formed densely by numpy, at 1, 2 and 3 ranks, and
the incremental SVD built on them against LAPACK where a block adds weak directions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from rom import sweeps
from rom.compression import IncrementalSVD
from rom.parallel import distribute_rows
from rom.parallel import gather_rows
from rom.parallel import row_range

pytestmark = [pytest.mark.mpi, pytest.mark.partition]


def spd_product(n):
    """A symmetric positive definite tridiagonal matrix (a 1-D P1 mass matrix shape)."""
    return sp.diags([np.full(n - 1, 1.0), np.full(n, 4.0), np.full(n - 1, 1.0)], [-1, 0, 1])


def local_rows(M, comm):
    """This rank's diagonal block of a banded M (rows and columns owned here): a
    block-diagonal stand-in for a distributed product."""
    lo, hi = row_range(M.shape[0], comm)
    return M.tocsr()[lo:hi, lo:hi]


def block_diag_global(M, comm):
    """The global matrix of the products :func:`local_rows` hands to each rank."""
    cuts = [row_range(M.shape[0], comm, rank=r) for r in range(comm.size)]
    return sp.block_diag([M.tocsr()[a:b, a:b] for a, b in cuts]).toarray()


def operands(U, C, weighted, comm):
    """The global M, this rank's rows of U and C, and MU/MC for the sweeps (none if M = I)."""
    n = U.shape[0]
    M = block_diag_global(spd_product(n), comm) if weighted else np.eye(n)
    Ul, Cl = distribute_rows(U, comm), distribute_rows(C, comm)
    if not weighted:
        return M, Ul, Cl, {}
    Ml = local_rows(spd_product(n), comm)
    return M, Ul, Cl, {"MU": Ml @ Ul, "MC": Ml @ Cl}


@pytest.mark.parametrize("weighted", [False, True])
def test_residual_gram_equals_dense_products(comm, rng, weighted, monkeypatch):
    monkeypatch.setattr(sweeps, "_BLOCK_ELEMENTS", 600)  # many row blocks on 1,000 rows
    n, k, c = 1000, 6, 5
    U = np.linalg.qr(rng.standard_normal((n, k)))[0]
    C = rng.standard_normal((n, c))
    L = rng.standard_normal((k, c))
    M, Ul, Cl, kw = operands(U, C, weighted, comm)
    P, G = sweeps.residual_gram(Cl, Ul, L, comm=comm, **kw)
    H = C - U @ L
    np.testing.assert_allclose(P, U.T @ M @ H, rtol=1e-12, atol=1e-12 * np.abs(U.T @ M @ H).max())
    if weighted:  # G = H^T M C - P^T L equals H^T M H for any U (the identity is exact)
        np.testing.assert_allclose(G, H.T @ M @ H, rtol=1e-11, atol=1e-11 * np.abs(G).max())
    else:
        np.testing.assert_allclose(G, H.T @ H, rtol=1e-12, atol=1e-12 * np.abs(G).max())


@pytest.mark.parametrize("weighted", [False, True])
def test_combine_stores_measures_and_checks(comm, rng, weighted, monkeypatch):
    monkeypatch.setattr(sweeps, "_BLOCK_ELEMENTS", 600)
    n, k, c, n_out, d = 1000, 6, 5, 4, 3
    U, C = rng.standard_normal((n, k)), rng.standard_normal((n, c))
    A, T = rng.standard_normal((k, n_out + d)), rng.standard_normal((c, n_out + d))
    M, Ul, Cl, kw = operands(U, C, weighted, comm)
    out = np.empty((Ul.shape[0], n_out))
    G, e = sweeps.combine(Ul, A, Cl, T, n_out=n_out, out=out, comm=comm, **kw)
    Y = U @ A + C @ T
    np.testing.assert_allclose(gather_rows(out, comm), Y[:, :n_out], rtol=1e-13, atol=1e-12)
    Y2 = Y[:, n_out:]
    assert e == pytest.approx(float(np.sum(Y2 * (M @ Y2))), rel=1e-12)
    if weighted:
        assert G is None
    else:
        np.testing.assert_allclose(G, Y[:, :n_out].T @ Y[:, :n_out], rtol=1e-12)
    # in place: out may be U itself (each block is formed before it is written)
    Ul2 = Ul.copy()
    sweeps.combine(Ul2, A[:, :k], None, None, n_out=k, out=Ul2, comm=comm)
    np.testing.assert_allclose(gather_rows(Ul2, comm), U @ A[:, :k], rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_incremental_svd_with_weak_and_dropped_directions(comm, rng, weighted):
    """Blocks whose residuals hold directions far below the others (1e-6 and 1e-13 of the
    largest): the weak ones must be kept (accurate route) or are dropped into the bound, and
    either way the modes match LAPACK and the bound holds."""
    n, m = 800, 48
    sv = np.concatenate([np.logspace(0, -2, 12), np.logspace(-6, -7, 6), np.full(6, 1e-13)])
    Ul = np.linalg.qr(rng.standard_normal((n, len(sv))))[0]
    Vr = np.linalg.qr(rng.standard_normal((m, len(sv))))[0]
    X = (Ul * sv) @ Vr.T
    Mg = block_diag_global(spd_product(n), comm) if weighted else np.eye(n)
    product = local_rows(spd_product(n), comm) if weighted else None
    Xl = distribute_rows(X, comm)
    for opts, k_exp in (({"rtol": 1e-9}, 18), ({"rel_l2_err": 1e-5}, None)):
        est = IncrementalSVD(product=product, comm=comm, **opts).fit(Xl, chunk=8)
        U = gather_rows(est.modes_, comm)
        E = X - U @ (U.T @ Mg @ X)
        err = float(np.sqrt(np.sum(E * (Mg @ E))))
        assert err <= est.error_bound_ * (1 + 1e-6) + 1e-14
        assert np.abs(U.T @ Mg @ U - np.eye(U.shape[1])).max() < 1e-12
        R = np.linalg.cholesky(Mg).T  # ||X||_M = ||R X||: LAPACK's singular values
        s_ref = np.linalg.svd(R @ X, compute_uv=False)
        if k_exp is not None:
            assert est.n_components_ == k_exp
            np.testing.assert_allclose(est.singular_values_, s_ref[:k_exp], rtol=1e-6)
        else:
            assert err <= 1e-5 * np.sqrt(np.sum(s_ref**2))

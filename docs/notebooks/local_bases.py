# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Local reduced bases for a transported pulse
#
# A Gaussian pulse carried through the unit square by a constant velocity of direction
# angle $a$ and speed $s$ ([`solvers.advection`](../../api/solvers.advection/)):
#
# $$
# \partial_t u + b(\mu)\cdot\nabla u - \varepsilon\Delta u = 0, \qquad
# b(\mu) = s\,(\cos a, \sin a), \qquad \mu = (a, s) \in [0, \pi/2] \times [0.5, 1.5],
# $$
#
# with $u = 0$ on the inflow sides and SUPG stabilization. The operator is exactly affine,
# $A(\mu) = \sum_{q=1}^{6} \theta_q(\mu) A_q$. With small $\varepsilon$ the pulse moves
# almost rigidly: the solution manifold is a family of translates whose Kolmogorov width
# decays slowly, so one global reduced basis needs many modes. Local bases
# ([`rom.local.bases`](../../api/rom.local.bases/)) split the training trajectories into clusters
# $C_1, \dots, C_K$ and give each its own POD basis $\Psi_k$ of size $N_k$.
#
# This notebook runs the pieces of `cases/local_bases.py` step by step: trajectories into a
# snapshot store, the global POD against local ones, two clusterings at a fixed $K$
# (k-means on the parameters against k-medoids in the sine dissimilarity), the
# concatenated-SVD bounds behind the error-constrained merge clustering, and the a priori
# efficiency estimate. The documentation build runs it at a small size
# (`ROM_DOCS_SMALL=1`); unset the variable for the default size of the case. It runs
# serially here, and unchanged under `mpirun` as a script
# (`jupytext --to py:percent`, then `mpirun -n 2 python local_bases.py`).

# %%
import os
import shutil
import tempfile
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401  (before dolfinx)
import numpy as np
from mpi4py import MPI

from rom import plotting
from rom.local import bounds
from rom.compression.truncation import tail_energies
from rom.io import SnapshotStore
from rom.local.bases import LocalBases
from rom.local.merge_clustering import ErrorConstrainedClustering
from rom.models.galerkin import project_operator, space_time_error
from rom.sampling import latin_hypercube
from solvers.advection import AdvectionModel

SMALL = os.environ.get("ROM_DOCS_SMALL") == "1"
SIZE, N_TRAIN, N_TEST, N_STEPS = (20, 24, 6, 20) if SMALL else (32, 32, 8, 40)
K, N_FIX, TOL = 4, 10, 1e-2  # clusters of the comparison, fixed basis size, tolerance
KS = [k for k in (1, 2, 4, 8) if k <= N_TRAIN]
comm = MPI.COMM_WORLD
out = Path(comm.bcast(tempfile.mkdtemp(prefix="rom-local-") if comm.rank == 0 else None))


def say(*args):
    """Print on rank 0 only (the notebook also runs as a script under mpirun)."""
    if comm.rank == 0:
        print(*args)


say(
    f"size {SIZE}, {N_TRAIN} training and {N_TEST} test parameters, {N_STEPS} steps, "
    f"{comm.size} rank(s), output in {out}"
)

# %% [markdown]
# ## Offline 1: full-order trajectories into a snapshot store
#
# Latin-hypercube training and held-out parameters (seeded), one implicit-Euler trajectory
# of $T$ steps each. The store keys every row by the mesh input node, so it reads back by
# owned rows with any number of ranks ([HDF5 schema](../../hdf5-schema/)); `sample` is the
# trajectory id of every column.

# %%
model = AdvectionModel(comm, size=SIZE, n_steps=N_STEPS, final_time=0.5)
mus_train = latin_hypercube(model.parameter_ranges, N_TRAIN, seed=0)
mus_test = latin_hypercube(model.parameter_ranges, N_TEST, seed=1)

path = out / "advection.h5"
store = SnapshotStore.create(
    path, {"u": model.keys}, parameter_names=model.parameter_names, comm=comm
)
store.write_mesh(*(model.mesh_for_plot() or (None, None)))
t0 = time.perf_counter()
for i, mu in enumerate(mus_train):
    store.append(
        {"u": model.solve(mu)}, parameters=mu, time=model.times, sample=np.full(model.n_steps, i)
    )
store.close()
t_fom = time.perf_counter() - t0
with SnapshotStore.open(path, comm=comm, keys={"u": model.keys}) as st:
    X, params, groups = st.read("u"), st.parameters, st.sample
test = [model.solve(mu) for mu in mus_test]
M = model.mass
say(
    f"{model.n_dofs} dofs, {N_TRAIN} trajectories x {N_STEPS} steps in {t_fom:.2f} s, "
    f"snapshot matrix {model.n_dofs} x {X.shape[1]}"
)

# %% [markdown]
# ### The trajectories
#
# The path of the pulse for three training parameters (the maximum over a few time
# steps). Rank 0 holds the plotting mesh in input order; `points[keys]` are the owned dof
# coordinates, which are all of them on one rank.

# %%
mesh = model.mesh_for_plot()
if comm.rank == 0 and mesh is not None and comm.size == 1:
    import matplotlib.pyplot as plt

    points, cells = mesh
    shown = np.argsort(mus_train[:, 0])[[0, N_TRAIN // 2, -1]]  # flat, diagonal, steep
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    for ax, i in zip(axes, shown, strict=True):
        values = np.empty(points.shape[0])
        values[model.keys] = X[:, groups == i][:, :: max(N_STEPS // 5, 1)].max(axis=1)
        a, s = mus_train[i]
        plotting.field(
            points,
            cells,
            values,
            ax=ax,
            label="u",
            cmap="viridis",
            title=f"a = {a:.2f}, s = {s:.2f}",
            vmin=0.0,
            vmax=1.0,
        )

# %% [markdown]
# ## Offline 2: one global basis against local ones
#
# Every basis is $M$-orthonormal ($M$ the mass matrix) and sized by the relative energy
# rule $\sum_{n>N_k}\sigma_n(S_k)^2 \le \varepsilon^2 \|S_k\|_M^2$. The items clustered are
# whole trajectories $U = (u^1, \dots, u^T)$, so a time-dependent ROM runs with one basis.
# The sine dissimilarity ([`rom.local.dissimilarity`](../../api/rom.local.dissimilarity/))
#
# $$
# \delta(U, V) = \sqrt{1 - \frac{\langle U, V\rangle_M^2}{\|U\|_M^2\,\|V\|_M^2}},
# \qquad \langle U, V\rangle_M = \sum_t \langle u^t, v^t\rangle_M,
# $$
#
# is the relative error of approximating $U$ by a multiple of $V$; k-medoids in $\delta$
# ([`rom.local.clustering`](../../api/rom.local.clustering/)) therefore groups trajectories that
# share directions, which is what a small basis needs. Below: the relative POD tail
# $e_N = \sqrt{\sum_{n>N}\sigma_n^2/\|S\|_M^2}$ of all data and of each of the $K$ sine
# k-medoids clusters.


# %%
def fit(clustering, n_clusters=1, **options):
    """Local bases of the training trajectories, as in the case (collective)."""
    return LocalBases(
        clustering=clustering,
        n_clusters=n_clusters,
        rel_l2_err=TOL,
        product=M,
        comm=comm,
        seed=0,
        **options,
    ).fit(X, params=params, groups=groups)


glob = fit("kmeans-parameters", 1)
sine = fit("sine-kmedoids", K)
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
plotting.singular_values(
    glob.global_singular_values_,
    total_energy=glob.global_energy_,
    ax=axes[0],
    title="global POD (K = 1)",
)
for k, (sv, energy) in enumerate(zip(sine.singular_values_, sine.energies_, strict=True)):
    axes[1].semilogy(
        np.arange(1, sv.size + 1),
        np.sqrt(tail_energies(sv)[1:] / energy),
        "-",
        label=f"cluster {k} ({sine.cluster_sizes_[k]} traj.)",
    )
sv = glob.global_singular_values_
axes[1].semilogy(
    np.arange(1, sv.size + 1),
    np.sqrt(tail_energies(sv)[1:] / glob.global_energy_),
    "k--",
    label="global",
)
axes[1].axhline(TOL, color="r", lw=0.8, label=f"tolerance {TOL:g}")
axes[1].set(
    xlabel="basis size N",
    ylabel="relative POD tail $e_N$",
    ylim=(1e-6, 1.5),
    xlim=(0, 3 * glob.global_basis_size_),
    title=f"sine k-medoids clusters, K = {K}",
)
axes[1].grid(True, which="both", alpha=0.3)
axes[1].legend(fontsize=7)
fig.tight_layout()
for eps in (1e-1, 3e-2, 1e-2, 3e-3):
    local, n_global = sine.sizes_for(eps)
    say(f"eps = {eps:7.1e}: global N_1 = {n_global:3d}, local N_k = {local.tolist()}")

# %% [markdown]
# ## Two clusterings at a fixed K
#
# Online, a held-out parameter $\mu$ is sent to the cluster of the nearest training
# parameter (standardized; `LocalBases.select(mu=...)`), and its trajectory is measured by
# the relative space-time projection error on the first $N$ modes of that cluster,
#
# $$
# e_N(U) = \sqrt{\frac{\sum_t \|u^t - \Psi\Psi^T M u^t\|_M^2}{\sum_t\|u^t\|_M^2}},
# \qquad \Psi = \Psi_k[:, {:}N].
# $$
#
# Compared: one global basis, k-means on the standardized parameters, and sine k-medoids,
# all with $K$ clusters and at the same basis size. The training error (each trajectory on
# its own cluster) measures the clustering alone; the held-out error also pays for the
# online selection, which may send a trajectory to a cluster that does not hold its
# direction of transport.


# %%
def projection_error(lb, k, n, U):
    """e_N of trajectory U on the first n modes of cluster k (collective)."""
    B = lb.basis(k, n)
    return space_time_error(U, B @ project_operator(M, U, W=B, comm=comm), product=M, comm=comm)


configs = {
    "global (K = 1)": glob,
    f"k-means on parameters, K = {K}": fit("kmeans-parameters", K),
    f"sine k-medoids, K = {K}": sine,
}
N_GRID = np.arange(1, 3 * N_FIX + 1)
held_out, training = {}, {}
for name, lb in configs.items():
    selected = [lb.select(mu=mu) for mu in mus_test]
    held_out[name] = np.array(
        [
            [projection_error(lb, k, n, U) for n in N_GRID]
            for U, k in zip(test, selected, strict=True)
        ]
    )
    training[name] = np.array(
        [projection_error(lb, lb.labels_[g], N_FIX, X[:, groups == g]) for g in range(N_TRAIN)]
    )
err_global, err_kmeans, err_sine = (held_out[name][:, N_FIX - 1].mean() for name in configs)
say(f"projection error at N = {N_FIX}:  held-out mean / max, training mean")
for name in configs:
    e = held_out[name][:, N_FIX - 1]
    say(f"  {name:28s} {e.mean():.3e} / {e.max():.3e}, {training[name].mean():.3e}")
fig = plotting.errors(
    N_GRID,
    {name: e.mean(axis=0) for name, e in held_out.items()},
    ylabel="held-out projection error (mean)",
)
fig.axes[0].axvline(N_FIX, color="k", lw=0.8, ls=":")

# %% [markdown]
# ### The clusters in parameter space
#
# k-means on the parameters cuts the $(a, s)$ box into compact cells; the sine clustering
# only sees the trajectories, and its clusters follow the direction of transport (the
# angle) more than the speed, since trajectories that differ only in speed share the first
# part of their path. The third map is the error-constrained merge clustering (next
# section), whose number of clusters follows from the target rank $r = N$ and the tolerance.
# Circles: medoids; crosses: held-out parameters.

# %%
merged = fit("merge", rank=N_FIX)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
maps = {
    f"k-means on parameters, K = {K}": configs[f"k-means on parameters, K = {K}"],
    f"sine k-medoids, K = {K}": sine,
    f"merge (r = {N_FIX}): K = {merged.n_clusters_}": merged,
}
for ax, (title, lb) in zip(axes, maps.items(), strict=True):
    plotting.clusters(
        lb.labels_,
        parameters=mus_train,
        parameter_names=model.parameter_names,
        medoids=lb.medoid_indices_,
        ax=ax,
        title=title,
    )
    ax.scatter(mus_test[:, 0], mus_test[:, 1], marker="x", color="k", s=25)

# %% [markdown]
# ## Error-constrained merging: bounds on a concatenated SVD
#
# The merge clustering ([`rom.local.merge_clustering`](../../api/rom.local.merge_clustering/)) joins
# trajectory blocks $A_j$ while the relative best rank-$r$ error of their concatenation
# $X = [A_1 \dots A_J]$,
#
# $$
# e_r(X) = \sqrt{\textstyle\sum_{i>r}\sigma_i(X)^2}\,/\,\|X\|_M ,
# $$
#
# stays below $\varepsilon$, deciding each merge from cheap bounds
# ([`rom.local.bounds`](../../api/rom.local.bounds/)), each a lower bound $L \le \sum_{i\le r}\sigma_i^2$
# turned into $\hat e = \sqrt{1 - L/\|X\|^2} \ge e_r(X)$: **Weyl** (corrected form: the
# best single block's head, or whole blocks of total width $\le r$), the **residual**
# bound (singular values of the incremental residuals $(I - QQ^TM)A_j$), and the truncated
# Gram **estimator** (CGS2, $r + 5$ directions kept). Ky Fan gives a *lower* bound, used to
# reject merges early. The published Weyl form counts a whole block wider than $r$ as
# captured: it is no bound (below the exact error for a single block).
#
# Here trajectories are merged one by one, nearest first in $\delta$ from a medoid of the
# sine clustering, and every bound is compared with the exact error (SVD of the
# concatenation).

# %%
blocks = [X[:, groups == g] for g in range(N_TRAIN)]
seed = int(sine.medoid_indices_[0])
order = np.argsort(sine.dissimilarity_[seed], kind="stable")[: min(N_TRAIN, 8)]
kw = {"rank": N_FIX, "comm": comm, "product": M}
estimates = {
    "exact": bounds.exact_error,
    "Weyl (corrected)": bounds.weyl_bound,
    "residual": bounds.residual_bound,
    "estimator": bounds.estimator_bound,
    "Ky Fan (lower bound)": bounds.kyfan_lower_bound,
    "Weyl (published, no bound)": lambda b, **o: bounds.weyl_bound(b, published=True, **o),
}
bound_curves = {
    name: np.array([f([blocks[i] for i in order[:j]], **kw) for j in range(1, order.size + 1)])
    for name, f in estimates.items()
}
n_merged = np.arange(1, order.size + 1)
fig, ax = plt.subplots(figsize=(6, 3.8))
styles = {
    "exact": "k-o",
    "Weyl (corrected)": "s--",
    "residual": "^--",
    "estimator": "x:",
    "Ky Fan (lower bound)": "v-.",
    "Weyl (published, no bound)": "+:",
}
for name, e in bound_curves.items():
    ax.semilogy(n_merged, np.maximum(e, 1e-16), styles[name], ms=4, label=name)
ax.axhline(TOL, color="r", lw=0.8, label=f"eps = {TOL:g}")
ax.set(xlabel="trajectories merged", ylabel=f"relative rank-{N_FIX} error", ylim=(1e-9, 2))
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize=7)
fig.tight_layout()

ecc = ErrorConstrainedClustering(rank=N_FIX, eps=TOL, product=M, comm=comm).fit(blocks)
m = ecc.metrics_
say(
    f"merge clustering: {m['n_clusters']} clusters ({m['n_nonsingletons']} non-singleton), "
    f"{m['n_evaluations']} merges predicted ({m['n_weyl_accepts']} accepted by Weyl, "
    f"{m['n_kyfan_rejects']} rejected by Ky Fan), {m['n_splits']} split at certification, "
    f"largest certified error {ecc.certified_errors_.max():.2e} <= {TOL:g}"
)

# %% [markdown]
# Each trajectory has $T > r$ columns, so the corrected Weyl bound can only credit one
# block's own head and stays near $\sqrt{1 - 1/J}$; the residual bound never credits
# energy inside the span already built, which transported pulses share, and is as loose.
# The estimator follows the exact error to a few digits, which is why the merge
# clustering decides with it (and certifies every cluster by an exact SVD at the end).
#
# ## A priori efficiency
#
# With cluster populations $n_k$, local sizes $N_k(\varepsilon)$, the global size
# $N_1(\varepsilon)$ and the cost $c(N) = N^3$ of a dense reduced solve
# (`LocalBases.efficiency_estimate`),
#
# $$
# \eta(K) = \frac{\sum_k (n_k/n)\, c(N_k(\varepsilon))}{c(N_1(\varepsilon))},
# $$
#
# so local bases pay off when $\eta < 1$ ($\eta(1) = 1$ exactly). The case compares it with
# the measured cost of the online solves.

# %%
efficiency = {}
for clustering in ("kmeans-parameters", "sine-kmedoids"):
    efficiency[clustering] = []
    for n_clusters in KS:
        lb = fit(clustering, n_clusters)
        efficiency[clustering].append(lb.efficiency_estimate())
        say(
            f"{clustering:18s} K = {n_clusters}: N_k = {lb.basis_sizes_.tolist()} "
            f"(global {lb.global_basis_size_}), eta = {efficiency[clustering][-1]:.3f}"
        )
efficiency["merge"] = merged.efficiency_estimate()
say(f"merge              K = {merged.n_clusters_}: eta = {efficiency['merge']:.3f}")
fig, ax = plt.subplots(figsize=(5.5, 3.6))
for clustering in ("kmeans-parameters", "sine-kmedoids"):
    ax.semilogy(KS, efficiency[clustering], "o-", label=clustering)
ax.semilogy([merged.n_clusters_], [efficiency["merge"]], "k*", ms=10, label="merge")
ax.axhline(1.0, color="k", lw=0.8, ls=":")
ax.set(xlabel="number of clusters K", ylabel="efficiency estimate eta(K)")
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## The same from the command line
#
# ```bash
# mpirun -n 2 python -m mpi4py cases/local_bases.py --out run/local_bases
# rom cluster run/local_bases/advection.h5 --field u --n-clusters 4 --out labels.json
# rom plot labels.json --kind clusters --out clusters.png
# ```
#
# ([`rom cluster`](../../cli/) clusters single snapshots, not whole trajectories.) The case
# adds the Galerkin ROMs of every local basis, their held-out errors against the
# basis size and the measured online cost ratio (`summary.json`, `clusters.png`,
# `error_vs_basis_size.png`).

# %%
comm.Barrier()
if comm.rank == 0:
    shutil.rmtree(out, ignore_errors=True)  # the notebook's temporary store
comm.Barrier()

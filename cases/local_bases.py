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
# ([`rom.local.bases`](../../api/rom.local.bases/)) split the training trajectories into
# clusters $C_1, \dots, C_K$ and give each its own POD basis $\Psi_k$ of size $N_k$
# ([theory §3](../../theory/#3-sine-dissimilarity-and-local-bases)).
#
# Compared, for $K = 1, 2, 4, 8$: k-means on the parameters, k-means on the snapshots,
# k-medoids and k-center in the sine dissimilarity, and the error-constrained merge
# clustering ([theory §4](../../theory/#4-concatenated-svd-bounds-and-error-constrained-clustering)),
# and time-local bases: one basis per time window, chosen by time
# ([`rom.local.time_windows`](../../api/rom.local.time_windows/)).
# Online, a held-out parameter goes to the cluster of the nearest training parameter and
# runs a Galerkin ROM ([`rom.models.galerkin`](../../api/rom.models.galerkin/)) started from
# the projected initial pulse.
#
# This page is `cases/local_bases.py`, executed at a small size (`ROM_DOCS_SMALL=1`). The
# same file is the case script:
#
# ```bash
# mpirun -n 2 .venv/bin/python -m mpi4py cases/local_bases.py --out run/local_bases
# ```
#
# writes `advection.h5` (snapshots), `summary.json`, `clusters.png` and
# `error_vs_basis_size.png`; `--help` lists the options.

# %%
import time

import common
import dolfinx_solver  # noqa: F401  (before dolfinx)
import matplotlib.pyplot as plt
import numpy as np
from mpi4py import MPI

from rom import plotting
from rom.compression import pod
from rom.compression.truncation import tail_energies
from rom.compression.truncation import truncation_rank
from rom.io import SnapshotStore
from rom.local import bounds
from rom.local.bases import LocalBases
from rom.local.cost_model import fit_online_cost
from rom.local.merge_clustering import ErrorConstrainedClustering
from rom.local.time_windows import TimeWindowBases
from rom.models.galerkin import LinearAffineROM
from rom.parallel import allreduce_sum
from rom.parallel import blas_threads
from rom.sampling import latin_hypercube
from solvers.advection import AdvectionModel

CLUSTERINGS = ["kmeans-parameters", "kmeans-snapshots", "sine-kmedoids", "sine-kcenter", "merge"]
#: not a clustering of trajectories: one basis per time window (rom.local.time_windows)
TIME_WINDOWS = "time-windows"

DESCRIPTION = "Local reduced bases on a transported pulse: clusterings compared at K = 1, 2, 4, 8"
p = common.parser(
    DESCRIPTION, size=32, n_train=32, tol=1e-2, out="run/local_bases", n_steps=40, n_test=8
)
p.add_argument("--final-time", type=float, default=0.5)
p.add_argument("--clusters", default="1,2,4,8", help="comma-separated K values")
p.add_argument(
    "--clusterings", default=",".join([*CLUSTERINGS, TIME_WINDOWS]), help="and time-windows"
)
p.add_argument("--basis-size", type=int, default=10, help="fixed basis size, merge rank")
p.add_argument("--max-modes", type=int, default=200, help="largest reduced model evaluated")
args, comm, log, out = common.start(
    p,
    small={
        "size": 20,
        "n_train": 24,
        "n_test": 6,
        "n_steps": 20,
        "clusters": "1,2,4",
        "clusterings": "kmeans-parameters,sine-kmedoids,merge",
    },
)
clusterings = [c for c in args.clusterings.split(",") if c]
Ks = [int(k) for k in args.clusters.split(",") if k]
timings: dict[str, float] = {}
files = ["advection.h5", "summary.json"]

# %% [markdown]
# ## Offline 1: full-order trajectories into a snapshot store
#
# Latin-hypercube training and held-out parameters (seeded), one implicit-Euler trajectory
# of $T$ steps each. The store keys every row by the mesh input node, so it reads back by
# owned rows with any number of ranks ([HDF5 schema](../../hdf5-schema/)); `sample` is the
# trajectory id of every column.

# %%
t0 = time.perf_counter()
model = AdvectionModel(comm, size=args.size, n_steps=args.n_steps, final_time=args.final_time)
timings["setup"] = time.perf_counter() - t0
mus_train = latin_hypercube(model.parameter_ranges, args.n_train, seed=args.seed)
mus_test = latin_hypercube(model.parameter_ranges, args.n_test, seed=args.seed + 1)
nt = model.n_steps
path = out / "advection.h5"
with blas_threads(comm):
    timings["offline_fom"] = common.write_trajectories(
        path, model, "u", mus_train, comm, case="local_bases"
    )
    with SnapshotStore.open(path, "r", comm=comm, keys={"u": model.keys}) as st:
        X, params, groups = st.read("u"), st.parameters, st.sample
    test = [model.solve(mu) for mu in mus_test]
u0 = model.initial_condition()
M = model.mass
test_energy_t = [allreduce_sum(np.einsum("ij,ij->j", U, M(U)), comm) for U in test]
test_energy = [float(np.sum(E)) for E in test_energy_t]
common.say(
    comm,
    f"{model.n_dofs} dofs, {args.n_train} trajectories x {nt} steps in "
    f"{timings['offline_fom']:.2f} s, snapshot matrix {model.n_dofs} x {X.shape[1]}",
)

# %% [markdown]
# ### The trajectories
#
# The path of the pulse for three training parameters (the maximum over a few time
# steps), drawn in a serial run (rank 0 holds the plotting mesh in input order; `points[keys]`
# are the owned dof coordinates, all of them on one rank).

# %%
mesh = model.mesh_for_plot()
if comm.rank == 0 and mesh is not None and comm.size == 1:
    points, cells = mesh
    shown = np.argsort(mus_train[:, 0])[[0, args.n_train // 2, -1]]  # flat, diagonal, steep
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    for ax, i in zip(axes, shown, strict=True):
        values = np.empty(points.shape[0])
        values[model.keys] = X[:, groups == i][:, :: max(nt // 5, 1)].max(axis=1)
        plotting.field(
            points,
            cells,
            values,
            ax=ax,
            label="u",
            cmap="viridis",
            title=f"a = {mus_train[i, 0]:.2f}, s = {mus_train[i, 1]:.2f}",
            vmin=0.0,
            vmax=1.0,
        )
    common.save_figure(fig, out, "trajectories.png", files, args)

# %% [markdown]
# ## Online cost model
#
# The efficiency estimate ([theory §3.6](../../theory/#36-a-priori-efficiency-estimate))
# needs the cost $c(N)$ of one online solve: timed solves of one global ROM truncated to
# several sizes (the slowest rank, so all ranks agree), fitted by
# $c(N) = c_0 + c_1 N + c_2 N^2 + c_3 N^3$.


# %%
def best_time(f, *, repeat: int = 5, number: int = 10) -> float:
    """Seconds per call of ``f``: the best of ``repeat`` means over ``number`` calls (online
    solves take microseconds to milliseconds, so the minimum filters out scheduler noise)."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            f()
        best = min(best, (time.perf_counter() - t0) / number)
    return float(best)


def galerkin(V: np.ndarray) -> LinearAffineROM:
    """The Galerkin ROM of the advection model on the basis ``V`` (collective)."""
    return LinearAffineROM.from_full(
        V,
        mass=M,
        stiffness=model.stiffness_terms,
        rhs=model.rhs_terms,
        comm=comm,
        theta_a=model.theta_a,
        theta_f=model.theta_f,
    )


with blas_threads(comm):
    pod_g = pod(X, product=M, comm=comm, rank=min(args.max_modes, X.shape[1]))
    Vg = pod_g.modes
    # N_1: the global POD size for the tolerance (energy of all the data, not of the modes)
    n1_tol = truncation_rank(
        pod_g.singular_values,
        rel_l2_err=args.tol,
        total_energy=float(allreduce_sum(np.einsum("ij,ij->", X, M(X)), comm)),
    )
    rom_g = galerkin(Vg)
    c0_g = allreduce_sum(Vg.T @ M(u0), comm)
    cost_sizes = sorted({n for n in (1, 2, 4, 8, 16, 24, 32, 48, 64, 96) if n <= Vg.shape[1]})
    cost_times = []
    for n in cost_sizes:
        r = rom_g.truncated(n)
        t = best_time(lambda r=r, n=n: r.solve(mus_test[0], dt=model.dt, n_steps=nt, c0=c0_g[:n]))
        cost_times.append(comm.allreduce(t, op=MPI.MAX))
cost = fit_online_cost(cost_sizes, cost_times)
common.say(comm, f"online cost c(N) = {np.array2string(cost.coefficients, precision=3)} s")

# %% [markdown]
# ## Local bases for every clustering and K
#
# Every basis is $M$-orthonormal ($M$ the mass matrix) and sized by the relative energy
# rule $\sum_{n>N_k}\sigma_n(S_k)^2 \le \varepsilon^2 \|S_k\|_M^2$ (`--tol`). The items
# clustered are whole trajectories $U = (u^1, \dots, u^T)$, so a time-dependent ROM runs
# with one basis. The sine dissimilarity
# ([`rom.local.dissimilarity`](../../api/rom.local.dissimilarity/))
#
# $$
# \delta(U, V) = \sqrt{1 - \frac{\langle U, V\rangle_M^2}{\|U\|_M^2\,\|V\|_M^2}},
# \qquad \langle U, V\rangle_M = \sum_t \langle u^t, v^t\rangle_M,
# $$
#
# is the relative error of approximating $U$ by a multiple of $V$; k-medoids in $\delta$
# therefore groups trajectories that share directions, which is what a small basis needs.
#
# Each dictionary of local bases is measured by the relative space-time projection error
# at the fixed basis size (`--basis-size`; training trajectories on their own cluster,
# held-out ones on the selected cluster), the held-out ROM error at the tolerance sizes
# and against the basis size, and the a priori efficiency estimate $\eta(K)$ against the
# measured online cost ratio. The merge clustering takes the target rank $r$ = basis size
# and $\varepsilon$ = `--tol`; its $K$ follows from them.


# %%
def fit(clustering: str, K: int, **kw) -> LocalBases:
    """Local bases of the training trajectories (collective)."""
    return LocalBases(
        clustering=clustering,
        n_clusters=K,
        rel_l2_err=args.tol,
        product=M,
        comm=comm,
        seed=args.seed,
        fallback=True,
        **kw,
    ).fit(X, params=params, groups=groups)


def step_errors(i: int, Cs: list, Gs: list) -> tuple[float, np.ndarray]:
    """Held-out trajectory ``i`` from reduced states ``Cs`` (blocks of consecutive steps, each
    on an M-orthonormal basis V with ``G = V^T M U_i`` of those steps): the space-time
    relative error and the relative error at each step.

    :math:`\\|u - Vc\\|_M^2 = \\|u\\|_M^2 - 2 c^T V^T M u + \\|c\\|^2`: no full-order field."""
    cg = np.concatenate([np.sum(C * G, axis=0) for C, G in zip(Cs, Gs, strict=True)])
    cc = np.concatenate([np.sum(C * C, axis=0) for C in Cs])
    e2 = np.maximum(test_energy_t[i] - 2.0 * cg + cc, 0)
    return float(np.sqrt(e2.sum() / test_energy[i])), np.sqrt(e2 / test_energy_t[i])


class Dictionary:
    """Galerkin ROMs on a list of bases (at most ``--max-modes`` modes each) and their errors
    on the held-out trajectories, cached by (parameter, basis, size). Collective."""

    def __init__(self, bases: list) -> None:
        self.V = [B[:, : args.max_modes] for B in bases]
        self.roms = [galerkin(V) for V in self.V]
        self.c0 = [allreduce_sum(V.T @ M(u0), comm) for V in self.V]
        self._G: dict = {}
        self._e: dict = {}

    def G(self, i: int, k: int) -> np.ndarray:
        """:math:`V_k^T M U_i`, all steps (collective)."""
        if (i, k) not in self._G:
            self._G[i, k] = allreduce_sum(self.V[k].T @ M(test[i]), comm)
        return self._G[i, k]

    def errors(self, i: int, k: int, n: int) -> tuple[float, np.ndarray]:
        """:func:`step_errors` of the ROM on the first ``n`` modes of basis ``k`` (-1: the
        global basis)."""
        if k < 0:
            return global_rom.errors(i, 0, n)
        n = min(int(n), self.roms[k].n_modes)
        if (i, k, n) not in self._e:
            r = self.roms[k].truncated(n)
            C = r.solve(mus_test[i], dt=model.dt, n_steps=nt, c0=self.c0[k][:n])[:, 1:]
            self._e[i, k, n] = step_errors(i, [C], [self.G(i, k)[:n]])
        return self._e[i, k, n]


global_rom = Dictionary([Vg])


def error_curves(errors_of, grid: np.ndarray) -> dict:
    """Held-out errors against the modes per ROM ``n``: mean space-time error, the worst case
    (largest over the held-out parameters of the largest error over the steps) and that of
    each parameter; ``errors_of(i, n)`` as :func:`step_errors`."""
    e = [[errors_of(i, int(n)) for n in grid] for i in range(len(test))]
    st = np.array([[x[0] for x in row] for row in e])
    per = np.array([[x[1].max() for x in row] for row in e])
    return {
        "n": grid,
        "mean": st.mean(axis=0),
        "max": st.max(axis=0),
        "worst": per.max(axis=0),
        "per_parameter": per,
    }


def size_grid(n_max: int) -> np.ndarray:
    """Every size up to 40, then 25 sizes spaced geometrically up to ``n_max``."""
    grid = np.unique(
        np.concatenate(
            [
                np.arange(1, min(n_max, 40) + 1),
                np.rint(np.geomspace(40, max(n_max, 40), 25)).astype(int),
            ]
        )
    )
    return grid[grid <= n_max]


def routed_errors(lb: LocalBases, d: Dictionary, grid: np.ndarray) -> dict:
    """Held-out ROM errors with the checked selection (``LocalBases.route`` on the first
    full-order step; the global ROM on fall-back): at the tolerance sizes, and against the
    modes per ROM (every ROM of the dictionary, the fall-back included, truncated to ``n``)."""
    routes = [lb.route(U[:, :1]) for U in test]
    n1 = min(lb.global_basis_size_, Vg.shape[1])
    e = [
        d.errors(i, s.cluster, int(lb.basis_sizes_[s.cluster]) if s.cluster >= 0 else n1)
        for i, s in enumerate(routes)
    ]
    return {
        "rules": [s.rule for s in routes],
        "clusters": [s.cluster for s in routes],
        "test_rom_error_mean": float(np.mean([x[0] for x in e])),
        "test_rom_error_max": float(np.max([x[0] for x in e])),
        "test_rom_error_worst_time_max": float(np.max([x[1].max() for x in e])),
        "error_vs_n": error_curves(lambda i, n: d.errors(i, routes[i].cluster, n), grid),
    }


def evaluate(lb: LocalBases) -> dict:
    """Online evaluation of one dictionary of local bases on the held-out parameters."""
    d = Dictionary(lb.modes_)
    roms, MU0 = d.roms, d.c0
    sel = [lb.select(mu=mu) for mu in mus_test]
    MUt = [d.G(i, k) for i, k in enumerate(sel)]
    grid = size_grid(max(V.shape[1] for V in d.V))

    def rom_error(i: int, k: int, n: int) -> float:
        return d.errors(i, k, n)[0]

    curves = error_curves(lambda i, n: d.errors(i, sel[i], n), grid)
    proj_err = np.array(
        [
            np.sqrt(max(E - np.sum(G[: args.basis_size] ** 2), 0.0) / E)
            for G, E in zip(MUt, test_energy, strict=True)
        ]
    )
    E_tr = lb.projection_errors(X, n=args.basis_size)[lb.column_labels_, np.arange(X.shape[1])]
    xn2 = allreduce_sum(np.einsum("ij,ij->j", X, M(X)), comm)
    train_err = [
        float(np.sqrt(np.sum(E_tr[c] ** 2 * xn2[c]) / np.sum(xn2[c])))
        for c in (groups == g for g in np.unique(groups))
    ]
    # held-out ROM at the tolerance sizes, with timings (assemble, factor, step)
    err_tol, t_rom, worst = [], [], []
    for i, (mu, k) in enumerate(zip(mus_test, sel, strict=True)):
        n = int(lb.basis_sizes_[k])
        err_tol.append(rom_error(i, k, n))
        worst.append(d.errors(i, k, n)[1].max())  # largest error over the time steps
        r = roms[k].truncated(n)
        c0 = MU0[k][:n]
        t_rom.append(
            best_time(lambda r=r, mu=mu, c0=c0: r.solve(mu, dt=model.dt, n_steps=nt, c0=c0))
        )
    return {
        "n_clusters": lb.n_clusters_,
        "cluster_sizes": lb.cluster_sizes_,
        "labels": lb.labels_,
        "basis_sizes": lb.basis_sizes_,
        "global_basis_size": lb.global_basis_size_,
        "mean_basis_size": float(np.average(lb.basis_sizes_, weights=lb.cluster_sizes_)),
        "max_basis_size": int(lb.basis_sizes_.max()),
        "train_projection_error_mean": float(np.mean(train_err)),
        "train_projection_error_p90": float(np.percentile(train_err, 90)),
        "test_projection_error_mean": float(np.mean(proj_err)),
        "test_projection_error_p90": float(np.percentile(proj_err, 90)),
        "test_rom_error_mean": float(np.mean(err_tol)),
        "test_rom_error_max": float(np.max(err_tol)),
        "test_rom_error_worst_time_max": float(np.max(worst)),
        "routed": routed_errors(lb, d, grid),
        "rom_error_vs_n": curves,
        "eta_estimated": lb.efficiency_estimate(cost=cost),
        "eta_estimated_n3": lb.efficiency_estimate(),
        "rom_time_s_mean": float(np.mean(t_rom)),
        "selected_clusters": sel,
    }


class WindowROM:
    """Galerkin ROMs of time-local bases (``rom.local.time_windows``), switched window by
    window; errors on the held-out trajectories cached by (parameter, sizes). Collective."""

    def __init__(self, tw: TimeWindowBases) -> None:
        self.tw = tw
        self.V = [B[:, : args.max_modes] for B in tw.modes_]
        self.roms = [galerkin(V) for V in self.V]
        self.caps = [V.shape[1] for V in self.V]
        self.transfers = tw.transfer(self.caps)
        self.c0 = allreduce_sum(self.V[0].T @ M(u0), comm)
        self.G = [
            [allreduce_sum(V.T @ M(U[:, a:b]), comm) for V, (a, b) in zip(self.V, tw.windows_)]
            for U in test
        ]
        self._e: dict = {}

    def sized(self, n) -> tuple:
        """Per-window sizes: ``n`` modes each (capped), or a list of sizes."""
        n = [n] * len(self.V) if np.isscalar(n) else n
        return tuple(min(int(m), c) for m, c in zip(n, self.caps, strict=True))

    def solver(self, sizes: tuple):
        """``solve(mu)`` of the switched ROM at ``sizes``: the reduced states per window."""
        roms = [r.truncated(m) for r, m in zip(self.roms, sizes, strict=True)]
        T = [A[: sizes[w + 1], : sizes[w]] for w, A in enumerate(self.transfers)]
        c0 = self.c0[: sizes[0]]
        return lambda mu: self.tw.solve(roms, mu, dt=model.dt, c0=c0, transfers=T)

    def errors(self, i: int, n) -> tuple[float, np.ndarray]:
        sizes = self.sized(n)
        if (i, sizes) not in self._e:
            Cs = self.solver(sizes)(mus_test[i])
            Gs = [G[:m] for G, m in zip(self.G[i], sizes, strict=True)]
            self._e[i, sizes] = step_errors(i, Cs, Gs)
        return self._e[i, sizes]


def evaluate_windows(tw: TimeWindowBases) -> dict:
    """Online evaluation of time-local bases on the held-out parameters (selection by time:
    every trajectory runs through every window)."""
    w = WindowROM(tw)
    grid = size_grid(max(w.caps))
    curves = error_curves(w.errors, grid)
    sizes = w.sized(tw.basis_sizes_)
    e = [w.errors(i, sizes) for i in range(len(test))]
    proj = [
        np.sqrt(max(E - sum(np.sum(G[: args.basis_size] ** 2) for G in w.G[i]), 0.0) / E)
        for i, E in enumerate(test_energy)
    ]
    solve = w.solver(sizes)
    t_rom = [best_time(lambda mu=mu: solve(mu)) for mu in mus_test]
    steps = np.diff(tw.windows_, axis=1).ravel()
    return {
        "n_clusters": len(tw.bases_),
        "windows": tw.windows_,
        "cluster_sizes": steps,  # time steps per window (every trajectory uses every window)
        "basis_sizes": tw.basis_sizes_,
        "global_basis_size": n1_tol,
        "mean_basis_size": float(np.average(tw.basis_sizes_, weights=steps)),
        "max_basis_size": int(tw.basis_sizes_.max()),
        "train_projection_error_mean": None,
        "train_projection_error_p90": None,
        "test_projection_error_mean": float(np.mean(proj)),
        "test_projection_error_p90": float(np.percentile(proj, 90)),
        "test_rom_error_mean": float(np.mean([x[0] for x in e])),
        "test_rom_error_max": float(np.max([x[0] for x in e])),
        "test_rom_error_worst_time_max": float(np.max([x[1].max() for x in e])),
        "routed": {
            "rules": ["time"] * len(test),
            "clusters": [-2] * len(test),
            "test_rom_error_mean": float(np.mean([x[0] for x in e])),
            "test_rom_error_max": float(np.max([x[0] for x in e])),
            "test_rom_error_worst_time_max": float(np.max([x[1].max() for x in e])),
            "error_vs_n": curves,
        },
        "rom_error_vs_n": curves,
        "eta_estimated": None,
        "eta_estimated_n3": None,
        "rom_time_s_mean": float(np.mean(t_rom)),
        "selected_clusters": None,
    }


fitted: dict[str, LocalBases | TimeWindowBases] = {}
configurations: dict[str, dict] = {}
t0 = time.perf_counter()
with blas_threads(comm):
    for clustering in clusterings:
        if clustering == "merge":
            todo = [0]
        elif clustering == TIME_WINDOWS:
            todo = [K for K in Ks if 1 < K <= nt]  # K = 1: the global basis
        else:
            todo = [K for K in Ks if K <= args.n_train]
        for K in todo:
            name = f"{clustering}/K={K}"
            one = next((n for n in fitted if n.endswith("/K=1")), None)
            if K == 1 and one is not None:  # one cluster of all the data: the same bases
                fitted[name], configurations[name] = fitted[one], dict(configurations[one])
                continue
            tf = time.perf_counter()
            if clustering == TIME_WINDOWS:
                tw = TimeWindowBases(n_windows=K, rel_l2_err=args.tol, product=M, comm=comm)
                fitted[name] = tw.fit(X, groups)
                configurations[name] = evaluate_windows(tw)
                configurations[name]["fit_time_s"] = time.perf_counter() - tf
                continue
            lb = (
                fit("merge", 1, rank=args.basis_size)
                if clustering == "merge"
                else fit(clustering, K)
            )
            fit_time = time.perf_counter() - tf
            name = f"{clustering}/K={lb.n_clusters_ if K == 0 else K}"
            fitted[name] = lb
            configurations[name] = evaluate(lb) | {"fit_time_s": fit_time}
timings["local_bases"] = time.perf_counter() - t0


def first_reaching(curve: dict, key: str, level: float) -> int | None:
    """Smallest size of ``curve`` whose ``key`` error is <= ``level`` (None: never)."""
    ok = np.flatnonzero(np.asarray(curve[key]) <= level)
    return int(curve["n"][ok[0]]) if ok.size else None


def at_match(r: dict, n: int) -> dict:
    """Per held-out parameter, the largest error over the steps of the dictionary at ``n``
    modes per ROM (checked selection) against the global ROM at its tolerance size N_1, at
    ``n`` modes, and at the same total number of modes K n (capped by ``--max-modes``)."""
    curve = r["routed"]["error_vs_n"]
    j = int(np.flatnonzero(np.asarray(curve["n"]) == n)[0])
    total = min(r["n_clusters"] * n, Vg.shape[1])

    def glob_at(m: int) -> list:
        return [float(global_rom.errors(i, 0, m)[1].max()) for i in range(len(test))]

    return {
        "n": n,
        "local": np.asarray(curve["per_parameter"])[:, j],
        "global_at_tol_size": glob_at(min(n1_tol, Vg.shape[1])),
        "global_same_size": glob_at(n),
        "total_modes": total,
        "global_same_total": glob_at(total),
    }


# reference: one global basis (K = 1)
glob = next((r for r in configurations.values() if r["n_clusters"] == 1), None)
if glob is not None:
    for r in configurations.values():
        r["modes_to_match_global"] = first_reaching(
            r["rom_error_vs_n"], "mean", glob["test_rom_error_mean"]
        )
        r["cost_ratio_measured"] = r["rom_time_s_mean"] / glob["rom_time_s_mean"]
        level = glob["test_rom_error_worst_time_max"]
        n = first_reaching(r["routed"]["error_vs_n"], "worst", level)
        r["modes_to_match_global_worst"] = n
        r["modes_to_match_global_worst_parameter_selection"] = first_reaching(
            r["rom_error_vs_n"], "worst", level
        )
        r["at_match_worst"] = None if n is None else at_match(r, n)

# %% [markdown]
# ## Results
#
# Per configuration: the largest and mean local basis size $N_k$ for the tolerance, the
# global size $N_1$, the held-out projection error at the fixed size (mean, 90th
# percentile), the held-out ROM error at the tolerance sizes, the modes a local ROM needs
# to match the held-out error of the global one, the estimated $\eta$ and the measured
# online cost ratio. Then the worst case: the largest over the held-out parameters of the
# largest relative error over the time steps, with the checked selection (`LocalBases.route`
# on the first full-order step, [theory §3.5](../../theory/#35-choosing-k-and-online-assignment);
# time windows: by time), at the tolerance sizes, and the modes per ROM that bring it down
# to the global ROM's worst case.

# %%
header = ["config", "K", "N_k max", "N_k mean", "N_1", "proj mean", "proj p90", "ROM err"]
header += ["modes=glob", "eta est", "cost meas", "worst", "modes=glob worst"]
rows = [
    [
        name,
        r["n_clusters"],
        r["max_basis_size"],
        r["mean_basis_size"],
        r["global_basis_size"],
        r["test_projection_error_mean"],
        r["test_projection_error_p90"],
        r["test_rom_error_mean"],
        str(r.get("modes_to_match_global")),
        r["eta_estimated"],
        r.get("cost_ratio_measured", float("nan")),
        r["routed"]["test_rom_error_worst_time_max"],
        str(r.get("modes_to_match_global_worst")),
    ]
    for name, r in configurations.items()
]
common.say(
    comm,
    f"\nLocal bases: {model.n_dofs} dofs, {comm.size} rank(s), {args.n_train} training "
    f"trajectories x {nt} steps, tol {args.tol:g}, fixed size {args.basis_size}\n"
    + common.table(rows, header),
)

# %% [markdown]
# ### The clusters in parameter space
#
# k-means on the parameters cuts the $(a, s)$ box into compact cells; the sine clusterings
# only see the trajectories, and their clusters follow the direction of transport (the
# angle) more than the speed, since trajectories that differ only in speed share the first
# part of their path. Circles: medoids.

# %%
if comm.rank == 0 and configurations:
    rows_of = {
        c: [k for k in configurations if k.startswith(c + "/")]
        for c in clusterings
        if c != TIME_WINDOWS  # no clusters of trajectories
    }
    rows_of = {c: keys for c, keys in rows_of.items() if keys}
    ncol = max(len(keys) for keys in rows_of.values())
    fig, axes = plt.subplots(
        len(rows_of), ncol, figsize=(3.2 * ncol, 2.8 * len(rows_of)), squeeze=False
    )
    for i, keys in enumerate(rows_of.values()):
        for j in range(ncol):
            if j >= len(keys):
                axes[i, j].axis("off")
                continue
            plotting.clusters(
                fitted[keys[j]].labels_,
                parameters=mus_train,
                parameter_names=model.parameter_names,
                medoids=fitted[keys[j]].medoid_indices_,
                ax=axes[i, j],
                title=keys[j],
            )
    fig.tight_layout()
    common.save_figure(fig, out, "clusters.png", files, args)

# %% [markdown]
# ### Held-out ROM error against the basis size
#
# The global basis (K = 1) against the local bases at K = 4 and the merge clustering; the
# dotted line is the held-out error of the global ROM at its tolerance size.

# %%
if comm.rank == 0 and configurations:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, r in configurations.items():
        if r["n_clusters"] == 1 or name.endswith("K=4") or name.startswith("merge"):
            label = name if r["n_clusters"] > 1 else "global (K=1)"
            e = r["rom_error_vs_n"]
            plotting.errors(e["n"], {label: e["mean"]}, ax=ax, ylabel="held-out ROM error (mean)")
    if glob is not None:
        ax.axhline(glob["test_rom_error_mean"], color="k", ls=":", lw=0.8)
    ax.set_xlabel("modes per (local) ROM")
    common.save_figure(fig, out, "error_vs_basis_size.png", files, args)

# %% [markdown]
# ## Error-constrained merging: bounds on a concatenated SVD
#
# The merge clustering ([`rom.local.merge_clustering`](../../api/rom.local.merge_clustering/))
# joins trajectory blocks $A_j$ while the relative best rank-$r$ error of their
# concatenation $X = [A_1 \dots A_J]$,
#
# $$
# e_r(X) = \sqrt{\textstyle\sum_{i>r}\sigma_i(X)^2}\,/\,\|X\|_M ,
# $$
#
# stays below $\varepsilon$, deciding each merge from cheap bounds
# ([`rom.local.bounds`](../../api/rom.local.bounds/)): **Weyl** (corrected form), the
# **residual** bound and the truncated Gram **estimator** are upper bounds on $e_r$, **Ky
# Fan** a lower bound used to reject merges early; the published Weyl form is no bound.
# Here trajectories are merged one by one, nearest first in $\delta$ from a medoid of the
# sine clustering, and every bound is compared with the exact error (SVD of the
# concatenation).

# %%
sine = next((lb for name, lb in fitted.items() if name.startswith("sine-kmedoids")), None)
if sine is None:
    sine = fit("sine-kmedoids", max(Ks))
blocks = [X[:, groups == g] for g in range(args.n_train)]
order = np.argsort(sine.dissimilarity_[int(sine.medoid_indices_[0])], kind="stable")
order = order[: min(args.n_train, 8)]
kw = {"rank": args.basis_size, "comm": comm, "product": M}
estimates = {
    "exact": bounds.exact_error,
    "Weyl (corrected)": bounds.weyl_bound,
    "residual": bounds.residual_bound,
    "estimator": bounds.estimator_bound,
    "Ky Fan (lower bound)": bounds.kyfan_lower_bound,
    "Weyl (published, no bound)": lambda b, **o: bounds.weyl_bound(b, published=True, **o),
}
with blas_threads(comm):
    bound_curves = {
        name: np.array([f([blocks[i] for i in order[:j]], **kw) for j in range(1, order.size + 1)])
        for name, f in estimates.items()
    }
    ecc = ErrorConstrainedClustering(rank=args.basis_size, eps=args.tol, product=M, comm=comm).fit(
        blocks
    )
if comm.rank == 0:
    fig = plotting.errors(
        np.arange(1, order.size + 1),
        {name: np.maximum(e, 1e-16) for name, e in bound_curves.items()},
        ylabel=f"relative rank-{args.basis_size} error",
    )
    fig.axes[0].axhline(args.tol, color="r", lw=0.8)
    fig.axes[0].set_xlabel("trajectories merged")
    common.save_figure(fig, out, "bounds.png", files, args)
m = ecc.metrics_
common.say(
    comm,
    f"merge clustering: {m['n_clusters']} clusters ({m['n_nonsingletons']} non-singleton), "
    f"{m['n_evaluations']} merges predicted ({m['n_weyl_accepts']} accepted by Weyl, "
    f"{m['n_kyfan_rejects']} rejected by Ky Fan), {m['n_splits']} split at certification, "
    f"largest certified error {ecc.certified_errors_.max():.2e} <= {args.tol:g}",
)

# %% [markdown]
# Each trajectory has $T > r$ columns, so the corrected Weyl bound can only credit one
# block's own head; the residual bound never credits energy inside the span already built,
# which transported pulses share, and is as loose. The estimator follows the exact error
# to a few digits, which is why the merge clustering decides with it (and certifies every
# cluster by an exact SVD at the end).
#
# ## Global against local POD tails
#
# The relative POD tail $e_N = \sqrt{\sum_{n>N}\sigma_n^2/\|S\|_M^2}$ of all data and of
# each cluster of the sine k-medoids clustering: the basis sizes the tolerance asks for.

# %%
if comm.rank == 0:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    curves = [("global", sine.global_singular_values_, sine.global_energy_)]
    curves += [
        (f"cluster {k} ({sine.cluster_sizes_[k]} traj.)", sv, energy)
        for k, (sv, energy) in enumerate(zip(sine.singular_values_, sine.energies_, strict=True))
    ]
    for label, sv, energy in curves:
        tail = np.sqrt(tail_energies(sv)[1:] / energy)
        plotting.errors(np.arange(1, sv.size + 1), {label: tail}, ax=ax, ylabel="relative POD tail")
    ax.axhline(args.tol, color="r", lw=0.8)
    ax.set(ylim=(1e-6, 1.5), xlim=(0, 3 * sine.global_basis_size_))
    common.save_figure(fig, out, "pod_tails.png", files, args)
for eps in (1e-1, 3e-2, 1e-2, 3e-3):
    local, n_global = sine.sizes_for(eps)
    common.say(comm, f"eps = {eps:7.1e}: global N_1 = {n_global:3d}, local N_k = {local.tolist()}")

# %% [markdown]
# ## A priori efficiency
#
# With cluster populations $n_k$, local sizes $N_k(\varepsilon)$ and the global size
# $N_1(\varepsilon)$ (`LocalBases.efficiency_estimate`),
#
# $$
# \eta(K) = \frac{\sum_k (n_k/n)\, c(N_k(\varepsilon))}{c(N_1(\varepsilon))},
# $$
#
# so local bases pay off when $\eta < 1$ ($\eta(1) = 1$ exactly). The table above gives it
# with the measured cost model $c(N)$; here with $c(N) = N^3$, the cost of a dense reduced
# solve.

# %%
efficiency = {
    c: [
        configurations[f"{c}/K={K}"]["eta_estimated_n3"]
        for K in Ks
        if f"{c}/K={K}" in configurations
    ]
    for c in clusterings
    if c not in ("merge", TIME_WINDOWS)
}
if comm.rank == 0 and any(efficiency.values()):
    fig = plotting.errors(
        Ks, {c: eta for c, eta in efficiency.items() if len(eta) == len(Ks)}, ylabel="eta(K)"
    )
    fig.axes[0].axhline(1.0, color="k", lw=0.8, ls=":")
    fig.axes[0].set_xlabel("number of clusters K")
    common.save_figure(fig, out, "efficiency.png", files, args)

# %% [markdown]
# `summary.json` holds every number of the table, the curves and the cost model.

# %%
results = {
    "n_dofs": model.n_dofs,
    "n_steps": model.n_steps,
    "n_train": args.n_train,
    "n_test": args.n_test,
    "n_snapshots": int(X.shape[1]),
    "tol": args.tol,
    "basis_size": args.basis_size,
    "online_cost": {"sizes": cost_sizes, "seconds": cost_times, "coefficients": cost.coefficients},
    "parameters_train": mus_train,
    "parameters_test": mus_test,
    "global": None
    if glob is None
    else {
        "basis_size": glob["global_basis_size"],
        "test_rom_error_mean": glob["test_rom_error_mean"],
    },
    "configurations": configurations,
}
common.write_summary(out, "local_bases", args, results, timings, files, comm)

# %% [markdown]
# ## The same from the command line
#
# ```bash
# rom cluster run/local_bases/advection.h5 --field u --n-clusters 4 --out labels.json
# rom plot labels.json --kind clusters --out clusters.png
# ```
#
# ([`rom cluster`](../../cli/) clusters single snapshots, not whole trajectories.)

# %%
common.finish(out, args, comm)

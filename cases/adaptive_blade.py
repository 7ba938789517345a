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
# # Adaptive nonlinear ROM of a blade under a new thermal load
#
# An elasto-viscoplastic block in plane strain ([`solvers.mechanics`](../../api/solvers.mechanics/):
# Norton viscoplasticity with linear isotropic hardening and temperature-dependent
# parameters, Q1 elements, global Newton with the consistent tangent; `--dim 3` for
# hexahedra), loaded by a prescribed temperature field
#
# $$
# T(x, t) = 20 + \theta(t)\Bigl[A\bigl(1 + g(x - \tfrac12)\bigr)
#   + S_1 e^{-|x - a|^2/0.04} + S_2 e^{-|x - b|^2/0.03}\Bigr],
# \qquad \theta(t) = \min(t/t_{hold}, 1),
# $$
#
# a heated block with a gradient, a hot spot at $a = (0.7, 0.5)$ and a second one at
# $b = (0.25, 0.75)$. The training loads are ramps ($t_{hold} = 1$) with a weak second spot;
# the new load heats the second spot strongly and holds the temperature from
# $t_{hold} = 0.5$ on, so that plastic flow and creep appear where the training never had
# them.
#
# The reduced model ([`rom.adaptive.enrichment`](../../api/rom.adaptive.enrichment/), after
# Casenave & Akkari, MCA 24(2):41, 2019; [theory §5](../../theory/#5-adaptive-nonlinear-reduced-model))
# runs a POD-Galerkin Newton on the displacement with the internal forces integrated by an
# empirical cubature ([`rom.adaptive.cubature`](../../api/rom.adaptive.cubature/),
# [`rom.adaptive.hyperreduced`](../../api/rom.adaptive.hyperreduced/)). After every reduced
# step a Gappy-POD indicator $E_k$ ([`rom.adaptive.indicator`](../../api/rom.adaptive.indicator/))
# measures how well the cumulated plastic strain at the reduced points fits its POD basis;
# when $E_k > \mathrm{tol}_E$, the step is replaced by **one full-order step** and the bases,
# the cubature and the indicator are updated from it.
#
# This page is `cases/adaptive_blade.py`, executed at a small size (`ROM_DOCS_SMALL=1`).
# The same file is the case script:
#
# ```bash
# mpirun -n 2 .venv/bin/python -m mpi4py cases/adaptive_blade.py --out run/adaptive
# ```
#
# writes `training.h5`, `summary.json` (the per-step indicator and errors of both runs, the
# calibration, the wall times) and the figures `error_unenriched.png`, `indicator.png`,
# `error_adaptive.png` and `wall_time.png`; `--tol-E` skips the calibration, `--help` lists
# the options.

# %%
import time

import common
import dolfinx_solver  # noqa: F401  (before dolfinx)
import matplotlib.pyplot as plt
import numpy as np
from mpi4py import MPI

from rom import plotting
from rom.adaptive.enrichment import AdaptiveROM
from rom.adaptive.indicator import calibrate
from rom.cli import describe_store
from rom.cli import format_info
from rom.io import SnapshotStore
from rom.parallel import allreduce_sum
from rom.parallel import blas_threads
from solvers.mechanics import Load
from solvers.mechanics import ViscoplasticModel

SPOT_A, SPOT_B = (0.7, 0.5), (0.25, 0.75)
TEST_LOAD = (330.0, 0.4, 80.0, 250.0, 0.5)  # A, g, S1, S2, hold


def blade_temperature(A: float, g: float, S1: float, S2: float, hold: float = 1.0):
    """The temperature family above, as a callable ``T(x (3, m), t)``."""

    def T(x: np.ndarray, t: float) -> np.ndarray:
        th = min(float(t) / hold, 1.0)
        r1 = (x[0] - SPOT_A[0]) ** 2 + (x[1] - SPOT_A[1]) ** 2
        r2 = (x[0] - SPOT_B[0]) ** 2 + (x[1] - SPOT_B[1]) ** 2
        return 20.0 + th * (
            A * (1 + g * (x[0] - 0.5)) + S1 * np.exp(-r1 / 0.04) + S2 * np.exp(-r2 / 0.03)
        )

    return T


def sample_loads(
    n: int, rng: np.random.Generator, *, s2_max: float, hold_min: float = 1.0
) -> list[tuple]:
    """A in [200, 350], g in [0, 0.6], S1 in [50, 200], S2 in [0, s2_max], hold in
    [hold_min, 1] (uniform, seeded)."""
    lo = np.array([200.0, 0.0, 50.0, 0.0, hold_min])
    hi = np.array([350.0, 0.6, 200.0, s2_max, 1.0])
    return [tuple(float(v) for v in lo + (hi - lo) * rng.random(5)) for _ in range(n)]


def step_errors(fom, U: np.ndarray, P: np.ndarray, ref) -> tuple[np.ndarray, np.ndarray]:
    """Per-step errors relative to the trajectory's largest norm (collective):
    :math:`\\|u_k - u_k^h\\|_M / \\max_j \\|u_j^h\\|_M` and the same for :math:`p` in
    :math:`L^2(\\Omega)` (quadrature weights)."""
    comm = fom.comm

    def mnorm(X):
        return np.sqrt(np.maximum(allreduce_sum(np.einsum("ij,ij->j", X, fom.mass(X)), comm), 0))

    def wnorm(X):
        return np.sqrt(np.maximum(allreduce_sum((X**2).T @ fom.qp_weights, comm), 0))

    return (
        mnorm(U - ref.u) / max(mnorm(ref.u).max(), 1e-300),
        wnorm(P - ref.p) / max(wnorm(ref.p).max(), 1e-300),
    )


def timed_solve(fom, load: tuple, times: np.ndarray):
    """One full-order trajectory for a load tuple and its wall time (slowest rank)."""
    comm = fom.comm
    fom.set_temperature(blade_temperature(*load))
    comm.Barrier()
    tic = time.perf_counter()
    trajectory = fom.solve(times=times)
    return trajectory, comm.allreduce(time.perf_counter() - tic, op=MPI.MAX)


def timed_rom_run(arom, fom, T, times: np.ndarray, ref, *, enrich: bool):
    """One ROM run under the temperature ``T``, its wall time (slowest rank) and its per-step
    errors ``(e_u, e_p)`` against the full-order trajectory ``ref`` (collective)."""
    comm = fom.comm
    comm.Barrier()
    tic = time.perf_counter()
    run = arom.run(T, times, enrich=enrich)
    seconds = comm.allreduce(time.perf_counter() - tic, op=MPI.MAX)
    return run, seconds, *step_errors(fom, run.displacement(), run.plastic_strain(), ref)


def calibration_pairs(arom, fom, loads, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indicator, true error) of every step of the unenriched ROM on held-out loads, the
    input of :func:`rom.adaptive.indicator.calibrate`; the error of a step is the larger of the u and
    p errors of :func:`step_errors` (collective)."""
    E, e = [], []
    for load in loads:
        ref, _ = timed_solve(fom, load, times)
        run, _, eu, ep = timed_rom_run(
            arom, fom, blade_temperature(*load), times, ref, enrich=False
        )
        E.append(run.indicator)
        e.append(np.maximum(eu, ep))
    return np.concatenate(E), np.concatenate(e)


DESCRIPTION = "Adaptive nonlinear ROM: an elasto-viscoplastic block under thermal loads near creep"
p = common.parser(DESCRIPTION, size=8, n_train=4, tol=5e-3, out="run/adaptive", n_steps=20)
p.add_argument("--dim", type=int, default=2, choices=[2, 3])
p.add_argument("--n-cal", type=int, default=3, help="held-out loads for the calibration")
p.add_argument(
    "--tol-E", type=float, default=None, help="indicator threshold (skips the calibration)"
)
p.add_argument("--max-enrichments", type=int, default=5)
p.add_argument("--cubature-tol", type=float, default=1e-5)
p.add_argument(
    "--svd-rtol", type=float, default=1e-6, help="relative singular-value truncation of the bases"
)
p.add_argument("--reconstruction", default="gappy", choices=["gappy", "replay"])
p.add_argument("--hold", type=float, default=TEST_LOAD[4], help="hold time of the new load")
args, comm, log, out = common.start(p, small={"n_cal": 2})
rng = np.random.default_rng(args.seed)
train = sample_loads(args.n_train, rng, s2_max=60.0)
cal = sample_loads(args.n_cal, rng, s2_max=250.0, hold_min=0.4)
test = TEST_LOAD[:4] + (args.hold,)
times = np.linspace(0.0, 1.0, args.n_steps + 1)[1:]
LOAD_NAMES = ("A", "g", "S1", "S2", "hold")
timings: dict[str, float] = {}
files = ["training.h5", "summary.json"]
common.say(comm, "new load: " + ", ".join(f"{n} = {v:g}" for n, v in zip(LOAD_NAMES, test)))

# %% [markdown]
# ## Offline 1: full-order training trajectories
#
# Each training load is one full-order run over $t \in (0, 1]$; the displacement (owned
# dofs, keyed by node and component) and the cumulated plastic strain $p$ (local
# quadrature points, keyed by cell and Gauss point) go into a snapshot store, which
# `rom info` and `rom export` read like any other ([HDF5 schema](../../hdf5-schema/)).

# %%
tic = time.perf_counter()
fom = ViscoplasticModel(comm, dim=args.dim, size=args.size, load=Load(), times=times)
timings["setup"] = time.perf_counter() - tic
n_qp = int(comm.allreduce(fom.n_qp_local))
with blas_threads(comm):
    store = SnapshotStore.create(
        out / "training.h5",
        {"u": fom.keys, "p": fom.qp_keys},
        parameter_names=LOAD_NAMES,
        comm=comm,
        overwrite=True,
    )
    trajectories = []
    tic = time.perf_counter()
    for i, load in enumerate(train):
        trajectories.append(timed_solve(fom, load, times)[0])
        store.append(
            {"u": trajectories[-1].u, "p": trajectories[-1].p},
            parameters=load,
            time=times,
            sample=np.full(times.size, i),
        )
    timings["offline_fom"] = time.perf_counter() - tic
    store.close()
common.say(
    comm,
    f"{fom.n_dofs} displacement dofs ({args.dim}-D), {n_qp} quadrature points, "
    f"{args.n_train} trajectories in {timings['offline_fom']:.2f} s",
)
if comm.rank == 0:
    with SnapshotStore.open(out / "training.h5") as st:
        print(format_info(describe_store(st)))

# %% [markdown]
# ## Offline 2: bases, empirical cubature, indicator
#
# `AdaptiveROM.fit` builds incremental-SVD bases ([theory §2.1](../../theory/#21-brands-incremental-svd))
# of $u$ (in the $M$ inner product), of $p$, of the viscoplastic strain and of the stress;
# an empirical cubature $(Z, \hat w)$ ([theory §5.1](../../theory/#51-empirical-cubature-ecm))
# that integrates $\int_\Omega \sigma : \varepsilon(\psi_i)$ for the stress modes; and the
# Gappy-POD indicator ([theory §5.3](../../theory/#53-gappy-pod-indicator-and-its-calibration))
# on the mask $\hat Z = Z \cup \mathrm{QDEIM}(\Phi_p)$,
#
# $$
# E_k = \frac{\|\hat p_k - \Phi_p|_{\hat Z}\, c_{p,k}\|}{\max(\|\hat p_k\|, p_{ref})},
# \qquad c_{p,k} = \arg\min_c \|\hat p_k - \Phi_p|_{\hat Z}\, c\|.
# $$

# %%
with blas_threads(comm):
    tic = time.perf_counter()
    arom = AdaptiveROM(
        svd_rtol=args.svd_rtol,
        cubature_tol=args.cubature_tol,
        tol_E=np.inf if args.tol_E is None else args.tol_E,
        max_enrichments=args.max_enrichments,
        reconstruction=args.reconstruction,
        seed=args.seed,
    ).fit(fom, trajectories)
    timings["offline_rom"] = time.perf_counter() - tic
n_modes0, n_points0 = arom.svd_u_.n_components_, arom.cubature_.points.size
common.say(
    comm,
    f"offline ROM in {timings['offline_rom']:.2f} s: N = {n_modes0} displacement modes, "
    f"n_p = {arom.svd_p_.n_components_} plastic-strain modes, {n_points0} cubature points "
    f"of {n_qp}, {arom.indicator_.mask_.size} mask points",
)
if comm.rank == 0:
    fig = plotting.singular_values(
        arom.svd_u_.singular_values_,
        total_energy=arom.svd_u_.total_energy_,
        title="displacement POD (M product), training",
    )
    common.save_figure(fig, out, "singular_values.png", files, args)

# %% [markdown]
# The temperature at $t = 1$ of the first training load and of the new load at the
# quadrature points, and the cubature points learned from the training (cyan dots). On
# this coarse mesh the cubature keeps most points; the reduced points pay off on finer
# meshes. Every rank holds its own quadrature points, so the map is drawn when one rank
# holds them all.

# %%
temperatures = {}
for title, load in (("training load 1", train[0]), ("new load", test)):
    fom.set_temperature(blade_temperature(*load))
    temperatures[title] = fom.temperature_at_qp(1.0)
if comm.rank == 0 and comm.size == 1:
    xq = fom.qp_coordinates
    lo = min(T.min() for T in temperatures.values())
    hi = max(T.max() for T in temperatures.values())
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, (title, T) in zip(axes, temperatures.items(), strict=True):
        sc = ax.scatter(xq[:, 0], xq[:, 1], c=T, s=40, marker="s", cmap="inferno", vmin=lo, vmax=hi)
        ax.scatter(xq[arom.cubature_.points, 0], xq[arom.cubature_.points, 1], s=3, c="c")
        ax.set(title=title, aspect="equal")
    fig.colorbar(sc, ax=axes, label="temperature")
    common.save_figure(fig, out, "temperature.png", files, args)

# %% [markdown]
# ## Calibrating the threshold $\mathrm{tol}_E$
#
# The unenriched ROM runs on held-out loads from a wider envelope (stronger second spot,
# holds), and the pairs (indicator, true error) fix the threshold
# ([`calibrate`](../../api/rom.adaptive.indicator/)): a monotone fit $e \approx f(E)$, the
# largest observed $E$ with $f(E) \le$ target, lowered until at most 5 % of the accepted
# steps miss the target. The true error of step $k$ is the larger of
# $\|u_k - u_k^h\|_M / \max_j\|u_j^h\|_M$ and the same for $p$ in $L^2(\Omega)$.
# `--tol-E` skips the calibration.

# %%
calibration, E_cal, e_cal = None, np.zeros(0), np.zeros(0)
if args.tol_E is None:
    with blas_threads(comm):
        tic = time.perf_counter()
        E_cal, e_cal = calibration_pairs(arom, fom, cal, times)
        fitted = calibrate(E_cal, e_cal, target=args.tol)
        arom.tol_E = fitted.tol_E
        timings["calibration"] = time.perf_counter() - tic
    calibration = {
        "tol_E": fitted.tol_E,
        "spearman": fitted.spearman,
        "miss_rate": fitted.miss_rate,
        "E": E_cal,
        "e": e_cal,
    }
    common.say(
        comm,
        f"tol_E = {fitted.tol_E:.3e} (Spearman {fitted.spearman:.2f}, miss rate "
        f"{fitted.miss_rate:.2f}, {fitted.n_accepted} of {E_cal.size} steps accepted)",
    )

# %% [markdown]
# ## Online 1: the unenriched ROM on the new load
#
# The reference is a full-order run of the new load. Without enrichment the reduced model
# stays in the span of the training: its plastic-strain error grows while the second spot
# heats beyond anything seen in training (up to the hold), and exceeds the target.

# %%
T_new = blade_temperature(*test)
with blas_threads(comm):
    ref, t_fom = timed_solve(fom, test, times)
    plain, t_plain, eu0, ep0 = timed_rom_run(arom, fom, T_new, times, ref, enrich=False)
err_plain = float(max(eu0.max(), ep0.max()))
common.say(
    comm, f"unenriched ROM: max error u {eu0.max():.2e}, p {ep0.max():.2e} (target {args.tol:g})"
)
target = np.full(times.size, args.tol)
if comm.rank == 0:
    fig = plotting.errors(
        times,
        {"u, unenriched": eu0, "p, unenriched": ep0, "target": target},
        ylabel="relative error",
        title="(1) unenriched ROM on the new load",
    )
    fig.axes[0].set_xlabel("t")
    common.save_figure(fig, out, "error_unenriched.png", files, args)

# %% [markdown]
# ### The indicator against the true error
#
# Left: the indicator history of the unenriched run with the calibrated threshold and the
# true error. Right: every (indicator, error) pair, calibration loads and new load; the
# steps right of the red line trigger enrichment. The indicator is a heuristic, not a
# bound: $E_k = \|r_k\| / \max(\|\hat p_k\|, p_{ref})$ with $p_{ref}$ the training
# trajectories' largest plastic strain (on the mask), so it measures the fit residual on
# the scale the error is measured on (relative to the trajectory's largest norm). At the
# onset of plasticity $\hat p_k$ is small and poorly fitted but the error negligible; the
# floor keeps the capped full-order steps for later, when the error grows. The rank
# correlation printed above says how well $E_k$ orders the true errors.

# %%
if comm.rank == 0:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    plotting.indicator(
        plain.indicator,
        error=np.maximum(eu0, ep0),
        tol=arom.tol_E,
        time=times,
        ax=axes[0],
        title="(2) indicator E_k, unenriched run",
    )
    pairs = {
        "calibration loads": (E_cal, e_cal),
        "new load": (plain.indicator, np.maximum(eu0, ep0)),
    }
    for (label, (E, e)), marker in zip(pairs.items(), "os", strict=True):
        axes[1].loglog(np.maximum(E, 1e-16), np.maximum(e, 1e-16), marker, ms=3, label=label)
    axes[1].axvline(arom.tol_E, color="r", lw=1, label="tol_E")
    axes[1].axhline(args.tol, color="k", ls=":", label="target")
    axes[1].set(xlabel="indicator E_k", ylabel="true error")
    axes[1].grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    common.save_figure(fig, out, "indicator.png", files, args)

# %% [markdown]
# ## Online 2: the adaptive ROM
#
# The same load with enrichment ([theory §5.4](../../theory/#54-enrichment-loop)): at a step
# with $E_k > \mathrm{tol}_E$ the full state at $t_{k-1}$ is rebuilt ($u = \Psi_u c_{k-1}$,
# the internal variables by Gappy-POD from the reduced points), one full-order step is
# taken from it, the bases take the new snapshot (incremental SVD), and the cubature and
# indicator are rebuilt (warm-started). The model keeps what it learned.

# %%
with blas_threads(comm):
    adaptive, t_adaptive, eu1, ep1 = timed_rom_run(arom, fom, T_new, times, ref, enrich=True)
err_adaptive = float(max(eu1.max(), ep1.max()))
enriched_steps = np.flatnonzero(adaptive.enriched)
common.say(
    comm,
    f"adaptive ROM: {adaptive.fom_steps} full-order steps at t = {times[enriched_steps]}, "
    f"max error u {eu1.max():.2e}, p {ep1.max():.2e} (target {args.tol:g}); "
    f"N {n_modes0} -> {adaptive.n_modes[-1]}, cubature points {n_points0} -> "
    f"{arom.cubature_.points.size}",
)
if comm.rank == 0:
    fig = plotting.errors(
        times,
        {"u, adaptive": eu1, "p, adaptive": ep1, "target": target},
        ylabel="relative error",
        title=f"(3) adaptive ROM: {adaptive.fom_steps} full-order steps (green)",
    )
    for k in enriched_steps:
        fig.axes[0].axvline(times[k], color="g", alpha=0.4)
    fig.axes[0].set_xlabel("t")
    common.save_figure(fig, out, "error_adaptive.png", files, args)

# %% [markdown]
# The cumulated plastic strain at $t = 1$ (full order), and the pointwise error of its
# reconstruction (Gappy-POD at all quadrature points) by the unenriched and the adaptive
# ROM, on a common color scale (drawn when one rank holds all quadrature points).

# %%
p_errors = {
    "|p - p_h|, unenriched ROM": np.abs(plain.plastic_strain()[:, -1] - ref.p[:, -1]),
    "|p - p_h|, adaptive ROM": np.abs(adaptive.plastic_strain()[:, -1] - ref.p[:, -1]),
}
if comm.rank == 0 and comm.size == 1:
    xq = fom.qp_coordinates
    hi = max(e.max() for e in p_errors.values())
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    sc = axes[0].scatter(xq[:, 0], xq[:, 1], c=ref.p[:, -1], s=40, marker="s", cmap="viridis")
    axes[0].set(title="plastic strain p_h, full order", aspect="equal")
    fig.colorbar(sc, ax=axes[0], shrink=0.8)
    for ax, (title, e) in zip(axes[1:], p_errors.items(), strict=True):
        sc = ax.scatter(xq[:, 0], xq[:, 1], c=e, s=40, marker="s", cmap="magma", vmin=0.0, vmax=hi)
        ax.set(title=title, aspect="equal")
    fig.colorbar(sc, ax=list(axes[1:]), shrink=0.8)
    common.save_figure(fig, out, "plastic_strain.png", files, args)

# %% [markdown]
# ## Results and timings
#
# Per step: the indicator and the errors of the unenriched and the adaptive run, and where
# the adaptive run took a full-order step. Wall times of the whole trajectory on the new
# load (slowest rank): at this size the full-order model is itself cheap, and each
# enrichment (full-order step, basis update, new cubature and indicator) costs more than a
# whole full-order step, so the adaptive run can be slower than the full-order one. A
# reduced step costs what its modes and reduced points cost, which grow far slower than
# the mesh, so the balance turns on fine meshes; `benchmarks/bench_adaptive.py` measures
# the speed-up at about $10^5$ dofs.

# %%
timings.update(fom_new_load=t_fom, rom_unenriched=t_plain, rom_adaptive=t_adaptive)
rows = [
    [
        k,
        float(times[k]),
        float(plain.indicator[k]),
        float(eu0[k]),
        float(ep0[k]),
        float(adaptive.indicator[k]),
        "FOM" if adaptive.enriched[k] else "",
        float(eu1[k]),
        float(ep1[k]),
    ]
    for k in range(len(times))
]
header = ["k", "t", "E (plain)", "e_u (plain)", "e_p (plain)", "E (adapt.)", "step"]
header += ["e_u (adapt.)", "e_p (adapt.)"]
common.say(
    comm,
    f"\nAdaptive ROM: {fom.n_dofs} dofs ({args.dim}-D), {comm.size} rank(s), "
    f"{len(train)} training loads, tol_E = {arom.tol_E:.3e}, target {args.tol:g}\n"
    + common.table(rows, header)
    + f"\nfull-order steps used: {adaptive.fom_steps}; wall time FOM {t_fom:.3f} s, "
    f"unenriched ROM {t_plain:.3f} s, adaptive ROM {t_adaptive:.3f} s "
    f"(speed-up {t_fom / t_adaptive:.1f}x); adaptive ROM on rank 0: reduced steps "
    f"{adaptive.wall_time['reduced']:.3f} s, enrichments {adaptive.wall_time['enrichment']:.3f} s",
)
if comm.rank == 0:
    walls = {"full order": t_fom, "ROM, unenriched": t_plain, "adaptive ROM": t_adaptive}
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.bar(list(walls), list(walls.values()), color=["tab:gray", "tab:blue", "tab:green"])
    ax.set(ylabel="wall time [s]", title="(4) whole trajectory, new load")
    fig.tight_layout()
    common.save_figure(fig, out, "wall_time.png", files, args)

# %% [markdown]
# `summary.json` holds the per-step indicator and errors of both runs, the calibration
# pairs and the wall times.

# %%
results = {
    "n_dofs": fom.n_dofs,
    "n_qp": n_qp,
    "dim": args.dim,
    "n_steps": len(times),
    "train_loads": train,
    "calibration_loads": cal if args.tol_E is None else [],
    "test_load": test,
    "tol_E": arom.tol_E,
    "calibration": calibration,
    "target": args.tol,
    "unenriched": {
        "indicator": plain.indicator,
        "error_u": eu0,
        "error_p": ep0,
        "max_error_u": float(eu0.max()),
        "max_error_p": float(ep0.max()),
        "n_modes": int(plain.n_modes[0]),
        "n_points": int(plain.n_points[0]),
    },
    "adaptive": {
        "indicator": adaptive.indicator,
        "enriched_steps": enriched_steps,
        "error_u": eu1,
        "error_p": ep1,
        "max_error_u": float(eu1.max()),
        "max_error_p": float(ep1.max()),
        "fom_steps": adaptive.fom_steps,
        "n_modes": adaptive.n_modes,
        "n_points": adaptive.n_points,
        "wall_time": adaptive.wall_time,
    },
    "speedup_adaptive": t_fom / t_adaptive,
    "speedup_unenriched": t_fom / t_plain,
    "target_met_unenriched": bool(err_plain <= args.tol),
    "target_met_adaptive": bool(err_adaptive <= args.tol),
}
common.write_summary(out, "adaptive_blade", args, results, timings, files, comm)

# %%
common.finish(out, args, comm)

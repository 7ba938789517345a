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
# parameters, Q1 elements, global Newton with the consistent tangent), loaded by a
# prescribed temperature field
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
# The reduced model ([`rom.adaptive.enrichment`](../../api/rom.adaptive.enrichment/), after Casenave & Akkari,
# MCA 24(2):41, 2019) runs a POD-Galerkin Newton on the displacement with the internal
# forces integrated by an empirical cubature ([`rom.adaptive.cubature`](../../api/rom.adaptive.cubature/),
# [`rom.adaptive.hyperreduced`](../../api/rom.adaptive.hyperreduced/)). After every reduced step a Gappy-POD
# indicator $E_k$ ([`rom.adaptive.indicator`](../../api/rom.adaptive.indicator/)) measures how well the
# cumulated plastic strain at the reduced points fits its POD basis; when
# $E_k > \mathrm{tol}_E$, the step is replaced by **one full-order step** and the bases,
# the cubature and the indicator are updated from it.
#
# This notebook runs `cases/adaptive_blade.py` step by step and reuses its load family and
# error measure. The documentation build runs it at a small size (`ROM_DOCS_SMALL=1`);
# unset the variable for a finer mesh. It runs serially here, and unchanged under `mpirun`
# as a script (`jupytext --to py:percent`, then `mpirun -n 2 python adaptive_blade.py`).

# %%
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401  (before dolfinx)
import numpy as np
from mpi4py import MPI

from rom import plotting
from rom.adaptive.enrichment import AdaptiveROM
from rom.adaptive.indicator import calibrate
from rom.cli import describe_store, format_info
from rom.io import SnapshotStore
from solvers.mechanics import Load, ViscoplasticModel

# the case's temperature family, loads and error measure (cases/adaptive_blade.py), found
# from this file (script) or from the working directory (the docs build runs notebooks in
# docs/notebooks)
_here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd().resolve()
_root = next(p for p in (_here, *_here.parents) if (p / "cases" / "adaptive_blade.py").is_file())
sys.path.insert(0, str(_root / "cases"))
from adaptive_blade import (  # noqa: E402
    TEST_LOAD,
    blade_temperature,
    calibration_pairs,
    sample_loads,
    step_errors,
)
from adaptive_blade import timed_solve as case_timed_solve  # noqa: E402

SMALL = os.environ.get("ROM_DOCS_SMALL") == "1"
SIZE, N_TRAIN, N_CAL, N_STEPS = (8, 4, 2, 20) if SMALL else (12, 6, 3, 30)
TOL, MAX_ENRICHMENTS = 5e-3, 5  # target relative error, cap on full-order steps per run
comm = MPI.COMM_WORLD
out = Path(comm.bcast(tempfile.mkdtemp(prefix="rom-adaptive-") if comm.rank == 0 else None))


def say(*args):
    """Print on rank 0 only (the notebook also runs as a script under mpirun)."""
    if comm.rank == 0:
        print(*args)


rng = np.random.default_rng(0)
train = sample_loads(N_TRAIN, rng, s2_max=60.0)
cal = sample_loads(N_CAL, rng, s2_max=250.0, hold_min=0.4)
times = np.linspace(0.0, 1.0, N_STEPS + 1)[1:]
LOAD_NAMES = ("A", "g", "S1", "S2", "hold")
say(
    f"size {SIZE}, {N_TRAIN} training and {N_CAL} calibration loads, {N_STEPS} steps, "
    f"{comm.size} rank(s), output in {out}"
)
say("new load: " + ", ".join(f"{n} = {v:g}" for n, v in zip(LOAD_NAMES, TEST_LOAD, strict=True)))

# %% [markdown]
# ## Offline 1: full-order training trajectories
#
# Each training load is one full-order run over $t \in (0, 1]$; the displacement (owned
# dofs, keyed by node and component) and the cumulated plastic strain $p$ (local
# quadrature points, keyed by cell and Gauss point) go into a snapshot store, which
# `rom info` and `rom export` read like any other ([HDF5 schema](../../hdf5-schema/)).

# %%
fom = ViscoplasticModel(comm, dim=2, size=SIZE, load=Load(), times=times)


def timed_solve(load):
    """One full-order trajectory for a load tuple, and its wall time (slowest rank)."""
    return case_timed_solve(fom, load, times)


path = out / "training.h5"
store = SnapshotStore.create(
    path, {"u": fom.keys, "p": fom.qp_keys}, parameter_names=LOAD_NAMES, comm=comm
)
trajectories, t_train = [], 0.0
for i, load in enumerate(train):
    trajectory, seconds = timed_solve(load)
    trajectories.append(trajectory)
    t_train += seconds
    store.append(
        {"u": trajectory.u, "p": trajectory.p},
        parameters=load,
        time=times,
        sample=np.full(N_STEPS, i),
    )
store.close()
n_qp = comm.allreduce(fom.n_qp_local)
say(
    f"{fom.n_dofs} displacement dofs, {n_qp} quadrature points, "
    f"{N_TRAIN} trajectories in {t_train:.2f} s"
)
with SnapshotStore.open(path) as st:
    info = describe_store(st)
say(format_info(info))

# %% [markdown]
# ## Offline 2: bases, empirical cubature, indicator
#
# `AdaptiveROM.fit` builds incremental-SVD bases of $u$ (in the $M$ inner product), of $p$,
# of the viscoplastic strain and of the stress; an empirical cubature $(Z, \hat w)$ that
# integrates $\int_\Omega \sigma : \varepsilon(\psi_i)$ for the stress modes; and the
# Gappy-POD indicator on the mask $\hat Z = Z \cup \mathrm{QDEIM}(\Phi_p)$,
#
# $$
# E_k = \frac{\|\hat p_k - \Phi_p|_{\hat Z}\, c_{p,k}\|}{\max(\|\hat p_k\|, p_{ref})},
# \qquad c_{p,k} = \arg\min_c \|\hat p_k - \Phi_p|_{\hat Z}\, c\|.
# $$

# %%
tic = time.perf_counter()
arom = AdaptiveROM(
    svd_rtol=1e-6, cubature_tol=1e-5, tol_E=np.inf, max_enrichments=MAX_ENRICHMENTS, seed=0
).fit(fom, trajectories)
t_offline = time.perf_counter() - tic
n_modes0, n_points0 = arom.svd_u_.n_components_, arom.cubature_.points.size
say(
    f"offline ROM in {t_offline:.2f} s: N = {n_modes0} displacement modes, "
    f"n_p = {arom.svd_p_.n_components_} plastic-strain modes, {n_points0} cubature points "
    f"of {n_qp}, {arom.indicator_.mask_.size} mask points"
)
fig = plotting.singular_values(
    arom.svd_u_.singular_values_,
    total_energy=arom.svd_u_.total_energy_,
    title="displacement POD (M product), training",
)

# %% [markdown]
# The temperature at $t = 1$ of the first training load and of the new load at the
# quadrature points, and the cubature points learned from the training (cyan dots). On
# this coarse mesh the cubature keeps most points; the reduced points pay off on finer
# meshes. Every rank holds its own quadrature points, so the map is drawn when one rank
# holds them all.

# %%
T_new = blade_temperature(*TEST_LOAD)
temperatures = {}
for title, load in (("training load 1", train[0]), ("new load", TEST_LOAD)):
    fom.set_temperature(blade_temperature(*load))
    temperatures[title] = fom.temperature_at_qp(1.0)
if comm.rank == 0 and comm.size == 1:
    import matplotlib.pyplot as plt

    xq = fom.qp_coordinates
    lo, hi = (
        min(T.min() for T in temperatures.values()),
        max(T.max() for T in temperatures.values()),
    )
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, (title, T) in zip(axes, temperatures.items(), strict=True):
        sc = ax.scatter(xq[:, 0], xq[:, 1], c=T, s=40, marker="s", cmap="inferno", vmin=lo, vmax=hi)
        ax.scatter(xq[arom.cubature_.points, 0], xq[arom.cubature_.points, 1], s=3, c="c")
        ax.set(title=title, aspect="equal")
    fig.colorbar(sc, ax=axes, label="temperature")

# %% [markdown]
# ## Calibrating the threshold $\mathrm{tol}_E$
#
# The unenriched ROM runs on held-out loads from a wider envelope (stronger second spot,
# holds), and the pairs (indicator, true error) fix the threshold
# ([`calibrate`](../../api/rom.adaptive.indicator/)): a monotone fit $e \approx f(E)$, the largest
# observed $E$ with $f(E) \le$ target, lowered until at most 5 % of the accepted steps miss
# the target. The true error of step $k$ is the larger of
# $\|u_k - u_k^h\|_M / \max_j\|u_j^h\|_M$ and the same for $p$ in $L^2(\Omega)$.

# %%
E_cal, e_cal = calibration_pairs(arom, fom, cal, times)
calibration = calibrate(E_cal, e_cal, target=TOL)
arom.tol_E = calibration.tol_E
say(
    f"tol_E = {calibration.tol_E:.3e} (Spearman {calibration.spearman:.2f}, "
    f"miss rate {calibration.miss_rate:.2f}, {calibration.n_accepted} of {E_cal.size} steps "
    "accepted)"
)

# %% [markdown]
# ## Online 1: the unenriched ROM on the new load
#
# The reference is a full-order run of the new load. Without enrichment the reduced model
# stays in the span of the training: its plastic-strain error grows while the second spot
# heats beyond anything seen in training (up to the hold), and exceeds the target.

# %%
ref, t_fom = timed_solve(TEST_LOAD)
comm.Barrier()
tic = time.perf_counter()
plain = arom.run(T_new, times, enrich=False)
t_plain = comm.allreduce(time.perf_counter() - tic, op=MPI.MAX)
eu0, ep0 = step_errors(fom, plain.displacement(), plain.plastic_strain(), ref)
err_plain = float(max(eu0.max(), ep0.max()))
say(f"unenriched ROM: max error u {eu0.max():.2e}, p {ep0.max():.2e} (target {TOL:g})")
fig = plotting.errors(
    times,
    {"u, unenriched": eu0, "p, unenriched": ep0, "target": np.full(times.size, TOL)},
    ylabel="relative error",
    title="unenriched ROM on the new load",
)
fig.axes[0].set_xlabel("t")

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
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
plotting.indicator(
    plain.indicator,
    error=np.maximum(eu0, ep0),
    tol=arom.tol_E,
    time=times,
    ax=axes[0],
    title="indicator E_k, unenriched run",
)
axes[1].loglog(
    np.maximum(E_cal, 1e-16), np.maximum(e_cal, 1e-16), "o", ms=3, label="calibration loads"
)
axes[1].loglog(
    np.maximum(plain.indicator, 1e-16),
    np.maximum(np.maximum(eu0, ep0), 1e-16),
    "s",
    ms=3,
    label="new load",
)
axes[1].axvline(arom.tol_E, color="r", lw=1, label="tol_E")
axes[1].axhline(TOL, color="k", ls=":", label="target")
axes[1].set(xlabel="indicator E_k", ylabel="true error", xlim=(1e-5, None))
axes[1].grid(True, which="both", alpha=0.3)
axes[1].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Online 2: the adaptive ROM
#
# The same load with enrichment: at a step with $E_k > \mathrm{tol}_E$ the full state at
# $t_{k-1}$ is rebuilt ($u = \Psi_u c_{k-1}$, the internal variables by Gappy-POD from the
# reduced points), one full-order step is taken from it, the bases take the new snapshot
# (incremental SVD), and the cubature and indicator are rebuilt (warm-started). The model
# keeps what it learned.

# %%
comm.Barrier()
tic = time.perf_counter()
adaptive = arom.run(T_new, times, enrich=True)
t_adaptive = comm.allreduce(time.perf_counter() - tic, op=MPI.MAX)
eu1, ep1 = step_errors(fom, adaptive.displacement(), adaptive.plastic_strain(), ref)
err_adaptive = float(max(eu1.max(), ep1.max()))
enriched_steps = np.flatnonzero(adaptive.enriched)
say(
    f"adaptive ROM: {adaptive.fom_steps} full-order steps at t = {times[enriched_steps]}, "
    f"max error u {eu1.max():.2e}, p {ep1.max():.2e} (target {TOL:g}); "
    f"N {n_modes0} -> {adaptive.n_modes[-1]}, cubature points {n_points0} -> "
    f"{arom.cubature_.points.size}"
)
fig = plotting.errors(
    times,
    {"u, adaptive": eu1, "p, adaptive": ep1, "target": np.full(times.size, TOL)},
    ylabel="relative error",
    title=f"adaptive ROM: {adaptive.fom_steps} full-order steps (green)",
)
for k in enriched_steps:
    fig.axes[0].axvline(times[k], color="g", alpha=0.4)
fig.axes[0].set_xlabel("t")

# %% [markdown]
# The cumulated plastic strain at $t = 1$ (full order), and the pointwise error of its
# reconstruction (Gappy-POD at all quadrature points) by the unenriched and the adaptive
# ROM, on a common color scale.

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

# %% [markdown]
# ## Timings
#
# Wall times of the whole trajectory on the new load (slowest rank). At this size the
# full-order model is itself cheap: the reduced steps save little, and each enrichment
# (full-order step, basis update, new cubature and indicator) costs more than a whole
# full-order step, so the adaptive run is slower than the full-order one. A reduced step
# costs what its modes and reduced points cost, which grow far slower than the mesh, so
# the balance turns on fine meshes; `benchmarks/bench_adaptive.py` measures the speed-up
# at about $10^5$ dofs.

# %%
walls = {"full order": t_fom, "ROM, unenriched": t_plain, "adaptive ROM": t_adaptive}
say("  ".join(f"{name} {seconds:.3f} s" for name, seconds in walls.items()))
say(
    f"adaptive ROM on rank 0: reduced steps {adaptive.wall_time['reduced']:.3f} s, "
    f"enrichments {adaptive.wall_time['enrichment']:.3f} s"
)
fig, ax = plt.subplots(figsize=(5.5, 3.4))
ax.bar(list(walls), list(walls.values()), color=["tab:gray", "tab:blue", "tab:green"])
ax.set(ylabel="wall time [s]", title="whole trajectory, new load")
fig.tight_layout()

# %% [markdown]
# ## The same as a case script
#
# ```bash
# mpirun -n 2 python -m mpi4py cases/adaptive_blade.py --out run/adaptive
# ```
#
# writes `summary.json` (the per-step indicator and errors of both runs, the calibration,
# the wall times) and the figures `error_unenriched.png`, `indicator.png`,
# `error_adaptive.png` and `wall_time.png`; `--dim 3` runs the hexahedral block,
# `--tol-E` skips the calibration.

# %%
comm.Barrier()
if comm.rank == 0:
    shutil.rmtree(out, ignore_errors=True)  # the notebook's temporary store
comm.Barrier()

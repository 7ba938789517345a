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
# T(x, t) = 20 + \theta(t)A\bigl(1 + g(x_1 - \tfrac12)\bigr) + \sum_j \theta_j(t) S_j e^{-|x - c_j(t)|^2/r_j}
# $$
#
# ([`solvers.blade_loads`](../../api/solvers.blade_loads/)): a heated block with a gradient and
# hot spots. Three disjoint sets of loads: **training** ramps (a spot at $(0.7, 0.5)$, a weak
# one at $(0.25, 0.75)$), **calibration** loads from a wider envelope (a strong second spot
# at a random place in the upper half, holds), and six **test** loads of kinds neither
# contains, fixed before any measurement: thermal cycling, a hot spot elsewhere, a
# travelling hot spot, a fast ramp then cool-down, a higher amplitude, a long hold (creep).
#
# The reduced model ([`rom.adaptive.enrichment`](../../api/rom.adaptive.enrichment/), after
# Casenave & Akkari, MCA 24(2):41, 2019; [theory §5](../../theory/#5-adaptive-nonlinear-reduced-model))
# runs a POD-Galerkin Newton on the displacement with the internal forces integrated by an
# empirical cubature ([`rom.adaptive.cubature`](../../api/rom.adaptive.cubature/),
# [`rom.adaptive.hyperreduced`](../../api/rom.adaptive.hyperreduced/)). After every reduced
# step four signals, each computed on a fixed small set of points
# ([`rom.adaptive.signals`](../../api/rom.adaptive.signals/), [theory §5.5](../../theory/#55-what-the-gappy-residual-misses-and-the-composite-indicator)):
# the Gappy-POD residual of the cumulated plastic strain (Casenave & Akkari), the novelty of
# the temperature against the training, the full-order equilibrium residual at a few sampled
# dofs, and its history since the last full-order state. When any signal leaves the box
# calibrated on the calibration loads, the step is replaced by **one full-order step** and the
# bases, the cubature and the signals are updated from it; the next steps are checked again,
# so the model recovers before it goes on alone.
#
# This page is `cases/adaptive_blade.py`, executed at a small size (`ROM_DOCS_SMALL=1`).
# The same file is the case script:
#
# ```bash
# mpirun -n 2 .venv/bin/python -m mpi4py cases/adaptive_blade.py --out run/adaptive
# ```
#
# writes `training.h5`, `summary.json` (the per-step indicator and errors of both runs, the
# calibration, every test load's figures, the wall times) and the figures
# `error_unenriched.png`, `indicator.png`, `error_adaptive.png`, `test_loads.png` and
# `wall_time.png`; `--load NAME` picks the load shown step by step, `--help` lists the options.

# %%
import copy
import time

import common
import dolfinx_solver  # noqa: F401  (before dolfinx)
import matplotlib.pyplot as plt
import numpy as np
from mpi4py import MPI

from rom import plotting
from rom.adaptive import AdaptiveROM
from rom.adaptive.indicator import calibrate
from rom.cli import describe_store
from rom.cli import format_info
from rom.io import SnapshotStore
from rom.parallel import blas_threads
from solvers.blade_loads import TEST_LOADS
from solvers.blade_loads import relative_errors
from solvers.blade_loads import sample_loads
from solvers.mechanics import Load
from solvers.mechanics import ViscoplasticModel


def step_errors(fom, U: np.ndarray, P: np.ndarray, ref) -> tuple[np.ndarray, np.ndarray]:
    """Per-step errors relative to the trajectory's largest norm (collective)."""
    return relative_errors(fom, U, P, ref)


def timed_solve(fom, load, times: np.ndarray):
    """One full-order trajectory for a load and its wall time (slowest rank)."""
    comm = fom.comm
    fom.set_temperature(load.temperature)
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
    """(signals, true error) of every step of the unenriched ROM on the calibration loads, the
    input of :func:`rom.adaptive.indicator.calibrate`; the error of a step is the larger of the u and
    p errors of :func:`step_errors` (collective)."""
    S, e = [], []
    for load in loads:
        ref, _ = timed_solve(fom, load, times)
        run, _, eu, ep = timed_rom_run(arom, fom, load.temperature, times, ref, enrich=False)
        S.append(run.signals)
        e.append(np.maximum(eu, ep))
    return np.vstack(S), np.concatenate(e)


def fresh(arom):
    """A copy of the calibrated model (sharing the full-order model): each test load starts
    from what the training and calibration taught, not from another test load's enrichments."""
    fom = arom.fom_
    return copy.deepcopy(arom, {id(fom): fom, id(fom.comm): fom.comm, id(fom.mass): fom.mass})


DESCRIPTION = "Adaptive nonlinear ROM: an elasto-viscoplastic block under thermal loads near creep"
p = common.parser(DESCRIPTION, size=10, n_train=4, tol=1e-2, out="run/adaptive", n_steps=30)
p.add_argument("--dim", type=int, default=2, choices=[2, 3])
p.add_argument("--n-cal", type=int, default=6, help="calibration loads (disjoint from the tests)")
p.add_argument("--safety", type=float, default=2.0, help="safety factor of the calibration")
p.add_argument(
    "--max-enrichments", type=int, default=None, help="budget of full-order steps (default none)"
)
p.add_argument(
    "--indicator", default="composite", choices=["composite", "gappy"], help="signals used"
)
p.add_argument("--cubature-tol", type=float, default=1e-5)
p.add_argument(
    "--svd-rtol", type=float, default=1e-6, help="relative singular-value truncation of the bases"
)
p.add_argument("--reconstruction", default="path", choices=["path", "replay"])
p.add_argument(
    "--load",
    default="spot-elsewhere",
    choices=list(TEST_LOADS),
    help="test load shown step by step",
)
args, comm, log, out = common.start(p, small={"n_cal": 4})
train = sample_loads(args.n_train, "training", seed=args.seed)
cal = sample_loads(args.n_cal, "calibration", seed=args.seed + 1)
test = TEST_LOADS[args.load]
times = np.linspace(0.0, 1.0, args.n_steps + 1)[1:]
LOAD_NAMES = ("A", "g")
timings: dict[str, float] = {}
files = ["training.h5", "summary.json"]
common.say(comm, f"test load shown step by step: {test.name}")

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
            parameters=(load.A, load.g),
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
# Gappy-POD indicator ([theory §5.3](../../theory/#53-gappy-pod-indicator))
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
        indicator=args.indicator,
        max_enrichments=args.max_enrichments,
        reconstruction=args.reconstruction,
        seed=args.seed,
    ).fit(fom, trajectories, temperatures=[load.temperature for load in train])
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
for title, load in (("training load 1", train[0]), (f"test load {test.name}", test)):
    fom.set_temperature(load.temperature)
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
# ## Calibrating the thresholds
#
# The unenriched ROM runs on the calibration loads, and the pairs (signals, true error) fix
# one threshold per signal ([`calibrate`](../../api/rom.adaptive.indicator/)): the smallest
# box in signal space that holds every accurate step (true error at most the target), cut
# greedily until no step above the target lies inside, then shrunk by the safety factor
# (`--safety`, 2). A step triggers when any signal leaves the box,
# $\eta_k = \max_s s_k/\tau_s > 1$. The true error of step $k$ is the larger of
# $\|u_k - u_k^h\|_M / \max_j\|u_j^h\|_M$ and the same for $p$ in $L^2(\Omega)$. The test
# loads take no part.

# %%
with blas_threads(comm):
    tic = time.perf_counter()
    S_cal, e_cal = calibration_pairs(arom, fom, cal, times)
    fitted = calibrate(S_cal, e_cal, target=args.tol, safety=args.safety, names=arom.signal_names_)
    arom.calibration = fitted
    timings["calibration"] = time.perf_counter() - tic
E_cal = fitted.evaluate(S_cal)
calibration = {
    "thresholds": fitted.thresholds,
    "names": list(fitted.names),
    "spearman": fitted.spearman,
    "spearman_signals": fitted.spearman_signals,
    "n_above_target": fitted.n_above_target,
    "n_accepted": fitted.n_accepted,
    "E": E_cal,
    "e": e_cal,
}
common.say(
    comm,
    "thresholds "
    + ", ".join(f"{n} {t:.3e}" for n, t in zip(fitted.names, fitted.thresholds))
    + f" (Spearman {fitted.spearman:.2f}; {fitted.n_above_target} of {e_cal.size} calibration "
    f"steps above the target, {fitted.n_accepted} accepted)",
)
trained = fresh(arom)

# %% [markdown]
# ## Online 1: the unenriched ROM on the new load
#
# The reference is a full-order run of the new load. Without enrichment the reduced model
# stays in the span of the training: its plastic-strain error grows while the second spot
# heats beyond anything seen in training (up to the hold), and exceeds the target.

# %%
T_new = test.temperature
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
# Left: the combined indicator $\eta_k$ of the unenriched run with its threshold 1 and the
# true error. Right: every ($\eta$, error) pair, calibration loads and test load; the steps
# right of the red line trigger a full-order step. The indicator is calibrated, not a bound:
# its thresholds come from the calibration loads, and the printed rank correlation says how
# well it orders the true errors.

# %%
if comm.rank == 0:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    plotting.indicator(
        plain.indicator,
        error=np.maximum(eu0, ep0),
        tol=arom.threshold_,
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
    axes[1].axvline(arom.threshold_, color="r", lw=1, label="threshold")
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
# ## Every test load
#
# Each of the six test loads from the calibrated model (a fresh copy each: no load learns from
# another): the unenriched ROM's worst error, the adaptive ROM's worst errors in $u$ and $p$,
# its full-order steps, the steps it accepted with a true error above the target (silent
# misses), and whether a budget (`--max-enrichments`) ran out.

# %%
every_load = {}
with blas_threads(comm):
    for name, load in TEST_LOADS.items():
        ref_l, _ = timed_solve(fom, load, times)
        model = fresh(trained)
        plain_l = model.run(load.temperature, times, enrich=False)
        e0 = np.maximum(*step_errors(fom, plain_l.displacement(), plain_l.plastic_strain(), ref_l))
        run_l = model.run(load.temperature, times)
        eu_l, ep_l = step_errors(fom, run_l.displacement(), run_l.plastic_strain(), ref_l)
        e1 = np.maximum(eu_l, ep_l)
        every_load[name] = {
            "unenriched_max_error": float(e0.max()),
            "max_error_u": float(eu_l.max()),
            "max_error_p": float(ep_l.max()),
            "error": e1,
            "fom_steps": int(run_l.fom_steps),
            "silent_misses": int(np.sum((e1 > args.tol) & ~run_l.enriched)),
            "budget_reached": bool(run_l.budget_reached),
        }
rows = [
    [
        n,
        v["unenriched_max_error"],
        v["max_error_u"],
        v["max_error_p"],
        f"{v['fom_steps']}/{len(times)}",
        v["silent_misses"],
        "yes" if v["budget_reached"] else "no",
    ]
    for n, v in every_load.items()
]
common.say(
    comm,
    common.table(
        rows,
        ["load", "max e (plain)", "max e_u", "max e_p", "FOM steps", "silent misses", "budget"],
    ),
)
if comm.rank == 0:
    fig = plotting.errors(
        times,
        {name: v["error"] for name, v in every_load.items()} | {"target": target},
        ylabel="max(e_u, e_p)",
        title="(4) adaptive ROM on every test load",
    )
    fig.axes[0].set_xlabel("t")
    common.save_figure(fig, out, "test_loads.png", files, args)

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
    f"{len(train)} training loads, target {args.tol:g}\n"
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
    ax.set(ylabel="wall time [s]", title="(5) whole trajectory, test load")
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
    "train_loads": [ld.name for ld in train],
    "calibration_loads": [ld.name for ld in cal],
    "test_load": test.name,
    "test_loads": every_load,
    "threshold": arom.threshold_,
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

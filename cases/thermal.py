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
# # Thermal ROM of a cooled blade section
#
# Transient heat conduction in a turbine blade section with a coating, cooled through an
# internal channel and heated by the hot gas on its outer profile
# ([`solvers.heat`](../../api/solvers.heat/)):
#
# $$
# \partial_t u - \nabla\cdot(k\nabla u) = 0, \qquad
# -k\nabla u\cdot n = h\,u \ \text{(channel)}, \qquad
# k\nabla u\cdot n = q\,g \ \text{(outer profile)},
# $$
#
# with parameters $\mu = (k_{sub}, k_{coat}, h, q)$. The weak form is affine in $\mu$:
# $A(\mu) = k_{sub} A_1 + k_{coat} A_2 + h A_3$ and $f(\mu) = q f_1$, so the reduced
# operators $\hat A_q = V^T A_q V$ are assembled once (offline) and combined online at a cost
# independent of the mesh.
#
# Offline: full-order trajectories into a snapshot store, POD in the $L^2$ (mass-matrix)
# inner product streamed from the store ([theory §1](../../theory/#1-notation-and-truncation-rules)),
# Galerkin projection. Online: held-out parameters, reduced solves, relative space-time
# error against the full-order model, speed-up, basis size against tolerance.
#
# This page is `cases/thermal.py`, executed at a small size (`ROM_DOCS_SMALL=1`). The same
# file is the case script:
#
# ```bash
# mpirun -n 2 .venv/bin/python -m mpi4py cases/thermal.py --out run/thermal
# ```
#
# writes `thermal.h5` (snapshots), `modes.h5` (POD basis), `summary.json` and PNG figures;
# `--help` lists the options.

# %%
import time

import common
import dolfinx_solver  # noqa: F401  (before dolfinx)
import numpy as np
from mpi4py import MPI

import rom
from rom import plotting
from rom.cli import describe_store
from rom.cli import format_info
from rom.compression import compress
from rom.compression.truncation import tail_energies
from rom.io import SnapshotStore
from rom.models.galerkin import LinearAffineROM
from rom.models.galerkin import space_time_error
from rom.parallel import blas_threads
from rom.sampling import latin_hypercube
from solvers.heat import HeatModel

TOLERANCES = [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5]

DESCRIPTION = "Thermal case: heat conduction in a cooled blade section, POD-Galerkin ROM"
p = common.parser(
    DESCRIPTION, size=12, n_train=16, tol=1e-3, out="run/thermal", n_steps=30, n_test=10
)
p.add_argument(
    "--compressor", default="batch", choices=["batch", "incremental", "hapod", "randomized"]
)
p.add_argument("--safety", type=float, default=0.01, help="POD tolerance = safety * tol")
args, comm, log, out = common.start(
    p, small={"size": 6, "n_train": 8, "n_test": 2, "n_steps": 12, "tol": 1e-2}
)
timings: dict[str, float] = {}
files = ["thermal.h5", "summary.json"]

# %% [markdown]
# ## Offline 1: full-order trajectories into a snapshot store
#
# Each rank owns the rows of its dofs; the store keys every row by the mesh input node
# index, so it reads back identically with any number of ranks (see the
# [HDF5 schema](../../hdf5-schema/)). Conductivities and the heat-transfer coefficient span
# decades, so they are sampled on a log scale (Latin hypercube, seeded).

# %%
t0 = time.perf_counter()
model = HeatModel(comm, size=args.size, n_steps=args.n_steps)
timings["setup"] = time.perf_counter() - t0
log_scale = [name != "q_flux" for name in model.parameter_names]
mus_train = latin_hypercube(
    model.parameter_ranges, args.n_train, seed=args.seed, log_scale=log_scale
)
mus_test = latin_hypercube(
    model.parameter_ranges, args.n_test, seed=args.seed + 1, log_scale=log_scale
)

path = out / "thermal.h5"
with blas_threads(comm):
    timings["offline_fom"] = common.write_trajectories(
        path, model, "temperature", mus_train, comm, case="thermal", dt=model.dt
    )
common.say(
    comm, f"{model.n_dofs} dofs, {args.n_train} trajectories in {timings['offline_fom']:.2f} s"
)

# %% [markdown]
# `rom info` prints the same description from the command line.

# %%
if comm.rank == 0:
    with SnapshotStore.open(path) as st:
        print(format_info(describe_store(st)))

# %% [markdown]
# ## Offline 2: POD in the $L^2$ inner product
#
# The modes are $M$-orthonormal ($V^T M V = I$, $M$ the mass matrix), and the relative
# truncation rule keeps the smallest $N$ with
# $\sum_{n>N}\sigma_n^2 \le \varepsilon^2 \sum_n \sigma_n^2$. `compress` streams column
# chunks from the store (`--compressor` chooses the batch POD, the incremental SVD, HAPOD or
# the randomized SVD; [theory §2](../../theory/#2-incremental-svd-and-hapod)).

# %%
with blas_threads(comm):
    t0 = time.perf_counter()
    with SnapshotStore.open(path, "r", comm=comm, keys={"temperature": model.keys}) as st:
        result = compress(
            st,
            method=args.compressor,
            field="temperature",
            product=model.mass,
            comm=comm,
            rel_l2_err=min(TOLERANCES) / 10,
        )
    modes, sv = result.modes, result.singular_values
    timings["offline_compression"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    full_rom = LinearAffineROM.from_full(
        modes,
        mass=model.mass,
        stiffness=model.stiffness_terms,
        rhs=model.rhs_terms,
        comm=comm,
        theta_a=model.theta_a,
        theta_f=model.theta_f,
    )
    timings["offline_projection"] = time.perf_counter() - t0
total = result.total_energy
# the discarded energy is carried as the sum of the dropped sigma^2 (error_bound), never as
# total - kept (docs/theory.md §1)
tails = tail_energies(sv) + (result.error_bound or 0.0) ** 2
sizes = {t: int(rom.truncation_rank(sv, rel_l2_err=t, total_energy=total)) for t in TOLERANCES}
n_target = max(
    1, int(rom.truncation_rank(sv, rel_l2_err=args.safety * args.tol, total_energy=total))
)
common.say(
    comm,
    f"{len(sv)} modes, error bound {result.error_bound or float('nan'):.2e}; "
    f"N = {n_target} for tol {args.tol:g}",
)
if comm.rank == 0:
    fig = plotting.singular_values(sv, total_energy=total, title="POD singular values (L2 product)")
    common.save_figure(fig, out, "singular_values.png", files, args)

# %% [markdown]
# ## Online: Galerkin ROM on held-out parameters
#
# The reduced operators are projected once; each online solve assembles
# $\hat A(\mu) = \sum_q \theta_q(\mu)\hat A_q$ and steps implicit Euler in $N$ unknowns.
# The error is the relative space-time $L^2$ error
# $\sqrt{\sum_k \|u^k - V c^k\|_M^2 / \sum_k \|u^k\|_M^2}$, against the basis size and at
# the size $N$ chosen for the target (`--tol`, with a safety factor on the POD tolerance).
# The ROM time is the online cost only: assemble, factor, step.

# %%
size_grid = sorted({max(1, n) for n in [*sizes.values(), 1, 2, 4, len(sv)]})
errors = np.zeros((len(mus_test), len(size_grid)))
t_fom, t_rom, err_target = [], [], []
with blas_threads(comm):
    for i, mu in enumerate(mus_test):
        comm.Barrier()
        t0 = time.perf_counter()
        U = model.solve(mu)
        t_fom.append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
        for j, n in enumerate(size_grid):
            C = full_rom.truncated(n).solve(mu, dt=model.dt, n_steps=model.n_steps)[:, 1:]
            errors[i, j] = space_time_error(U, modes[:, :n] @ C, product=model.mass, comm=comm)
        target_rom = full_rom.truncated(n_target)
        reps = 20
        t0 = time.perf_counter()
        for _ in range(reps):
            C = target_rom.solve(mu, dt=model.dt, n_steps=model.n_steps)[:, 1:]
        t_rom.append((time.perf_counter() - t0) / reps)
        err_target.append(
            space_time_error(U, modes[:, :n_target] @ C, product=model.mass, comm=comm)
        )
speedups = np.array(t_fom) / np.array(t_rom)
projection_tail = [float(np.sqrt(tails[n] / total)) for n in size_grid]
if comm.rank == 0:
    fig = plotting.errors(
        size_grid,
        {
            "held-out ROM error (max)": errors.max(axis=0),
            "held-out ROM error (mean)": errors.mean(axis=0),
            "training POD tail": projection_tail,
        },
        ylabel="relative space-time L2 error",
    )
    common.save_figure(fig, out, "error_vs_basis_size.png", files, args)

# %% [markdown]
# ## The temperature field
#
# The last training snapshot (final time), read back from the store by rank 0 with the
# plotting mesh stored beside it.

# %%
if comm.rank == 0:
    with SnapshotStore.open(path, "r", comm=MPI.COMM_SELF) as st:
        mesh = st.read_mesh()
        if mesh is not None:
            points, cells = mesh
            values = np.full(len(points), np.nan)
            values[st.keys("temperature")] = st.read(
                "temperature", rows="all", columns=[st.n_snapshots - 1]
            )[:, 0]
            fig = plotting.field(
                points, cells, values, label="temperature", title="final time, last training run"
            )
            common.save_figure(fig, out, "temperature.png", files, args)

# %% [markdown]
# ## Results
#
# One row per held-out parameter: full-order and reduced wall time, speed-up and the
# relative space-time error at $N$ modes. `summary.json` holds the same numbers, the
# singular values and the error against the basis size; `modes.h5` the POD basis as a
# snapshot store (one column per mode, readable with any rank count).

# %%
results = {
    "n_dofs": model.n_dofs,
    "n_steps": model.n_steps,
    "n_snapshots": int(args.n_train * model.n_steps),
    "compressor": args.compressor,
    "singular_values": sv,
    "basis_size_for_tol": {f"{t:g}": n for t, n in sizes.items()},
    "n_modes": n_target,
    "held_out": {
        "parameters": mus_test,
        "relative_error": err_target,
        "max_relative_error": float(np.max(err_target)),
        "mean_relative_error": float(np.mean(err_target)),
        "fom_time_s": t_fom,
        "rom_time_s": t_rom,
        "speedup_mean": float(np.mean(speedups)),
        "speedup_min": float(np.min(speedups)),
    },
    "error_vs_basis_size": {"n": size_grid, "max": errors.max(axis=0), "mean": errors.mean(axis=0)},
    "projection_tail_rel": projection_tail,
    "tol_met": bool(np.max(err_target) <= args.tol),
}
rows = [
    [i, *np.round(mu, 3).tolist(), t_fom[i], t_rom[i], float(speedups[i]), err_target[i]]
    for i, mu in enumerate(mus_test)
]
header = ["test", *model.parameter_names, "FOM s", "ROM s", "speed-up", "rel. error"]
common.say(
    comm,
    f"\nThermal ROM: {model.n_dofs} dofs, {comm.size} rank(s), {len(mus_train)} training "
    f"trajectories x {model.n_steps} steps, N = {n_target} modes (tol {args.tol:g})\n"
    + common.table(rows, header)
    + f"\nmax held-out error {np.max(err_target):.3e}  (target {args.tol:g}: "
    f"{'met' if results['tol_met'] else 'NOT met'}),  mean speed-up {np.mean(speedups):.0f}x\n"
    + "basis size for tolerance: "
    + ", ".join(f"{t:g}->{n}" for t, n in sizes.items()),
)
with SnapshotStore.create(
    out / "modes.h5",
    {"temperature": model.keys},
    parameter_names=("singular_value",),
    comm=comm,
    overwrite=True,
    attrs={"content": "POD modes (L2)"},
) as st:
    st.append(
        {"temperature": modes},
        parameters=sv[:, None],
        time=np.zeros(len(sv)),
        sample=np.arange(len(sv)),
    )
files.append("modes.h5")
common.write_summary(out, "thermal", args, results, timings, files, comm)

# %% [markdown]
# ## The same from the command line
#
# ```bash
# rom info run/thermal/thermal.h5
# rom compress run/thermal/thermal.h5 --field temperature --method hapod \
#     --rel-l2-err 1e-4 --out run/thermal/modes-euclid.h5
# rom plot run/thermal/summary.json --kind errors --out errors.png
# rom export run/thermal/thermal.h5 --field temperature --columns -1 --out paraview/
# ```
#
# (The command line measures in the Euclidean inner product of the stored rows.)

# %%
common.finish(out, args, comm)

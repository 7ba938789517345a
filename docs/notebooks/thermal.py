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
# This notebook runs the offline/online workflow of `cases/thermal.py` step by step:
# full-order trajectories into a snapshot store, POD in the $L^2$ (mass-matrix) inner
# product, Galerkin ROM, held-out error against the basis size. The documentation build
# runs it at a small size (`ROM_DOCS_SMALL=1`); unset the variable for the default size.
# It runs serially here, and unchanged under `mpirun` as a script
# (`jupytext --to py:percent`, then `mpirun -n 2 python thermal.py`).

# %%
import os
import shutil
import tempfile
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401  (before dolfinx)
import numpy as np
from mpi4py import MPI

import rom
from rom import plotting
from rom.cli import describe_store, format_info
from rom.compression._compress import compress
from rom.io import SnapshotStore
from rom.models.galerkin import LinearAffineROM, space_time_error
from rom.sampling import latin_hypercube
from solvers.heat import HeatModel

SMALL = os.environ.get("ROM_DOCS_SMALL") == "1"
SIZE, N_TRAIN, N_TEST, N_STEPS = (6, 8, 2, 12) if SMALL else (12, 16, 6, 30)
comm = MPI.COMM_WORLD
out = Path(comm.bcast(tempfile.mkdtemp(prefix="rom-thermal-") if comm.rank == 0 else None))


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
# Each rank owns the rows of its dofs; the store keys every row by the mesh input node
# index, so it reads back identically with any number of ranks (see the
# [HDF5 schema](../../hdf5-schema/)). Conductivities and the heat-transfer coefficient span
# decades, so they are sampled on a log scale (Latin hypercube, seeded).

# %%
model = HeatModel(comm, size=SIZE, n_steps=N_STEPS)
log_scale = [name != "q_flux" for name in model.parameter_names]
mus_train = latin_hypercube(model.parameter_ranges, N_TRAIN, seed=0, log_scale=log_scale)
mus_test = latin_hypercube(model.parameter_ranges, N_TEST, seed=1, log_scale=log_scale)

path = out / "thermal.h5"
store = SnapshotStore.create(
    path, {"temperature": model.keys}, parameter_names=model.parameter_names, comm=comm
)
store.write_mesh(*(model.mesh_for_plot() or (None, None)))
t0 = time.perf_counter()
for i, mu in enumerate(mus_train):
    store.append(
        {"temperature": model.solve(mu)},
        parameters=mu,
        time=model.times,
        sample=np.full(model.n_steps, i),
    )
store.close()
say(f"{model.n_dofs} dofs, {N_TRAIN} trajectories in {time.perf_counter() - t0:.2f} s")

# %% [markdown]
# `rom info` prints the same description from the command line.

# %%
with SnapshotStore.open(path) as st:
    info = describe_store(st)
say(format_info(info))

# %% [markdown]
# ## Offline 2: POD in the $L^2$ inner product
#
# The modes are $M$-orthonormal ($V^T M V = I$, $M$ the mass matrix), and the relative
# truncation rule keeps the smallest $N$ with
# $\sum_{n>N}\sigma_n^2 \le \varepsilon^2 \sum_n \sigma_n^2$. `compress` streams column
# chunks from the store.

# %%
with SnapshotStore.open(path, comm=comm, keys={"temperature": model.keys}) as st:
    result = compress(
        st, method="batch", field="temperature", product=model.mass, comm=comm, rel_l2_err=1e-6
    )
modes, sv = result.modes, result.singular_values
say(f"{len(sv)} modes, error bound {result.error_bound:.2e}")
fig = plotting.singular_values(
    sv, total_energy=result.details["total_energy"], title="POD singular values (L2 product)"
)

# %% [markdown]
# ## Online: Galerkin ROM on held-out parameters
#
# The reduced operators are projected once; each online solve assembles
# $\hat A(\mu) = \sum_q \theta_q(\mu)\hat A_q$ and steps implicit Euler in $N$ unknowns.
# The error is the relative space-time $L^2$ error
# $\sqrt{\sum_k \|u^k - V c^k\|_M^2 / \sum_k \|u^k\|_M^2}$.

# %%
full_rom = LinearAffineROM.from_full(
    modes,
    mass=model.mass,
    stiffness=model.stiffness_terms,
    rhs=model.rhs_terms,
    comm=comm,
    theta_a=model.theta_a,
    theta_f=model.theta_f,
)
sizes = sorted({1, 2, 4, 8, len(sv)} & set(range(1, len(sv) + 1)))
errors = np.zeros((N_TEST, len(sizes)))
for i, mu in enumerate(mus_test):
    U = model.solve(mu)
    for j, n in enumerate(sizes):
        C = full_rom.truncated(n).solve(mu, dt=model.dt, n_steps=model.n_steps)
        errors[i, j] = space_time_error(U, modes[:, :n] @ C, product=model.mass, comm=comm)
total = result.details["total_energy"]
tails = rom.compression.truncation.tail_energies(sv) + max(total - float(np.sum(sv**2)), 0.0)
fig = plotting.errors(
    sizes,
    {
        "held-out ROM error (max)": errors.max(axis=0),
        "training POD tail": [np.sqrt(tails[n] / total) for n in sizes],
    },
    ylabel="relative space-time L2 error",
)

# %% [markdown]
# ## The temperature field
#
# The last held-out trajectory at the final time, full order against the ROM with the
# largest basis (rank 0 holds the plotting mesh in input order; `points[keys]` are the
# owned dof coordinates).

# %%
C = full_rom.solve(mus_test[-1], dt=model.dt, n_steps=model.n_steps)
fields = {"full order": U[:, -1], f"ROM, N = {len(sv)}": modes @ C[:, -1]}
mesh = model.mesh_for_plot()
if comm.rank == 0 and mesh is not None and comm.size == 1:
    import matplotlib.pyplot as plt

    points, cells = mesh
    lo, hi = min(u.min() for u in fields.values()), max(u.max() for u in fields.values())
    fig, axes = plt.subplots(2, 1, figsize=(6.5, 5.5))
    for ax, (title, u) in zip(axes, fields.items(), strict=True):
        values = np.empty(points.shape[0])
        values[model.keys] = u
        plotting.field(
            points, cells, values, ax=ax, label="temperature", title=title, vmin=lo, vmax=hi
        )

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
comm.Barrier()
if comm.rank == 0:
    shutil.rmtree(out, ignore_errors=True)  # the notebook's temporary store
comm.Barrier()

"""dolfinx full-order models feeding :mod:`rom` (the only package that imports dolfinx).

* :mod:`solvers.mesh` - structured O-grid of a cooled blade section (numpy only).
* :mod:`solvers.operators` - :class:`~solvers.operators.PETScOperator`, owned-row action of a
  PETSc matrix (the ``product=`` callable of :mod:`rom`).
* :mod:`solvers.heat` - :class:`~solvers.heat.HeatModel`, transient heat conduction
  :math:`\\partial_t u - \\nabla\\cdot(k\\nabla u) = 0` with convective cooling
  :math:`-k\\nabla u\\cdot n = h u` on the channel and a hot-gas flux
  :math:`k\\nabla u\\cdot n = q g` on the outer profile, affine in
  :math:`\\mu = (k_{sub}, k_{coat}, h, q)`, implicit Euler (see its module docstring).
* :mod:`solvers.advection` - :class:`~solvers.advection.AdvectionModel`, a Gaussian pulse
  carried by a parametrized velocity (SUPG, implicit Euler).
* :mod:`solvers.transient` - :class:`~solvers.transient.P1TransientModel`, what the two P1
  models share: mesh distribution, affine system, MUMPS LU and the implicit-Euler march.

Submodules that need dolfinx import it themselves (after ``dolfinx_solver``); importing this
package does not.
"""

import rom  # noqa: F401  (limits each MPI rank's BLAS threads before PETSc is loaded)

"""The one result type of every compression function."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

import numpy as np

__all__ = ["CompressionResult"]


@dataclass(frozen=True)
class CompressionResult:
    """Outcome of :func:`rom.compression.pod`, :func:`~rom.compression.hapod`,
    :func:`~rom.compression.dist_hapod`, :func:`~rom.compression.inc_hapod`,
    :func:`~rom.compression.randomized_svd` and :func:`~rom.compression.compress`.

    Attributes
    ----------
    modes : ndarray of shape (n_local, N)
        This rank's rows of the :math:`M`-orthonormal modes :math:`U`.
    singular_values : ndarray of shape (N,)
        Non-increasing.
    error_bound : float or None
        Absolute upper bound on the Frobenius projection error :math:`\\|X - UU^TMX\\|_F` of
        the compressed data (rigorous up to rounding; exact, as the tail
        :math:`\\sqrt{\\sum_{n>N}\\sigma_n^2}`, for a batch POD). ``None`` where no bound
        exists (randomized SVD).
    total_energy : float
        :math:`\\|X\\|_M^2`, summed over all snapshots.
    n_snapshots : int
        Number of columns of :math:`X`.
    method : str
        ``"batch"`` (:func:`~rom.compression.pod`), ``"incremental"``, ``"hapod"``,
        ``"inc_hapod"`` or ``"randomized"``.
    details : dict
        Method-specific extras, e.g. ``"right_singular_vectors"`` (batch POD), ``"nodes"``
        (HAPOD tree), ``"timings"``.
    """

    modes: np.ndarray
    singular_values: np.ndarray
    error_bound: float | None
    total_energy: float
    n_snapshots: int
    method: str
    details: dict = field(default_factory=dict)

    @property
    def n_modes(self) -> int:
        """Number of modes :math:`N`."""
        return int(self.singular_values.shape[0])


class FittedModes:
    """What the estimators with :math:`M`-orthonormal ``modes_`` (owned rows) and
    ``n_components_`` share: the fitted check and the reconstruction :math:`U C`."""

    _FIT_HINT = "fit"  # how to fit, for the message of an unfitted estimator

    def _check_fitted(self) -> None:
        if not hasattr(self, "modes_"):
            raise RuntimeError(
                f"this {type(self).__name__} is not fitted yet; call {self._FIT_HINT} first"
            )

    def inverse_transform(self, C: np.ndarray) -> np.ndarray:
        """Owned rows of the reconstruction :math:`U C`, shape (n_local, n_columns)."""
        self._check_fitted()
        C = np.asarray(C, dtype=np.float64)
        if C.ndim == 1:
            C = C[:, None]
        if C.shape[0] != self.n_components_:
            raise ValueError(
                f"C has {C.shape[0]} rows, expected n_components_={self.n_components_}"
            )
        return self.modes_ @ C

"""Training items of :class:`rom.local.bases.LocalBases`: single columns or whole trajectories
stacked time-major, their inner product and canonical cluster numbering."""

from __future__ import annotations

from typing import Any

import numpy as np

from rom.parallel import Product
from rom.parallel import apply_product

__all__ = ["StackedProduct", "canonical_labels", "group_items", "stacked_product"]


class StackedProduct:
    """:math:`\\mathrm{diag}(M, \\dots, M)` acting on space-time items stacked time-major,
    rows ``t * n_local + i`` (``T`` blocks of this rank's owned rows)."""

    def __init__(self, product: Product, n_local: int, T: int) -> None:
        self.product, self.n_local, self.T = product, n_local, T

    def __call__(self, Z: np.ndarray) -> np.ndarray:
        k = Z.shape[1] if Z.ndim == 2 else 1
        blocks = Z.reshape(self.T, self.n_local, k).transpose(1, 0, 2).reshape(self.n_local, -1)
        MZ = apply_product(self.product, blocks)
        return MZ.reshape(self.n_local, self.T, k).transpose(1, 0, 2).reshape(Z.shape)


def stacked_product(product: Product | None, n_local: int, T: int) -> Product | None:
    """The inner product of items of ``T`` fields: ``product`` itself for one field (``None``
    for the Euclidean one), else :class:`StackedProduct`."""
    if product is None or T == 1:
        return product
    return StackedProduct(product, n_local, T)


def canonical_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters by their smallest member (cluster 0 holds item 0), drop empty ones."""
    labels = np.asarray(labels, dtype=np.int64)
    _, first = np.unique(labels, return_index=True)
    order = labels[np.sort(first)]
    remap = {int(c): i for i, c in enumerate(order)}
    return np.array([remap[int(c)] for c in labels], dtype=np.int64)


def group_items(n: int, groups: Any) -> tuple[list[np.ndarray], str | None]:
    """Column sets of the items: single columns, or the groups in order of appearance;
    an error message (or None) when the groups are not all of one length."""
    if groups is None:
        return [np.array([j]) for j in range(n)], None
    g = np.asarray(groups)
    if g.shape != (n,):
        return [], f"groups must have shape ({n},) (one entry per column), got {g.shape}"
    _, first = np.unique(g, return_index=True)
    items = [np.flatnonzero(g == g[j]) for j in np.sort(first)]
    T = {len(c) for c in items}
    if len(T) != 1:
        return [], f"every group must have the same number of columns, got {sorted(T)}"
    return items, None

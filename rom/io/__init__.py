"""Crash-safe, partition-independent HDF5 snapshot store (``docs/hdf5-schema.md``).

A store holds snapshot matrices :math:`X_f \\in \\mathbb{R}^{n_f \\times m}` (one column per
snapshot) for one or several fields :math:`f`, plus per-column parameters
:math:`\\mu_j \\in \\mathbb{R}^p`, times :math:`t_j` and sample (trajectory) ids :math:`s_j`.
Each row carries a partition-independent int64 key (e.g. input node index times block size
plus component); on disk the rows are sorted by key, so a store written with :math:`P` ranks
reads back identically with any :math:`Q` ranks.

Layout (see ``docs/hdf5-schema.md``)::

    run/thermal.h5                  index: small, rewritten completely at every commit
    run/thermal.h5.d/layout.h5      the sorted row keys of each field (written once)
    run/thermal.h5.d/seg-000001.h5  the values of append 1, (n_f, c_1) per field
    run/thermal.h5.d/seg-000002.h5  ...

Crash safety comes from write-new-then-rename: an append writes its segment to a temporary
name, fsyncs it and renames it; then it writes a complete new index to ``<path>.tmp``, fsyncs
it and renames it over ``<path>`` (the commit), and fsyncs the directory. A writer killed at
any moment leaves the previous index, and every segment it lists, intact. Segments are never
modified once listed. An orphan segment (written but never committed) is ignored and
overwritten by the next append.

Under MPI all writes happen on rank 0: at creation it gathers every rank's keys; at each
append it gathers the values (``Gatherv`` of float64 column blocks, bounded memory) and
writes them in key order. Reads are local: each rank opens the segments read-only and reads
the rows it needs (contiguous row blocks, selected in numpy). Errors found by one rank are
raised on every rank with the same message (:func:`rom.parallel.check_collective`).

Modules: ``_store`` (:class:`SnapshotStore`, the public surface), ``_format`` (names, limits,
helpers), ``_keys`` (the checks at creation), ``_index`` (the index and layout files),
``_reading`` and ``_writing`` (the two sides of the store, private base classes), ``_lock``
(one writer at a time), ``_files`` (:func:`merge_stores`, :func:`move_store`), ``_h5file``
(writing an HDF5 file so that a failed write, e.g. on a full disk, leaves no file open).
"""

from ._files import merge_stores
from ._files import move_store
from ._format import FORMAT
from ._format import SCHEMA_VERSION
from ._format import StoreError
from ._store import SnapshotStore

__all__ = [
    "SnapshotStore",
    "StoreError",
    "merge_stores",
    "move_store",
    "SCHEMA_VERSION",
    "FORMAT",
]

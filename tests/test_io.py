"""Tests of rom.io.SnapshotStore: round trip, partition independence, crash safety, errors.

References are independent of the code under test: the global data the test built (sorted by
key with numpy), plain h5py reading the virtual datasets of the index, and the values the
writer subprocess reported as committed. Values are copied, never computed, so comparisons
are exact.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from rom.io import SnapshotStore
from rom.io import StoreError
from rom.io import merge_stores
from rom.parallel import distribute_rows
from rom.parallel import row_range

ROOT = Path(__file__).resolve().parents[1]


def _global_problem(rng, n, m, size, key_range=1000):
    """Same on every rank: scattered unsorted keys, data, an owner rank and order per row."""
    keys = rng.permutation(key_range)[:n].astype(np.int64)
    X = rng.standard_normal((n, m))
    owner = rng.integers(0, size, n)
    order = rng.permutation(n)  # each rank passes its rows in a scrambled order
    return keys, X, [order[owner[order] == r] for r in range(size)]


def _all_equal(comm, msg):
    msgs = comm.allgather(msg)
    return all(m == msgs[0] for m in msgs)


# --------------------------------------------------------------------------- serial round trip
def test_round_trip_serial(tmp_path, rng, monkeypatch):
    n, widths = 40, (3, 1, 5)
    m = sum(widths)
    keys = rng.permutation(400)[:n].astype(np.int64)
    vkeys = rng.permutation(100)[:17].astype(np.int64)
    X = rng.standard_normal((n, m))
    V = rng.standard_normal((vkeys.size, m))
    P = rng.standard_normal((m, 2))
    T = np.arange(m) * 0.5
    S = np.repeat(np.arange(len(widths)), widths)
    path = tmp_path / "run" / "thermal.h5"
    with SnapshotStore.create(
        path, {"u": keys, "v": vkeys}, parameter_names=("k", "h"), attrs={"case": "blade"}
    ) as st:
        j = 0
        for c in widths:
            sl = slice(j, j + c)
            st.append({"u": X[:, sl], "v": V[:, sl]}, parameters=P[sl], time=T[sl], sample=S[sl])
            j += c
        assert st.n_snapshots == m

    st = SnapshotStore.open(path)
    order = np.argsort(keys)
    assert st.fields == ("u", "v")
    assert (st.n_snapshots, st.n_dofs("u"), st.n_dofs("v")) == (m, n, vkeys.size)
    np.testing.assert_array_equal(st.keys("u"), np.sort(keys))
    np.testing.assert_array_equal(st.read("u", rows="all"), X[order])
    np.testing.assert_array_equal(st.read("u"), X[order])  # serial "owned" = all rows
    np.testing.assert_array_equal(st.read("u", keys=keys), X)
    np.testing.assert_array_equal(st.read("v", keys=vkeys, columns=[8, 0, 4]), V[:, [8, 0, 4]])
    np.testing.assert_array_equal(
        st.read("u", rows=slice(5, 9), columns=slice(2, 7)), X[order][5:9, 2:7]
    )
    np.testing.assert_array_equal(st.parameters, P)
    np.testing.assert_array_equal(st.time, T)
    np.testing.assert_array_equal(st.sample, S)
    assert st.parameter_names == ("k", "h")
    assert st.attrs == {"case": "blade"}
    assert st.schema_version == 1
    st.verify()

    # iter_columns: every column exactly once, blocks equal to the data
    seen = []
    for cols, block in st.iter_columns("u", chunk=4, keys=keys):
        assert block.shape == (n, cols.size) and cols.size <= 4
        np.testing.assert_array_equal(block, X[:, cols])
        seen.extend(cols.tolist())
    assert sorted(seen) == list(range(m)) and len(seen) == m
    got = [c.tolist() for c, _ in st.iter_columns("u", chunk=2, columns=[8, 2, 5])]
    assert got == [[8, 2], [5]]
    st.close()

    # independent reader: plain h5py through the virtual datasets, from another directory
    monkeypatch.chdir(tmp_path)
    os.makedirs("elsewhere")
    monkeypatch.chdir("elsewhere")
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "rom-snapshot-store"
        assert f.attrs["schema_version"] == 1 and f.attrs["n_snapshots"] == m
        np.testing.assert_array_equal(f["fields/u/values"][...], X[order])
        np.testing.assert_array_equal(f["fields/u/keys"][...], np.sort(keys))
        np.testing.assert_array_equal(f["fields/v/values"][...], V[np.argsort(vkeys)])
        np.testing.assert_array_equal(f["parameters"][...], P)
        assert list(f["parameters"].attrs["names"]) == ["k", "h"]
        np.testing.assert_array_equal(f["time"][...], T)
        np.testing.assert_array_equal(f["sample"][...], S)
        assert list(f["segments/n_columns"][...]) == list(widths)


@pytest.mark.parametrize("small_blocks", [False, True])
def test_scattered_keys_read_in_requested_order(tmp_path, rng, monkeypatch, small_blocks):
    if small_blocks:  # exercise the gap / block splitting of scattered reads
        monkeypatch.setattr(SnapshotStore, "read_gap_rows", 7)
        monkeypatch.setattr(SnapshotStore, "read_block_rows", 50)
    n = 3000
    keys = np.arange(n, dtype=np.int64) * 3 + 1
    X = rng.standard_normal((n, 4))
    with SnapshotStore.create(tmp_path / "s.h5", keys) as st:
        st.append(X[:, :3])
        st.append(X[:, 3:])
    want = rng.choice(n, 500)  # random order, with repetitions
    with SnapshotStore.open(tmp_path / "s.h5", keys=keys[want[:20]]) as st:
        np.testing.assert_array_equal(st.read(keys=keys[want]), X[want])
        np.testing.assert_array_equal(st.read(keys=keys[want], columns=[3, 1]), X[want][:, [3, 1]])
        np.testing.assert_array_equal(st.read(), X[want[:20]])  # "owned" = keys given to open
        np.testing.assert_array_equal(st.read(rows=slice(10, 2000, 7)), X[10:2000:7])


def test_mesh_round_trip_survives_appends(tmp_path, rng):
    points = rng.standard_normal((6, 2))
    cells = np.array([[0, 1, 2], [2, 3, 4], [3, 4, 5]])
    with SnapshotStore.create(tmp_path / "s.h5", np.arange(6)) as st:
        assert st.read_mesh() is None
        st.write_mesh(points, cells)
        st.append(np.ones((6, 2)))
    with SnapshotStore.open(tmp_path / "s.h5") as st:
        p, c = st.read_mesh()
        np.testing.assert_array_equal(p, points)
        np.testing.assert_array_equal(c, cells)
    with h5py.File(tmp_path / "s.h5", "r") as f:
        np.testing.assert_array_equal(f["mesh/points"][...], points)
        np.testing.assert_array_equal(f["mesh/cells"][...], cells)


# --------------------------------------------------------------------------- partitions
@pytest.mark.mpi
@pytest.mark.partition
def test_partition_independent_round_trip(comm, rng, shared_tmp_path):
    n, nT = 61, 23
    keys, X, mine = _global_problem(rng, n, 5, comm.size)
    tkeys, T, tmine = _global_problem(rng, nT, 5, comm.size, key_range=50)
    P = rng.standard_normal((5, 3))
    my, tmy = mine[comm.rank], tmine[comm.rank]
    path = shared_tmp_path / "p.h5"
    G = rng.standard_normal((3, 5))  # a field held by rank 0 only (no rows elsewhere)
    gk = np.array([7, 3, 5]) if comm.rank == 0 else np.zeros(0, np.int64)
    g = G if comm.rank == 0 else np.zeros((0, 5))
    with SnapshotStore.create(
        path,
        {"u": keys[my], "T": tkeys[tmy], "g": gk},
        parameter_names=("a", "b", "c"),
        comm=comm,
    ) as st:
        st.append(
            {"u": X[my, :2], "T": T[tmy, :2], "g": g[:, :2]}, parameters=P[:2], time=[0.0, 1.0]
        )
        st.append(
            {"u": X[my, 2:], "T": T[tmy, 2:], "g": g[:, 2:]}, parameters=P[2:], sample=[3, 3, 4]
        )

    # every rank alone reads the whole store: the global data in key order
    with SnapshotStore.open(path, comm=MPI.COMM_SELF) as st:
        np.testing.assert_array_equal(st.read("u", rows="all"), X[np.argsort(keys)])
        np.testing.assert_array_equal(st.read("T", rows="all"), T[np.argsort(tkeys)])
        np.testing.assert_array_equal(st.read("g", rows="all"), G[[1, 2, 0]])
        np.testing.assert_array_equal(st.parameters, P)
        np.testing.assert_array_equal(st.sample, [-1, -1, 3, 3, 4])
    # all ranks together, each with its own keys
    with SnapshotStore.open(path, comm=comm, keys={"u": keys[my], "T": tkeys[tmy]}) as st:
        np.testing.assert_array_equal(st.read("u"), X[my])
        np.testing.assert_array_equal(st.read("T", columns=[4, 0]), T[tmy][:, [4, 0]])
        blocks = [b for _, b in st.iter_columns("u", chunk=2)]
        np.testing.assert_array_equal(np.hstack(blocks), X[my])
    # default: balanced contiguous blocks of the sorted rows
    with SnapshotStore.open(path, comm=comm) as st:
        start, stop = row_range(n, comm)
        np.testing.assert_array_equal(st.read("u"), X[np.argsort(keys)][start:stop])


@pytest.mark.mpi
@pytest.mark.partition
def test_written_by_subcommunicator_read_by_any_count(comm, rng, shared_tmp_path):
    """Written by max(1, P-1) ranks (2 of 3 in the 3-rank run); read by P ranks and by 1."""
    n_writers = max(1, comm.size - 1)
    keys, X, mine = _global_problem(rng, 47, 4, n_writers)
    path = shared_tmp_path / "sub.h5"
    writer = comm.rank < n_writers
    sub = comm.Split(0 if writer else 1, comm.rank)
    try:
        if writer:
            my = mine[sub.rank]
            with SnapshotStore.create(path, keys[my], comm=sub) as st:
                st.append(X[my, :1])
                st.append(X[my, 1:])
    finally:
        sub.Free()
    comm.Barrier()
    Xs = X[np.argsort(keys)]
    with SnapshotStore.open(path, comm=comm) as st:
        np.testing.assert_array_equal(np.vstack(comm.allgather(st.read())), Xs)
    with SnapshotStore.open(path, comm=MPI.COMM_SELF) as st:
        np.testing.assert_array_equal(st.read(), Xs)
    # all P ranks append to it (default contiguous blocks of the sorted rows)
    new = rng.standard_normal((47, 1))
    with SnapshotStore.open(path, "a", comm=comm) as st:
        st.append(distribute_rows(new, comm), time=[9.0])
    with SnapshotStore.open(path, comm=MPI.COMM_SELF) as st:
        np.testing.assert_array_equal(st.read(), np.hstack([Xs, new]))
        np.testing.assert_array_equal(st.time, [np.nan] * 4 + [9.0])


@pytest.mark.mpi
def test_duplicate_keys_refused_on_every_rank(comm, shared_tmp_path):
    # serial: a key repeated on one rank; parallel: every rank passes the same keys
    keys = np.arange(3) if comm.size > 1 else np.array([0, 1, 1])
    path = shared_tmp_path / "dup.h5"
    with pytest.raises(ValueError, match="duplicate keys") as exc:
        SnapshotStore.create(path, keys, comm=comm)
    assert _all_equal(comm, str(exc.value))
    assert not path.exists()


def _small_store(comm, path, rng, n=12, m=2):
    """A store of n rows in contiguous blocks with m committed columns; returns keys, X, rows."""
    keys = np.arange(n, dtype=np.int64) * 10
    X = rng.standard_normal((n, m))
    start, stop = row_range(n, comm)
    st = SnapshotStore.create(path, keys[start:stop], comm=comm)
    st.append(X[start:stop])
    return st, keys, X, slice(start, stop)


def _listing(path):
    return sorted(os.listdir(str(path) + ".d")), Path(path).read_bytes()


@pytest.mark.mpi
def test_nan_on_one_rank_refused_nothing_written(comm, rng, shared_tmp_path):
    path = shared_tmp_path / "nan.h5"
    st, keys, X, rows = _small_store(comm, path, rng)
    before = _listing(path) if comm.rank == 0 else None
    bad = rng.standard_normal((12, 3))[rows]
    if comm.rank == comm.size - 1:
        bad[-1, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or Inf in field 'u', column 1") as exc:
        st.append(bad)
    assert _all_equal(comm, str(exc.value))
    assert st.n_snapshots == 2
    if comm.rank == 0:
        assert _listing(path) == before
    st.append(np.ones((rows.stop - rows.start, 1)))  # the store still works
    st.close()
    with SnapshotStore.open(path, comm=MPI.COMM_SELF) as r:
        np.testing.assert_array_equal(r.read(rows="all"), np.hstack([X, np.ones((12, 1))]))


@pytest.mark.mpi
def test_shape_mismatch_on_one_rank_refused(comm, rng, shared_tmp_path):
    path = shared_tmp_path / "shape.h5"
    st, keys, X, rows = _small_store(comm, path, rng)
    nl = rows.stop - rows.start
    last = comm.rank == comm.size - 1
    with pytest.raises(ValueError, match="rows on this rank, expected") as exc:
        st.append(np.ones((nl + (1 if last else 0), 1)))
    assert _all_equal(comm, str(exc.value))
    if comm.size > 1:  # a column-count mismatch between ranks needs two ranks
        with pytest.raises(ValueError, match="ranks append different numbers of columns"):
            st.append(np.ones((nl, 2 if last else 1)))
    assert st.n_snapshots == 2
    st.close()


def test_bad_append_arguments_write_nothing(tmp_path, rng):
    path = tmp_path / "s.h5"
    st = SnapshotStore.create(path, {"u": np.arange(5), "v": np.arange(3)}, parameter_names=("a",))
    st.append({"u": np.ones((5, 1)), "v": np.ones((3, 1))}, parameters=[1.0])
    before = _listing(path)
    cases = [
        (
            {"u": np.ones((5, 2)), "v": np.ones((3, 1))},
            dict(parameters=[1.0]),
            "different numbers of columns",
        ),
        ({"u": np.ones((5, 1))}, dict(parameters=[1.0]), "exactly the fields"),
        (
            {"u": np.ones((4, 1)), "v": np.ones((3, 1))},
            dict(parameters=[1.0]),
            "have 4 rows on this rank, expected 5",
        ),
        ({"u": np.ones((5, 1)), "v": np.ones((3, 1))}, {}, "parameters are required"),
        (
            {"u": np.ones((5, 2)), "v": np.ones((3, 2))},
            dict(parameters=np.ones((3, 1))),
            r"parameters must have shape \(2, 1\)",
        ),
        (
            {"u": np.ones((5, 1)), "v": np.ones((3, 1))},
            dict(parameters=[1.0], time=[1, 2]),
            "time must have shape",
        ),
        (
            {"u": np.ones((5, 1)), "v": np.full((3, 1), np.inf)},
            dict(parameters=[1.0]),
            "NaN or Inf in field 'v', column 0",
        ),
        (np.ones((5, 1)), dict(parameters=[1.0]), "bare array is ambiguous"),
    ]
    for values, kw, match in cases:
        with pytest.raises(ValueError, match=match):
            st.append(values, **kw)
    assert st.n_snapshots == 1 and _listing(path) == before
    st.close()


# --------------------------------------------------------------------------- bad files
def test_open_missing_file(tmp_path):
    with pytest.raises(StoreError, match=r"nope\.h5: no such file"):
        SnapshotStore.open(tmp_path / "nope.h5")


def test_open_foreign_hdf5(tmp_path):
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = np.ones(3)
    with pytest.raises(StoreError, match=r"foreign\.h5: not a rom snapshot store"):
        SnapshotStore.open(tmp_path / "foreign.h5")


def test_open_non_hdf5_file(tmp_path):
    (tmp_path / "text.h5").write_text("this is not HDF5\n" * 100)
    with pytest.raises(StoreError, match=r"text\.h5: not a readable HDF5 file"):
        SnapshotStore.open(tmp_path / "text.h5")


def test_open_truncated_index(tmp_path, rng):
    st, *_ = _small_store(None, tmp_path / "s.h5", rng)
    st.close()
    data = (tmp_path / "s.h5").read_bytes()
    (tmp_path / "s.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match=r"s\.h5: not a readable HDF5 file"):
        SnapshotStore.open(tmp_path / "s.h5")


def test_open_newer_schema_version(tmp_path, rng):
    st, *_ = _small_store(None, tmp_path / "s.h5", rng)
    st.close()
    with h5py.File(tmp_path / "s.h5", "a") as f:
        f.attrs["schema_version"] = 2
    with pytest.raises(StoreError, match="schema_version 2 is newer than the supported 1"):
        SnapshotStore.open(tmp_path / "s.h5")


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_damaged_segment_named_other_segments_readable(tmp_path, rng, damage):
    keys = rng.permutation(30).astype(np.int64)
    X = rng.standard_normal((30, 7))
    with SnapshotStore.create(tmp_path / "s.h5", keys) as st:
        for sl in (slice(0, 2), slice(2, 5), slice(5, 7)):
            st.append(X[:, sl])
    seg = tmp_path / "s.h5.d" / "seg-000002.h5"
    if damage == "delete":
        seg.unlink()
    else:
        seg.write_bytes(seg.read_bytes()[: seg.stat().st_size // 2])
    with SnapshotStore.open(tmp_path / "s.h5", keys=keys) as st:
        np.testing.assert_array_equal(st.read(columns=[0, 1, 5, 6]), X[:, [0, 1, 5, 6]])
        with pytest.raises(StoreError, match=r"seg-000002\.h5"):
            st.read(columns=[3])
        with pytest.raises(StoreError, match=r"seg-000002\.h5"):
            st.read()
        with pytest.raises(StoreError, match=r"seg-000002\.h5"):
            st.verify()
        with pytest.raises(StoreError, match=r"seg-000002\.h5"):
            list(st.iter_columns(chunk=3))


def test_verify_detects_non_finite_segment(tmp_path):
    with SnapshotStore.create(tmp_path / "s.h5", np.arange(4)) as st:
        st.append(np.ones((4, 2)))
        st.verify()
    with h5py.File(tmp_path / "s.h5.d" / "seg-000001.h5", "a") as f:
        f["fields/u/values"][2, 1] = np.nan
    where = r"NaN or Inf in field 'u', snapshot 1, row key 2, in segment \S*seg-000001\.h5"
    with SnapshotStore.open(tmp_path / "s.h5") as st:
        with pytest.raises(StoreError, match=where):
            st.verify()
        with pytest.raises(StoreError, match=where):  # reads check what they read
            st.read()
        np.testing.assert_array_equal(st.read(columns=[0]), np.ones((4, 1)))


def test_read_only_store_refuses_append(tmp_path, rng):
    st, *_ = _small_store(None, tmp_path / "s.h5", rng)
    st.close()
    with SnapshotStore.open(tmp_path / "s.h5") as r, pytest.raises(StoreError, match="read-only"):
        r.append(np.ones((12, 1)))


def test_unknown_keys_refused(tmp_path, rng):
    st, keys, X, _ = _small_store(None, tmp_path / "s.h5", rng)  # keys 0, 10, ..., 110
    st.close()
    with pytest.raises(StoreError, match=r"1 keys not found in field 'u' \(first: 15\)"):
        SnapshotStore.open(tmp_path / "s.h5", keys=np.array([0, 15, 20]))
    with SnapshotStore.open(tmp_path / "s.h5") as r:
        with pytest.raises(StoreError, match="keys not found"):
            r.read(keys=[999])
        with pytest.raises(StoreError, match="no field 'w'"):
            r.read("w")


def test_append_mode_needs_every_key_once(tmp_path, rng):
    st, keys, X, _ = _small_store(None, tmp_path / "s.h5", rng)
    st.close()
    with pytest.raises(StoreError, match="must cover all 12 rows exactly once"):
        SnapshotStore.open(tmp_path / "s.h5", "a", keys=keys[:5])
    with SnapshotStore.open(tmp_path / "s.h5", "a", keys=keys[::-1]) as st:
        st.append(X[::-1, :1] * 2)  # rows given in this rank's key order
        np.testing.assert_array_equal(st.read(rows="all", columns=[2]), X[:, :1] * 2)


def test_create_refuses_existing_path_unless_overwrite(tmp_path, rng):
    st, *_ = _small_store(None, tmp_path / "s.h5", rng)
    st.close()
    with pytest.raises(StoreError, match="already exists"):
        SnapshotStore.create(tmp_path / "s.h5", np.arange(3))
    with SnapshotStore.create(tmp_path / "s.h5", np.arange(3), overwrite=True) as st:
        assert st.n_snapshots == 0 and st.n_dofs() == 3
    assert os.listdir(tmp_path / "s.h5.d") == ["layout.h5"]


def test_orphan_segment_and_stale_index_tmp_ignored(tmp_path, rng):
    """What a writer killed between segment rename and commit leaves behind."""
    st, keys, X, _ = _small_store(None, tmp_path / "s.h5", rng)
    st.close()
    (tmp_path / "s.h5.d" / "seg-000003.h5").write_bytes(b"junk")  # orphan
    (tmp_path / "s.h5.tmp").write_bytes(b"half an index")
    with SnapshotStore.open(tmp_path / "s.h5", "a") as st:
        assert st.n_snapshots == 2
        st.verify()
        st.append(np.full((12, 1), 7.0))
        np.testing.assert_array_equal(st.read(), np.hstack([X, np.full((12, 1), 7.0)]))


# --------------------------------------------------------------------------- crash safety
_WRITER = """
import os, sys
import numpy as np
from rom.io import SnapshotStore
path, n = sys.argv[1], int(sys.argv[2])
keys = np.arange(n)[::-1] * 2
if os.path.exists(path):
    st = SnapshotStore.open(path, "a", keys=keys)
else:
    st = SnapshotStore.create(path, keys, parameter_names=("j",))
while True:
    j = st.n_snapshots
    st.append(np.full((n, 1), float(j)), parameters=[float(j)], time=[j / 2], sample=[j])
    print(st.n_snapshots, flush=True)
"""


def _committed(log):
    lines = log.read_text().splitlines(keepends=True)
    done = [int(s) for s in lines if s.endswith("\n")]
    return max(done) if done else 0


def test_writer_killed_at_random_moments_keeps_commits(tmp_path, rng):
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    path = tmp_path / "crash.h5"
    n = 3000
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    reported = 0
    for kill in range(5):
        log = tmp_path / f"writer{kill}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [sys.executable, str(script), str(path), str(n)],
                stdout=out,
                stderr=subprocess.PIPE,
                env=env,
                cwd=tmp_path,
            )
        try:
            deadline = time.monotonic() + 60
            while _committed(log) <= reported and proc.poll() is None:
                assert time.monotonic() < deadline, "writer made no progress"
                time.sleep(0.01)
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(rng.uniform(0.0, 0.2))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stderr.close()
        reported = max(reported, _committed(log))
        with SnapshotStore.open(path) as st:  # each kill leaves a readable store
            assert st.n_snapshots >= reported

    with SnapshotStore.open(path) as st:
        m = st.n_snapshots
        assert m >= reported > 5
        expected = np.arange(m, dtype=float)
        np.testing.assert_array_equal(st.read(rows="all"), np.broadcast_to(expected, (n, m)))
        np.testing.assert_array_equal(st.parameters[:, 0], expected)
        np.testing.assert_array_equal(st.time, expected / 2)
        np.testing.assert_array_equal(st.sample, np.arange(m))
        np.testing.assert_array_equal(st.keys(), np.arange(n) * 2)
        st.verify()
    with SnapshotStore.open(path, "a") as st:
        st.append(np.full((n, 2), -1.0), parameters=[0.0])
        np.testing.assert_array_equal(st.read(columns=[m, m + 1]), np.full((n, 2), -1.0))
        assert st.n_snapshots == m + 2


def test_failed_commit_keeps_previous_state(tmp_path, rng, monkeypatch):
    path = tmp_path / "s.h5"
    st, keys, X, _ = _small_store(None, path, rng)
    real_replace = os.replace

    def replace_failing_on_index(src, dst):  # the commit of the index fails
        if str(src).endswith("s.h5.tmp"):
            raise OSError("disk full (simulated)")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_failing_on_index)
    with pytest.raises(StoreError, match=r"could not commit seg-000002\.h5: OSError: disk full"):
        st.append(np.ones((12, 1)))
    assert st.n_snapshots == 2
    with SnapshotStore.open(path) as r:
        assert r.n_snapshots == 2
        np.testing.assert_array_equal(r.read(), X)
    monkeypatch.undo()
    st.append(np.full((12, 1), 3.0))  # the uncommitted segment is overwritten
    np.testing.assert_array_equal(st.read(), np.hstack([X, np.full((12, 1), 3.0)]))
    st.close()


class _Terminal:
    """A stand-in for stderr that says it is a terminal and keeps what is written."""

    def __init__(self, tty: bool) -> None:
        self.tty, self.text = tty, []

    def isatty(self) -> bool:
        return self.tty

    def write(self, s: str) -> int:
        self.text.append(s)
        return len(s)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("tty", [True, False])
def test_progress_bar_only_on_a_terminal(tmp_path, rng, monkeypatch, tty):
    """Streaming with progress=True draws a bar (counting columns) on a terminal, and writes
    nothing when stderr is redirected to a file or a pipe (CI logs, mpirun output)."""
    X = rng.standard_normal((30, 12))
    path = tmp_path / "p.h5"
    with SnapshotStore.create(path, {"u": np.arange(30)}) as store:
        store.append({"u": X})
    fake = _Terminal(tty)
    monkeypatch.setattr(sys, "stderr", fake)
    with SnapshotStore.open(path) as store:
        blocks = [b for _, b in store.iter_columns("u", chunk=5, progress=True)]
    np.testing.assert_array_equal(np.hstack(blocks), X)
    out = "".join(fake.text)
    if tty:
        assert "12/12" in out and "p.h5" in out
    else:
        assert out == ""


# --------------------------------------------------------------------------- one writer at a time
def _lock_message(path, pid, host):
    return rf"{re.escape(str(path))}: locked for writing by pid {pid} on host {re.escape(host)}"


def test_second_writer_in_the_same_process_refused(tmp_path, rng):
    path = tmp_path / "s.h5"
    st, keys, X, _ = _small_store(None, path, rng)
    holder = json.loads(Path(str(path) + ".lock").read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    msg = _lock_message(path, os.getpid(), socket.gethostname())
    with pytest.raises(StoreError, match=msg):
        SnapshotStore.open(path, "a")
    with pytest.raises(StoreError, match=msg):  # not even overwrite removes a held store
        SnapshotStore.create(path, keys, overwrite=True)
    with pytest.raises(StoreError, match=msg):
        SnapshotStore.break_lock(path)
    with SnapshotStore.open(path) as r:  # readers never wait
        np.testing.assert_array_equal(r.read(), X)
    st.append(np.ones((12, 1)))  # the holder still writes
    st.close()
    assert not Path(str(path) + ".lock").exists()
    with SnapshotStore.open(path, "a") as st:  # released by close
        st.append(np.zeros((12, 1)))
        assert st.n_snapshots == 4


_HOLDER = """
import json, sys, time
import numpy as np
from rom.io import SnapshotStore
st = SnapshotStore.open(sys.argv[1], "a")
if len(sys.argv) > 2:  # pretend the holder runs on another node
    with open(sys.argv[1] + ".lock", "w") as f:
        json.dump({"host": sys.argv[2], "pid": 4242, "since": "then"}, f)
print("ready", flush=True)
sys.stdin.readline()
"""


def _holder(tmp_path, path, *extra):
    script = tmp_path / "holder.py"
    script.write_text(_HOLDER)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_writer_in_another_process_refused_until_it_dies(tmp_path, rng):
    path = tmp_path / "s.h5"
    st, keys, X, _ = _small_store(None, path, rng)
    st.close()
    proc = _holder(tmp_path, path)
    try:
        with pytest.raises(StoreError, match=_lock_message(path, proc.pid, socket.gethostname())):
            SnapshotStore.open(path, "a")
        with pytest.raises(StoreError, match=rf"pid {proc.pid} .* is alive; not breaking"):
            SnapshotStore.break_lock(path)
        with SnapshotStore.open(path) as r:
            np.testing.assert_array_equal(r.read(), X)
    finally:
        proc.kill()  # SIGKILL: no cleanup; the kernel drops the flock
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    assert Path(str(path) + ".lock").exists()  # the dead holder's file is left
    with SnapshotStore.open(path, "a") as st:
        st.append(np.ones((12, 1)))
    assert SnapshotStore.break_lock(path) == f"{path}: not locked"


def test_stale_lock_of_another_host_broken_only_with_force(tmp_path, rng):
    path = tmp_path / "s.h5"
    st, keys, X, _ = _small_store(None, path, rng)
    st.close()
    proc = _holder(tmp_path, path, "node-gone")  # a lock that outlives its node
    try:
        with pytest.raises(StoreError, match=_lock_message(path, 4242, "node-gone")):
            SnapshotStore.open(path, "a")
        with pytest.raises(StoreError, match="on another host; if that job is gone"):
            SnapshotStore.break_lock(path)
        assert "removed the lock of pid 4242 on host node-gone" in SnapshotStore.break_lock(
            path, force=True
        )
        with SnapshotStore.open(path, "a") as st:  # a new lock file, though the old is held
            st.append(np.ones((12, 1)))
            assert st.n_snapshots == 3
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()


@pytest.mark.mpi
def test_second_writer_refused_on_every_rank(comm, rng, shared_tmp_path):
    path = shared_tmp_path / "locked.h5"
    st, keys, X, rows = _small_store(comm, path, rng)
    host = comm.bcast(socket.gethostname() if comm.rank == 0 else None)
    pid = comm.bcast(os.getpid() if comm.rank == 0 else None)
    with pytest.raises(StoreError, match=_lock_message(path, pid, host)) as exc:
        SnapshotStore.open(path, "a", comm=comm)
    assert _all_equal(comm, str(exc.value))
    with SnapshotStore.open(path, comm=comm) as r:
        np.testing.assert_array_equal(r.read(), X[rows])
    st.close()
    with SnapshotStore.open(path, "a", comm=comm) as st:
        st.append(np.ones((rows.stop - rows.start, 1)))
        assert st.n_snapshots == 3


# --------------------------------------------------------------------------- several stores as one
def _sweep_store(comm, path, keys, X, P, offset, mesh=None):
    """A store of the given global columns, written with this rank's contiguous rows."""
    start, stop = row_range(keys.size, comm)
    with SnapshotStore.create(path, keys[start:stop], parameter_names=("mu",), comm=comm) as st:
        m = X.shape[1]
        st.append(X[start:stop], parameters=P, time=np.arange(m) + offset, sample=[offset] * m)
        if mesh is not None:
            st.write_mesh(*mesh)


@pytest.mark.mpi
@pytest.mark.partition
def test_merge_equals_the_concatenation(comm, rng, shared_tmp_path):
    keys = rng.permutation(200)[:37].astype(np.int64)
    parts = [rng.standard_normal((37, m)) for m in (3, 1, 4)]
    params = [rng.standard_normal((X.shape[1], 1)) for X in parts]
    mesh = (rng.standard_normal((5, 2)), np.array([[0, 1, 2], [2, 3, 4]]))
    paths = [shared_tmp_path / f"job{i}.h5" for i in range(3)]
    for i, (path, X, P) in enumerate(zip(paths, parts, params)):
        _sweep_store(comm, path, keys, X, P, 10 * i, mesh if i == 1 else None)
    out = shared_tmp_path / "all.h5"
    merge_stores(paths, out, comm=comm)
    X = np.hstack(parts)[np.argsort(keys)]  # rows in key order, columns concatenated
    with SnapshotStore.open(out, comm=comm) as st:
        np.testing.assert_array_equal(st.read(rows="all"), X)
        np.testing.assert_array_equal(st.parameters, np.vstack(params))
        np.testing.assert_array_equal(st.time, [0, 1, 2, 10, 20, 21, 22, 23])
        np.testing.assert_array_equal(st.sample, [0, 0, 0, 10, 20, 20, 20, 20])
        np.testing.assert_array_equal(st.read_mesh()[0], mesh[0])
        assert json.loads(st.attrs["merged_from"]) == [str(p) for p in paths]
        assert [c for _, c in st.segments] == [3, 1, 4]
        st.verify()
    if comm.rank == 0:  # plain h5py through the virtual datasets of the new index
        with h5py.File(out, "r") as f:
            np.testing.assert_array_equal(f["fields/u/values"][...], X)


@pytest.mark.mpi
def test_merge_of_different_stores_refused_nothing_written(comm, rng, shared_tmp_path):
    keys = np.arange(20, dtype=np.int64)
    X = rng.standard_normal((20, 2))
    a, b = shared_tmp_path / "a.h5", shared_tmp_path / "b.h5"
    _sweep_store(comm, a, keys, X, np.zeros((2, 1)), 0)
    _sweep_store(comm, b, keys + 1, X, np.zeros((2, 1)), 0)
    out = shared_tmp_path / "ab.h5"
    with pytest.raises(StoreError, match=r"b\.h5: the row keys of field 'u' differ") as exc:
        merge_stores([a, b], out, comm=comm)
    assert _all_equal(comm, str(exc.value))
    assert not out.exists() and not Path(str(out) + ".d").exists()
    with pytest.raises(StoreError, match="would replace one of its sources"):
        merge_stores([a, a], a, comm=comm)

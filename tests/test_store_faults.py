"""Fault injection for the snapshot store and the ``rom`` command line: failed writes (a
file-size limit, a full file system), damaged files, killed writers and command-line misuse.

What ``tests/test_io.py`` and ``tests/test_cli.py`` already cover serially (foreign, text and
truncated index; deleted and truncated segment; a single writer killed at random moments;
missing store, wrong field and ``--out`` equal to an input on the command line) is not
repeated; this file adds the collective side (every rank gets the same one-line error, never a
hang), failed writes, damaged segments of every kind, and killed writers under ``mpirun``.

References are independent of the code under test: the arrays the test wrote, the error
each fault must produce (named by file and problem), and the exit status of a subprocess (a
crash at interpreter exit shows as a signal, a hang as a timeout).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from rom.cli import main
from rom.compression import compress
from rom.io import SnapshotStore
from rom.io import StoreError
from rom.parallel import row_range

ROOT = Path(__file__).resolve().parents[1]
MPIRUN = Path(sys.executable).parent / "mpirun"
HANG_S = 90  # a subprocess still running after this long is a hang

N_ROWS, SEG_COLS = 40, (2, 3, 2)  # the damaged segment is the second: snapshots 2, 3, 4


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _run_script(tmp: Path, code: str, *args: str, mpi: int = 0) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (under ``mpirun -n mpi`` when ``mpi``); a hang
    fails the test through the timeout."""
    script = tmp / "script.py"
    script.write_text(code)
    cmd = [sys.executable, str(script), *args]
    if mpi:
        cmd = [str(MPIRUN), "-n", str(mpi), *cmd]
    return subprocess.run(
        cmd, capture_output=True, text=True, cwd=tmp, env=_env(), timeout=HANG_S, check=False
    )


def _one_line_error(stderr: str) -> str:
    """The single ``rom: error:`` line of a command's stderr (any rank may print it once)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines, "no error message"
    assert all(ln.startswith("rom: error: ") for ln in lines), stderr
    assert len(set(lines)) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# --------------------------------------------------------------------------- failed writes
_WRITE_FAULT = r"""
import resource, signal, sys
import numpy as np
from rom.io import SnapshotStore, StoreError

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
path, case = sys.argv[1], sys.argv[2]
rows, cols, n_setup = {"index": (5, 1, 40)}.get(case, (2000, 10, 1))
st = SnapshotStore.create(path, np.arange(rows), parameter_names=("j",))
for j in range(n_setup):
    st.append(np.full((rows, cols), float(j)), parameters=[float(j)])
seg = max((st.path.parent / (st.path.name + ".d")).glob("seg-*.h5")).stat().st_size
index = st.path.stat().st_size
limit = {
    "create": 1,  # the first write of the new segment
    "data": seg // 3,  # while writing the values
    "close": seg - 512,  # in the flush when the segment is closed
    "index": (seg + index) // 2,  # the segment is written, the new index is not
    "extend": seg // 2,  # copying a segment of another store
}[case]
assert case != "index" or index > seg + 1024, (seg, index)
if case == "extend":
    src = SnapshotStore.create(path + ".src.h5", np.arange(rows), parameter_names=("j",))
    src.append(np.full((rows, cols), 7.0), parameters=[7.0])
    src.close()
    src = SnapshotStore.open(path + ".src.h5")
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
try:
    if case == "extend":
        st.extend(src)
    else:
        st.append(np.full((rows, cols), 5.0), parameters=[5.0])
except StoreError as e:
    print("ERROR", str(e), flush=True)
else:
    print("NO ERROR", flush=True)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # "space freed": the retry works
if case == "extend":
    st.extend(src)
    src.close()
else:
    st.append(np.full((rows, cols), 5.0), parameters=[5.0])
st.close()
with SnapshotStore.open(path) as r:
    r.verify()
    last = 7.0 if case == "extend" else 5.0
    want = np.repeat(np.append(np.arange(n_setup, dtype=float), last), cols)  # per column
    np.testing.assert_array_equal(r.parameters[:, 0], want)
    np.testing.assert_array_equal(r.read(), np.broadcast_to(want, (rows, want.size)))
leftovers = [p.name for p in (r.path.parent / (r.path.name + ".d")).iterdir() if "tmp" in p.name]
assert not leftovers, leftovers
print("OK", flush=True)
"""


@pytest.mark.parametrize("case", ["create", "data", "close", "index", "extend"])
def test_failed_write_then_retry_and_a_clean_exit(tmp_path, case):
    """A write that fails (file-size limit: EFBIG from the operating system, wherever HDF5
    is in the file) is one StoreError; the retry works; the process exits normally."""
    proc = _run_script(tmp_path, _WRITE_FAULT, str(tmp_path / "s.h5"), case)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    out = proc.stdout.splitlines()
    assert out[-1] == "OK"
    err = [ln for ln in out if ln.startswith("ERROR")]
    assert len(err) == 1, proc.stdout  # one line, naming the file and the cause
    assert "File too large" in err[0] and "s.h5" in err[0], err[0]


_DISK_FULL = r"""
import os, sys
import numpy as np
from rom.io import SnapshotStore, StoreError

d, reserve = sys.argv[1], int(sys.argv[2])
X = np.random.default_rng(0).standard_normal((2000, 10))
st = SnapshotStore.create(f"{d}/s.h5", np.arange(2000))
st.append(X)
fd = os.open(f"{d}/filler", os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, b"x" * 4096)
except OSError:
    pass
os.ftruncate(fd, max(0, os.fstat(fd).st_size - reserve))  # leave `reserve` bytes free
os.close(fd)
n_ok = 0
while True:
    try:
        st.append(X)
        n_ok += 1
    except StoreError as e:
        print("ERROR", str(e), flush=True)
        break
os.remove(f"{d}/filler")
st.append(X)
st.close()
with SnapshotStore.open(f"{d}/s.h5") as r:
    r.verify()
    assert r.n_snapshots == 10 * (n_ok + 2), (r.n_snapshots, n_ok)
    np.testing.assert_array_equal(r.read(), np.hstack([X] * (n_ok + 2)))
print("OK", flush=True)
"""


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MiB tmpfs (needs root and mount permission; skipped otherwise)."""
    d = tmp_path / "tmpfs"
    d.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root (the file-size-limit test still runs)")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {r.stderr.strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], check=False)


@pytest.mark.parametrize("reserve", [0, 20_000, 150_000, 170_000])
def test_disk_full_then_space_freed(small_tmpfs, reserve):
    """A full file system (ENOSPC at file creation, in the values, at the close): one
    StoreError, the retry after freeing space works, no crash at exit, nothing lost."""
    proc = _run_script(small_tmpfs.parent, _DISK_FULL, str(small_tmpfs), str(reserve))
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    out = proc.stdout.splitlines()
    assert out[-1] == "OK"
    err = [ln for ln in out if ln.startswith("ERROR")]
    assert len(err) == 1 and "No space left on device" in err[0], proc.stdout


@pytest.mark.mpi
def test_failed_write_raises_on_every_rank_and_retry_works(comm, shared_tmp_path):
    """Rank 0 writes; its failure is every rank's StoreError, and the retry works."""
    path = shared_tmp_path / "s.h5"
    n = 3000
    start, stop = row_range(n, comm)
    keys = np.arange(start, stop)
    st = SnapshotStore.create(path, keys, comm=comm)
    st.append(np.full((keys.size, 4), 1.0))
    err = None
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        if comm.rank == 0:
            resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
        try:
            st.append(np.full((keys.size, 4), 2.0))
        except StoreError as e:
            err = str(e)
    finally:
        if comm.rank == 0:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    assert err is not None and "\n" not in err and "File too large" in err, err
    assert len(set(comm.allgather(err))) == 1
    st.append(np.full((keys.size, 4), 3.0))
    st.close()
    with SnapshotStore.open(path, comm=comm) as r:
        np.testing.assert_array_equal(r.read(), np.repeat([[1.0] * 4 + [3.0] * 4], stop - start, 0))
        if comm.rank == 0:
            r.verify()


# --------------------------------------------------------------------------- damaged files
def _make_store(path: Path, comm) -> np.ndarray:
    """A store of three segments (2, 3 and 2 columns) with balanced row blocks; returns the
    global matrix (the same on every rank)."""
    X = np.arange(N_ROWS * sum(SEG_COLS), dtype=float).reshape(N_ROWS, -1) + 1.0
    start, stop = row_range(N_ROWS, comm)
    with SnapshotStore.create(path, np.arange(start, stop) * 3, comm=comm) as st:
        j = 0
        for c in SEG_COLS:
            st.append(X[start:stop, j : j + c])
            j += c
    return X


def _damage(path: Path, kind: str) -> str:
    """Damage the store on disk; returns the regular expression of the expected error."""
    seg = Path(str(path) + ".d") / "seg-000002.h5"
    if kind == "segment missing":
        seg.unlink()
        return r"seg-000002\.h5 is missing"
    if kind == "segment foreign":
        seg.unlink()
        with h5py.File(seg, "w") as f:
            f["data"] = np.ones((3, 3))
        return r"seg-000002\.h5 has no dataset fields/u/values"
    if kind == "segment text":
        seg.write_text("not an HDF5 file\n" * 200)
        return r"seg-000002\.h5 is not a readable HDF5 file"
    if kind == "segment truncated":
        seg.write_bytes(seg.read_bytes()[: seg.stat().st_size // 2])
        return r"seg-000002\.h5 .*truncated or corrupt"
    if kind == "segment flipped shape":
        with h5py.File(seg, "a") as f:
            v = f["fields/u/values"][...]
            del f["fields/u/values"]
            f["fields/u/values"] = v.T
        return rf"seg-000002\.h5 dataset fields/u/values has shape \(3, {N_ROWS}\), expected"
    if kind == "segment NaN, last rows":  # rows of the last rank only
        with h5py.File(seg, "a") as f:
            f["fields/u/values"][N_ROWS - 2, 1] = np.nan
        key = 3 * (N_ROWS - 2)
        return rf"NaN or Inf in field 'u', snapshot 3, row key {key}, in segment \S*seg-000002"
    if kind == "index foreign":
        path.unlink()
        with h5py.File(path, "w") as f:
            f["data"] = np.ones(3)
        return r"s\.h5: not a rom snapshot store"
    if kind == "index text":
        path.write_text("not an HDF5 file\n" * 200)
        return r"s\.h5: not a readable HDF5 file"
    assert kind == "index truncated"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return r"s\.h5: not a readable HDF5 file"


SEGMENT_DAMAGE = [
    "segment missing",
    "segment foreign",
    "segment text",
    "segment truncated",
    "segment flipped shape",
    "segment NaN, last rows",
]
INDEX_DAMAGE = ["index foreign", "index text", "index truncated"]


def _same_error_everywhere(comm, fn, match: str) -> None:
    """``fn()`` raises a one-line StoreError matching ``match`` on every rank."""
    with pytest.raises(StoreError, match=match) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg
    assert len(set(comm.allgather(msg))) == 1, msg


@pytest.mark.mpi
@pytest.mark.partition
@pytest.mark.parametrize("kind", SEGMENT_DAMAGE)
def test_damaged_segment_same_error_on_every_rank(comm, shared_tmp_path, kind):
    path = shared_tmp_path / "s.h5"
    X = _make_store(path, comm)
    match = comm.bcast(_damage(path, kind) if comm.rank == 0 else None)
    start, stop = row_range(N_ROWS, comm)
    with SnapshotStore.open(path, comm=comm) as st:
        _same_error_everywhere(comm, lambda: st.read(comm=comm), match)
        _same_error_everywhere(comm, lambda: list(st.iter_columns(chunk=2, comm=comm)), match)
        _same_error_everywhere(comm, lambda: compress(st, method="incremental", comm=comm), match)
        _same_error_everywhere(comm, lambda: compress(st, method="batch", comm=comm), match)
        with pytest.raises(StoreError, match=r"seg-000002\.h5"):
            st.verify()  # local: every rank checks every segment (and names the first flaw)
        intact = [0, 1, 5, 6]  # the other segments still read
        np.testing.assert_array_equal(st.read(columns=intact), X[start:stop, intact])
    out = shared_tmp_path / "modes.h5"
    assert main(["compress", str(path), "--rank", "2", "--out", str(out)]) == 2
    assert not out.exists()


@pytest.mark.mpi
@pytest.mark.parametrize("kind", INDEX_DAMAGE)
def test_damaged_index_same_error_on_every_rank(comm, shared_tmp_path, kind, capsys):
    path = shared_tmp_path / "s.h5"
    _make_store(path, comm)
    match = comm.bcast(_damage(path, kind) if comm.rank == 0 else None)
    _same_error_everywhere(comm, lambda: SnapshotStore.open(path, comm=comm), match)
    _same_error_everywhere(comm, lambda: SnapshotStore.open(path, "a", comm=comm), match)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    if comm.rank == 0:
        assert err.startswith("rom: error: ") and err.count("\n") == 1, err


_COMPRESS_DAMAGED = r"""
import sys
from pathlib import Path
from mpi4py import MPI
sys.path.insert(0, sys.argv[2])
from test_store_faults import _damage, _make_store

path = Path(sys.argv[1])
_make_store(path, MPI.COMM_WORLD)
if MPI.COMM_WORLD.rank == 0:
    print(_damage(path, sys.argv[3]), flush=True)
"""


@pytest.mark.parametrize(
    "kind, method",
    [
        ("segment NaN, last rows", "batch"),
        ("segment NaN, last rows", "hapod"),
        ("segment truncated", "incremental"),
        ("segment flipped shape", "randomized"),
    ],
)
def test_compress_of_a_damaged_store_under_mpirun_never_hangs(tmp_path, kind, method):
    """``mpirun -n 2 rom compress`` of a damaged store (the NaN lies in rank 1's rows)
    exits with status 2 and one line naming the field, snapshot and segment (a hang fails
    through the timeout)."""
    path = tmp_path / "s.h5"
    made = _run_script(tmp_path, _COMPRESS_DAMAGED, str(path), str(ROOT / "tests"), kind)
    assert made.returncode == 0, made.stderr[-2000:]
    match = made.stdout.strip()
    opts = {"hapod": ["--eps", "1e-3"], "randomized": ["--rank", "2"]}.get(method, [])
    cmd = [str(MPIRUN), "-n", "2", sys.executable, "-m", "rom.cli", "compress", str(path)]
    cmd += ["--method", method, *opts, "--out", str(tmp_path / "m.h5"), "--no-progress"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=HANG_S
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    line = _one_line_error(proc.stderr)
    assert re.search(match, line), (match, line)
    assert not (tmp_path / "m.h5").exists()


# --------------------------------------------------------------------------- killed writers
_MPI_WRITER = r"""
import os, sys, time
import numpy as np
from mpi4py import MPI
from rom.io import SnapshotStore, StoreError
from rom.parallel import row_range

comm = MPI.COMM_WORLD
path, n = sys.argv[1], int(sys.argv[2])
start, stop = row_range(n, comm)
keys = np.arange(start, stop)[::-1] * 2
for attempt in range(100):  # the killed writer's lock goes when its rank 0 is reaped
    try:
        if os.path.exists(path):  # checked by every rank on the shared directory
            st = SnapshotStore.open(path, "a", comm=comm, keys=keys)
        else:
            st = SnapshotStore.create(path, keys, parameter_names=("j",), comm=comm)
        break
    except StoreError:
        time.sleep(0.05)
while True:
    j = st.n_snapshots
    if j % 4 == 3:  # extend with a fresh store of two columns j, j + 1 (segments copied)
        src = path + ".src.h5"
        with SnapshotStore.create(
            src, keys, parameter_names=("j",), comm=comm, overwrite=True
        ) as s:
            s.append(np.outer(np.ones(keys.size), [j, j + 1.0]), parameters=[[j], [j + 1.0]])
        with SnapshotStore.open(src, comm=comm) as s:
            st.extend(s)
    else:
        st.append(np.full((keys.size, 1), float(j)), parameters=[float(j)])
    if comm.rank == 0:
        print(st.n_snapshots, flush=True)
"""


def _committed(log: Path) -> int:
    done = [int(s) for s in log.read_text().splitlines(keepends=True) if s.endswith("\n")]
    return max(done, default=0)


def test_mpi_writer_killed_at_random_moments_keeps_commits(tmp_path):
    """``mpirun -n 2`` writers (appends and extends) killed with SIGKILL at seeded random
    moments: every commit they reported survives, the store stays readable."""
    rng = np.random.default_rng(4)
    (tmp_path / "writer.py").write_text(_MPI_WRITER)
    path, n = tmp_path / "crash.h5", 500
    reported = 0
    for kill in range(3):
        log = tmp_path / f"writer{kill}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [str(MPIRUN), "-n", "2", sys.executable, "writer.py", str(path), str(n)],
                stdout=out,
                stderr=subprocess.DEVNULL,
                env=_env(),
                cwd=tmp_path,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + HANG_S
            while _committed(log) <= reported and proc.poll() is None:
                assert time.monotonic() < deadline, "writer made no progress"
                time.sleep(0.01)
            assert proc.poll() is None, f"writer {kill} exited with {proc.returncode}"
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reported = max(reported, _committed(log))
        with SnapshotStore.open(path) as st:
            m = st.n_snapshots
            assert m >= reported
            expected = np.arange(m, dtype=float)  # column j holds j in every row
            np.testing.assert_array_equal(st.parameters[:, 0], expected)
            np.testing.assert_array_equal(st.read(rows="all"), np.broadcast_to(expected, (n, m)))
            st.verify()
    assert reported > 3


# --------------------------------------------------------------------------- CLI misuse
@pytest.mark.mpi
@pytest.mark.parametrize(
    "args, match",
    [
        (["compress", "{d}/missing.h5", "--rank", "2", "--out", "{d}/m.h5"], "no such file"),
        (["cluster", "{d}/missing.h5", "--n-clusters", "2", "--out", "{d}/l.json"], "no such"),
        (["merge", "{s}", "{d}/missing.h5", "--out", "{d}/m.h5"], "no such file"),
        (["info", "{s}", "--verify", "--json", "--field", "w"], "unrecognized arguments"),
        (["compress", "{s}", "--field", "w", "--rank", "2", "--out", "{d}/m.h5"], "no field 'w'"),
        (["cluster", "{s}", "--field", "w", "--n-clusters", "2", "--out", "{d}/l.json"], "'w'"),
        (["compress", "{s}", "--rank", "2", "--out", "{s}", "--overwrite"], "overwrite the input"),
        (["export", "{s}", "--columns", "1:x", "--out", "{d}/e"], "bad column spec|needs"),
        (["compress", "{s}", "--chunk", "0", "--out", "{d}/m.h5"], "positive integer"),
    ],
)
def test_cli_misuse_exits_2_with_one_line_on_every_rank(comm, shared_tmp_path, capsys, args, match):
    path = shared_tmp_path / "s.h5"
    _make_store(path, comm)
    argv = [a.format(s=path, d=shared_tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    if comm.rank == 0:
        assert err.startswith("rom: error: ") and err.count("\n") == 1, err
        assert re.search(match, err), err  # export without dolfinx: the missing-plugin line
    else:
        assert err == ""
    assert not (shared_tmp_path / "m.h5").exists() and not (shared_tmp_path / "l.json").exists()

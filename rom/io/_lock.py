"""One writer at a time: an advisory lock file beside the index, held by rank 0.

A writable handle (:meth:`SnapshotStore.create <rom.io.SnapshotStore.create>`, or
:meth:`~rom.io.SnapshotStore.open` in mode ``"a"``) takes a non-blocking exclusive
``flock`` on ``<path>.lock`` and writes its holder (host, pid, start time) into it; closing
the handle removes the file and releases the lock. Readers never touch the lock. The kernel drops a ``flock`` when its
holder dies, so a killed writer leaves no lock behind on a local file system; on a network
file system a lock may outlive a crashed node, and :func:`break_lock` removes the lock file
(refusing while the holder is alive on this host).

``flock`` locks belong to an open file description, so a second handle in the same process
conflicts too; a registry of the locks this process holds gives the same answer where the
file system emulates ``flock`` with per-process POSIX locks.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
from pathlib import Path

from ._format import StoreError

__all__ = ["StoreLock", "lock_path", "break_lock", "read_holder"]

_HELD: dict[str, StoreLock] = {}  # locks held by this process, by lock-file path


def lock_path(path: Path) -> Path:
    """The lock file of the store ``path``: ``<path>.lock``."""
    return Path(str(path) + ".lock")


def read_holder(path: Path) -> dict:
    """The holder recorded in the lock file of ``path`` (``{}`` when none is readable)."""
    try:
        text = lock_path(path).read_text()
        holder = json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "an unknown writer"
    return (
        f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} "
        f"(since {holder.get('since', '?')})"
    )


def _locked_error(path: Path, holder: dict) -> StoreError:
    return StoreError(
        f"{path}: locked for writing by {_describe(holder)}; readers may open it meanwhile; "
        f"if that writer is gone, run 'rom unlock {path}'"
    )


class StoreLock:
    """The exclusive writer lock of one store, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.file = lock_path(self.path)
        self._fd: int | None = None

    def acquire(self) -> StoreLock:
        """Take the lock without waiting; raises :class:`StoreError` naming the holder."""
        key = os.path.abspath(self.file)
        if key in _HELD:
            raise _locked_error(self.path, read_holder(self.path))
        for _ in range(10):  # retry when break_lock removed the file we opened
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise _locked_error(self.path, read_holder(self.path)) from None
                raise
            if self._same_file(fd):
                break
            os.close(fd)
        else:
            raise StoreError(f"{self.file}: the lock file keeps being replaced")
        self._fd = fd
        self._write_holder()
        _HELD[key] = self
        return self

    def _same_file(self, fd: int) -> bool:
        try:
            st = os.stat(self.file)
        except FileNotFoundError:
            return False
        fst = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)

    def _write_holder(self) -> None:
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        data = (json.dumps(holder) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file and drop the lock; a no-op when not held.

        The file goes while still locked: a writer waiting on the old file finds it gone
        after its ``flock`` and opens the path again (:meth:`acquire`).
        """
        if self._fd is None:
            return
        _HELD.pop(os.path.abspath(self.file), None)
        try:
            if self._same_file(self._fd):
                self.file.unlink()
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # never raise from a finalizer
            pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def break_lock(path: Path, *, force: bool = False) -> str:
    """Remove a stale writer lock of the store ``path``; returns what was done (one line).

    Refuses (:class:`StoreError`) while the recorded holder is alive on this host, and, unless
    ``force``, when the lock is held from another host (whose processes cannot be checked
    from here). A lock that nobody holds is simply cleared.
    """
    path = Path(path)
    file = lock_path(path)
    if not file.exists():
        return f"{path}: not locked"
    if os.path.abspath(file) in _HELD:
        raise _locked_error(path, read_holder(path))
    holder = read_holder(path)
    probe = StoreLock(path)
    try:
        probe.acquire()
    except StoreError:
        pass
    else:  # nobody holds it (a killed writer's file): clear it
        probe.release()
        return f"{path}: not locked"
    host, pid = holder.get("host"), holder.get("pid")
    if host == socket.gethostname() and isinstance(pid, int) and _pid_alive(pid):
        raise StoreError(f"{path}: the writer {_describe(holder)} is alive; not breaking its lock")
    if host != socket.gethostname() and not force:
        raise StoreError(
            f"{path}: locked by {_describe(holder)} on another host; if that job is gone, "
            "break the lock with force (rom unlock --force)"
        )
    file.unlink()
    return f"{path}: removed the lock of {_describe(holder)}"

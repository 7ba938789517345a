"""Writing an HDF5 file so that a failed write (disk full, quota, file-size limit, I/O error)
leaves no HDF5 file open behind it.

When a write of the HDF5 library itself fails (typically the flush in ``H5Fclose`` on a full
disk), the library keeps the file open with dirty metadata; closing it again, or the library's
own clean-up at interpreter exit, then crashes the process. So the files of a store are
written through a Python file object (h5py's ``fileobj`` driver) that never reports a failed
write to HDF5: it records the first error and drops every write from then on. HDF5 always
closes the file cleanly, and :class:`H5Writer` raises the recorded error afterwards and
removes the half-written file.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import h5py

__all__ = ["GuardedIO", "H5Writer", "one_line"]

logger = logging.getLogger("rom.io")


def one_line(e: BaseException) -> str:
    """``"<type>: <message>"`` of an exception on one line (HDF5 messages span lines)."""
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


class GuardedIO(io.RawIOBase):
    """A binary file for h5py's ``fileobj`` driver whose writes never fail towards HDF5.

    The first ``OSError`` of a write or truncate is kept in :attr:`error`; that write and all
    later ones are dropped (reported as complete), so the file is garbage from then on and
    must be removed by the caller.
    """

    def __init__(self, path: Path, mode: str) -> None:
        super().__init__()
        self._f = open(path, mode, buffering=0)  # closed by close()
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        return self._f.readinto(b)

    def write(self, b) -> int:  # type: ignore[override]
        mv = memoryview(b).cast("B")
        if self.error is None:
            done = 0
            try:
                while done < mv.nbytes:  # a short write (nearly full disk) is continued
                    done += self._f.write(mv[done:])
            except OSError as e:
                self.error = e
        return mv.nbytes

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self._f.truncate(size)
            except OSError as e:
                self.error = e
        return self._f.tell() if size is None else size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            try:
                self._f.close()
            except OSError as e:
                self.error = self.error or e
        super().close()


class H5Writer:
    """An HDF5 file opened for writing (mode ``"w"``: new; ``"r+"``: existing) whose failure
    removes it.

    Use as a context manager; :attr:`file` is the ``h5py.File``. :meth:`check` raises the
    first write error so far (call it between large writes to stop early). On leaving the
    block the file is closed; if the block raised or a write failed, the file is removed and
    the error (the block's, else the ``OSError`` of the failed write) propagates.
    """

    def __init__(self, path: Path | str, mode: str = "w") -> None:
        self.path = Path(path)
        self._io = GuardedIO(self.path, "w+b" if mode == "w" else "r+b")
        try:
            self.file = h5py.File(self._io, mode)
        except BaseException:
            self._io.close()
            self._remove()
            raise

    def check(self) -> None:
        """Raise the first write error so far (an ``OSError``)."""
        if self._io.error is not None:
            raise self._io.error

    def _remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()

    def close(self, discard: bool = False) -> None:
        """Close the file; remove it and raise the write error if one happened (or remove it
        without raising when ``discard``)."""
        try:
            self.file.close()
        except Exception as e:  # unexpected with a GuardedIO; keep the first error
            logger.debug("closing %s failed", self.path, exc_info=True)
            if self._io.error is None:
                self._io.error = OSError(f"could not close {self.path}: {one_line(e)}")
        self._io.close()
        if discard or self._io.error is not None:
            self._remove()
        if not discard:
            self.check()

    def __enter__(self) -> H5Writer:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(discard=exc_type is not None)

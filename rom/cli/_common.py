"""Pieces shared by the sub-commands of ``rom``: the one-line error, rank-0 execution and
output, the logging of a command, output and field checks, argument types."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import shutil
import sys
import tempfile
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mpi4py import MPI

from rom.io import SnapshotStore
from rom.io import StoreError
from rom.io import move_store
from rom.parallel import check_collective

__all__ = [
    "CLIError",
    "ArgParser",
    "on_rank0",
    "echo",
    "log_to_stderr",
    "check_output",
    "check_not_input",
    "atomic_output",
    "field_arg",
    "open_field",
    "store_parser",
    "add_output_arguments",
    "positive_int",
    "nonneg_float",
]


class CLIError(ValueError):
    """A bad option or input of the command line (printed as one line, exit status 2)."""


class ArgParser(argparse.ArgumentParser):
    """An argument parser whose errors become :class:`CLIError` (one line, no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CLIError(message)


def on_rank0(comm: MPI.Comm, fn: Callable[[], Any], *, share: bool = True) -> Any:
    """Run ``fn`` on rank 0 and broadcast its result (``None`` elsewhere unless ``share``);
    an error raises :class:`CLIError` on every rank."""
    result, err = None, None
    if comm.rank == 0:
        try:
            result = fn()
        except (StoreError, OSError, ValueError) as e:
            err = str(e) or type(e).__name__
    if comm.size > 1:
        if share:
            result, err = comm.bcast((result, err), root=0)
        else:
            err = comm.bcast(err, root=0)
    if err is not None:
        raise CLIError(err)
    return result


def echo(comm: MPI.Comm, text: str) -> None:
    """Print ``text`` on rank 0."""
    if comm.rank == 0:
        print(text, flush=True)


@contextlib.contextmanager
def log_to_stderr(level: str, comm: MPI.Comm) -> Iterator[None]:
    """Log the ``rom`` and ``solvers`` loggers to stderr while the command runs: rank 0 at
    ``level``, other ranks errors only; the previous configuration is restored after."""
    lvl = logging.getLevelName(level.upper())
    if not isinstance(lvl, int):
        raise CLIError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved = []
    for name in ("rom", "solvers"):
        log = logging.getLogger(name)
        saved.append((log, log.level))
        log.addHandler(handler)
        log.setLevel(lvl if comm.rank == 0 else logging.ERROR)
    try:
        yield
    finally:
        for log, old in saved:
            log.removeHandler(handler)
            log.setLevel(old)


def check_output(
    path: Path,
    overwrite: bool,
    *,
    store: bool = False,
    inputs: list[Path | None] | None = None,
) -> None:
    """Refuse to replace an existing output unless ``--overwrite`` (same verdict everywhere).

    With ``inputs``, first refuse an output that would overwrite one of them
    (:func:`check_not_input`, whatever ``overwrite`` says).
    """
    if inputs is not None:
        check_not_input(path, inputs, store=store)
    exists = path.exists() or (store and Path(str(path) + ".d").exists())
    if exists and not overwrite:
        raise CLIError(f"{path}: already exists (pass --overwrite to replace it)")
    if not path.parent.is_dir():
        raise CLIError(f"{path.parent}: no such directory")


def _store_paths(path: Path) -> tuple[Path, Path]:
    p = path.resolve()
    return p, p.with_name(p.name + ".d")


def _within(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or inside it (both resolved)."""
    return a == b or b in a.parents


def check_not_input(out: Path, inputs: list[Path | None], *, store: bool = False) -> None:
    """Refuse an output that is an input, or inside an input store's ``.d`` directory, or
    (``store=True``, an output store) whose ``.d`` directory would hold an input; checked
    whatever ``--overwrite`` says."""
    outs = _store_paths(out) if store else (out.resolve(),)
    for inp in inputs:
        if inp is None:
            continue
        ins = _store_paths(inp)
        for o in outs:
            if any(_within(o, i) for i in ins) or (store and any(_within(i, o) for i in ins)):
                raise CLIError(f"{out}: the output would overwrite the input {inp}")


def _publish(kind: str, tmp: Path, out: Path) -> None:
    if kind == "store":
        move_store(tmp, out, overwrite=True)
    elif kind == "file":
        tmp.replace(out)
    else:  # a directory of outputs: move each entry in, replacing one of the same name
        out.mkdir(exist_ok=True)
        for entry in sorted(tmp.iterdir()):
            target = out / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            entry.replace(target)


@contextlib.contextmanager
def atomic_output(out: Path, comm: MPI.Comm, *, kind: str = "file") -> Iterator[Path]:
    """Write an output under a temporary name beside it; move it into place on success only
    (collective: every rank gets the same temporary path).

    ``kind`` is ``"file"`` (one file, renamed over ``out``), ``"store"`` (a snapshot store:
    :func:`rom.io.move_store`) or ``"dir"`` (a directory whose entries are moved into
    ``out``). The temporary directory ``.<name>.*.tmp`` beside ``out`` is removed on an
    error or an interrupt (``KeyboardInterrupt``), so ``out`` is never left half-written.
    Replacing an existing ``out`` is the caller's decision (see :func:`check_output`).
    """
    tmpdir = on_rank0(
        comm, lambda: tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    )
    tmp = Path(tmpdir) if kind == "dir" else Path(tmpdir) / out.name
    try:
        yield tmp
    except BaseException:
        if comm.rank == 0:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    err = None
    if comm.rank == 0:
        try:
            _publish(kind, tmp, out)
        except (OSError, StoreError) as e:
            err = f"{out}: could not move the output into place: {e}"
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
    check_collective(err, comm, CLIError)


def field_arg(store: SnapshotStore, field: str | None) -> str:
    """The field named by ``--field``, or the store's only field when none is given."""
    if field is None:
        if len(store.fields) == 1:
            return store.fields[0]
        raise CLIError(f"{store.path}: the store has fields {list(store.fields)}; pass --field")
    if field not in store.fields:
        raise CLIError(f"{store.path}: no field {field!r} (fields: {list(store.fields)})")
    return field


@contextlib.contextmanager
def open_field(
    path: Path, field: str | None, comm: MPI.Comm
) -> Iterator[tuple[SnapshotStore, str]]:
    """Open the store ``path`` (collective) and resolve ``--field`` in it (:func:`field_arg`);
    yields ``(store, field)`` and closes the store on exit."""
    with SnapshotStore.open(path, comm=comm) as st:
        yield st, field_arg(st, field)


def store_parser(
    sub: Any,
    name: str,
    parents: list[argparse.ArgumentParser],
    help: str,
    *,
    field: bool = True,
    store_help: str = "snapshot store (index file)",
) -> argparse.ArgumentParser:
    """The parser of a sub-command whose first argument is a store (then ``--field``)."""
    s = sub.add_parser(name, parents=parents, help=help)
    s.add_argument("store", type=Path, help=store_help)
    if field:
        s.add_argument("--field", help="field name (optional when the store has one)")
    return s


def add_output_arguments(s: argparse.ArgumentParser, help: str) -> None:
    """``--out PATH`` (required) and ``--overwrite`` (see :func:`check_output`)."""
    s.add_argument("--out", type=Path, required=True, help=help)
    s.add_argument("--overwrite", action="store_true")


def _parse_arg(
    s: str, convert: Callable[[str], Any], accept: Callable[[Any], bool], what: str, syntax: str
) -> Any:
    """``convert(s)`` if it parses (else "expected ``syntax``") and ``accept``s it (else
    "expected ``what``"), as ``argparse.ArgumentTypeError``."""
    try:
        v = convert(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {syntax}, got {s!r}") from None
    if not accept(v):
        raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
    return v


def positive_int(s: str) -> int:
    """Argument type: an integer >= 1."""
    what = "a positive integer"
    return _parse_arg(s, int, lambda v: v >= 1, what, what)


def nonneg_float(s: str) -> float:
    """Argument type: a finite number >= 0."""
    ok = lambda v: math.isfinite(v) and v >= 0  # noqa: E731
    return _parse_arg(s, float, ok, "a finite number >= 0", "a number")

"""The ``rom`` command line: inspect, compress, cluster, export and plot snapshot stores.

Run as ``rom ...``, ``python -m rom.cli ...`` or, collectively, ``mpirun -n P python -m
rom.cli ...`` (every rank reads its owned rows; results do not depend on ``P``)::

    rom info run/thermal/thermal.h5 [--json] [--verify]
    rom compress STORE --field F --method batch|incremental|hapod|randomized
                 [--rel-l2-err E | --l2-err E | --rtol R | --rank N | --eps E] [--chunk C]
                 --out MODES.h5
    rom cluster STORE --field F --n-clusters K [--objective sum|max] --out labels.json
    rom export STORE --field F [--columns 0:10 12] [--basis MODES.h5 [--n-modes N]]
               --out DIR --format vtx|xdmf
    rom plot STORE|summary.json|labels.json --kind sv|errors|clusters|indicator --out FILE.png
    rom merge STORE1 STORE2 ... --out MERGED.h5
    rom unlock STORE [--force]

The command line measures in the Euclidean inner product of the stored rows (no mass matrix
is stored). Logging and progress bars come from rank 0 only. A missing, foreign or corrupt
file or a bad option prints one line ``rom: error: ...`` on stderr and exits with status 2
(``--debug`` shows the traceback instead). An output is written under a temporary name
beside it and moved into place when complete (Ctrl-C or SIGTERM removes it), and never
replaces an input.

Sub-commands that need more than :mod:`rom` come from other packages through the entry-point
group ``rom.commands``: each entry point names a callable ``add_command(subparsers,
parents)`` that adds its parser and sets ``func(args, comm) -> int`` as its default. The
``export`` command is registered that way by :mod:`solvers.export` (it needs dolfinx);
:mod:`rom` never imports :mod:`solvers`. A command's code may use :class:`CLIError`,
:func:`parse_columns`, :func:`field_arg`, :func:`on_rank0`, :func:`echo`,
:func:`positive_int`, :func:`check_not_input`, :func:`atomic_output`, :func:`store_parser`,
:func:`add_output_arguments` and :func:`open_field`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.io import StoreError
from rom.parallel import blas_threads
from rom.parallel import limit_blas_per_rank

from . import _cluster
from . import _compress
from . import _info
from . import _maintenance
from . import _plot
from ._common import ArgParser
from ._common import CLIError
from ._common import add_output_arguments
from ._common import atomic_output
from ._common import check_not_input
from ._common import echo
from ._common import field_arg
from ._common import log_to_stderr
from ._common import on_rank0
from ._common import open_field
from ._common import positive_int
from ._common import store_parser
from ._info import describe_store
from ._info import format_info

__all__ = [
    "main",
    "build_parser",
    "describe_store",
    "format_info",
    "parse_columns",
    "field_arg",
    "on_rank0",
    "echo",
    "positive_int",
    "atomic_output",
    "check_not_input",
    "store_parser",
    "add_output_arguments",
    "open_field",
    "CLIError",
    "COMMAND_GROUP",
]

logger = logging.getLogger(__name__)

EXIT_USAGE = 2

#: Entry-point group of the sub-commands contributed by other packages.
COMMAND_GROUP = "rom.commands"

# sub-commands known to come from an entry point, with what to install when it is missing
_PLUGIN_HINTS = {
    "export": (
        "write columns (snapshots, modes, reconstructions) for ParaView",
        "dolfinx (install the fem extra: pip install -e '.[fem]')",
    ),
}


def parse_columns(specs: list[str] | None, n: int) -> np.ndarray:
    """Column indices from specs such as ``["0:10", "12", "-1", "::5"]`` (numpy slicing).

    Parameters
    ----------
    specs : list of str, or None
        Integers (negative counts from the end) and ``start:stop[:step]`` slices; ``None``
        means every column.
    n : int
        Number of columns available.

    Returns
    -------
    ndarray of int64
        The indices, in the order given (repetitions kept).

    Examples
    --------
    >>> parse_columns(["0:6:2", "-1"], 10).tolist()
    [0, 2, 4, 9]
    """
    if specs is None:
        return np.arange(n, dtype=np.int64)
    out: list[np.ndarray] = []
    for spec in specs:
        for part in spec.split(","):
            part = part.strip()
            try:
                if ":" in part:
                    bits = [int(b) if b.strip() else None for b in part.split(":")]
                    if len(bits) > 3:
                        raise ValueError
                    out.append(np.arange(n, dtype=np.int64)[slice(*bits)])
                else:
                    j = int(part)
                    if not -n <= j < n:
                        raise CLIError(f"column {j} out of range for {n} snapshots")
                    out.append(np.array([j % n], dtype=np.int64))
            except CLIError:
                raise
            except ValueError:
                raise CLIError(
                    f"bad column spec {part!r} (use integers or start:stop[:step])"
                ) from None
    cols = np.concatenate(out) if out else np.zeros(0, np.int64)
    if cols.size == 0:
        raise CLIError(f"the column selection {specs} is empty")
    return cols


# ---------------------------------------------------------------------------- commands
def _missing_command(sub: Any, parents: list, name: str, reason: str) -> None:
    """A stand-in for a sub-command whose package is not installed: it takes any arguments
    and fails with one line saying what to install."""
    what, needs = _PLUGIN_HINTS.get(name, ("(not available)", "the package providing it"))
    s = sub.add_parser(name, parents=parents, help=f"{what} [needs {needs.split(' (')[0]}]")
    s.set_defaults(accepts_any_arguments=True)

    def fail(args: argparse.Namespace, comm: MPI.Comm) -> int:
        raise CLIError(f"rom {name} needs {needs}: {reason}")

    s.set_defaults(func=fail)


def _add_plugin_commands(sub: Any, parents: list, taken: set[str]) -> None:
    """Sub-commands of the entry-point group :data:`COMMAND_GROUP`; an entry point that does
    not load, or a known command that no package provides, becomes a one-line error."""
    found = {ep.name: ep for ep in entry_points(group=COMMAND_GROUP) if ep.name not in taken}
    for name in sorted(set(found) | set(_PLUGIN_HINTS) - taken):
        ep = found.get(name)
        if ep is None:
            _missing_command(sub, parents, name, f"no package provides '{COMMAND_GROUP}:{name}'")
            continue
        try:
            add_command = ep.load()
        except Exception as e:  # a broken plugin must not break the other commands
            _missing_command(sub, parents, name, f"{type(e).__name__}: {e}")
            continue
        add_command(sub, parents)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rom`` command (sub-commands info, compress, cluster,
    plot, merge, unlock, and those of the entry-point group :data:`COMMAND_GROUP`, e.g.
    export)."""
    from rom import __version__

    common = ArgParser(add_help=False)
    common.add_argument(
        "--log-level", default="WARNING", help="logging level on rank 0 (default WARNING)"
    )
    common.add_argument(
        "--debug", action="store_true", help="show the traceback of an error instead of one line"
    )

    p = ArgParser(
        prog="rom",
        description="Inspect, compress, cluster, export and plot snapshot "
        "stores (rom.io). Run under mpirun for a parallel run.",
    )
    p.add_argument("--version", action="version", version=f"rom {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgParser)
    sub.required = True
    for module in (_info, _compress, _cluster, _plot, _maintenance):
        module.add_command(sub, [common])
    _add_plugin_commands(sub, [common], set(sub.choices))
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch system's cancel or time limit) while a command runs: raised like
    Ctrl-C, so that a temporary output is removed (:func:`atomic_output`)."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while a command runs; once the command has
    unwound, the process ends by the signal after all, as it would have without the handler
    (so that ``mpirun`` still sees a rank killed by a signal and ends the others)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise  # not reached: the default action of SIGTERM ends the process
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run the ``rom`` command; returns the exit status (0, or 2 on an error)."""
    comm = MPI.COMM_WORLD
    limit_blas_per_rank()
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        args, extra = build_parser().parse_known_args(argv)
        if extra and not getattr(args, "accepts_any_arguments", False):
            raise CLIError(f"unrecognized arguments: {' '.join(extra)}")
        with log_to_stderr(args.log_level, comm), blas_threads(comm), _sigterm_as_interrupt():
            return int(args.func(args, comm) or 0)
    except (StoreError, OSError, ValueError) as e:
        if debug:
            raise
        if comm.rank == 0:
            msg = " ".join(str(e).split()) or type(e).__name__
            print(f"rom: error: {msg}", file=sys.stderr, flush=True)
        return EXIT_USAGE

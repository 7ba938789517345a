"""JSON form of results: what the case summaries, the benchmarks and the ``rom`` command write.

Every ``cases/`` script writes ``<out>/summary.json`` with the keys ``case``, ``version``,
``created``, ``ranks``, ``args``, ``results``, ``timings_s`` and ``files``; ``rom plot`` reads
it back. :func:`jsonable` turns numpy values, arrays, paths and bytes into plain JSON types.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["jsonable"]


def jsonable(x: Any) -> Any:
    """A copy of ``x`` made of JSON types only.

    Dicts (keys as strings), lists, tuples and arrays recurse; numpy scalars become Python
    numbers; non-finite floats (NaN, inf) become ``None``, since strict JSON has no such
    values; paths become strings and bytes are decoded.

    Examples
    --------
    >>> import numpy as np
    >>> jsonable({"err": np.float64(1e-3), "n": np.arange(2), "bad": float("nan")})
    {'err': 0.001, 'n': [0, 1], 'bad': None}
    """
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, bytes):
        return x.decode(errors="replace")
    if isinstance(x, Path):
        return str(x)
    return x

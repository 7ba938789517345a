"""`rom` works without dolfinx; pyMOR stays out of the core dependencies."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import rom

ROOT = Path(__file__).resolve().parents[1]


def test_rom_imports_without_dolfinx():
    modules = sorted(m.name for m in pkgutil.iter_modules(rom.__path__))
    code = (
        "import sys\n"
        "for name in ('dolfinx', 'dolfinx_solver', 'petsc4py', 'ufl', 'basix'):\n"
        "    sys.modules[name] = None  # any import of them now raises ImportError\n"
        "import importlib, rom\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module('rom.' + m)\n"
        "print('ok', len(sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok")
    assert len(modules) >= 5


def test_core_dependencies_exclude_fem_and_benchmark_peers():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(meta["dependencies"]).lower()
    for pkg in ("dolfinx", "pymor", "petsc"):
        assert pkg not in core
    assert any("dolfinx-solver-real" in d for d in meta["optional-dependencies"]["fem"])
    assert any("pymor" in d for d in meta["optional-dependencies"]["bench"])
    assert meta["requires-python"] == ">=3.12"

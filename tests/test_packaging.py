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
    # every module of every sub-package, in a fresh interpreter where the FEM stack is absent
    modules = sorted(m.name for m in pkgutil.walk_packages(rom.__path__, "rom."))
    code = (
        "import sys\n"
        "for name in ('dolfinx', 'dolfinx_solver', 'petsc4py', 'ufl', 'basix'):\n"
        "    sys.modules[name] = None  # any import of them now raises ImportError\n"
        "import importlib\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "print('ok', len(sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok")
    for sub in ("rom.compression", "rom.local.bases", "rom.adaptive.enrichment", "rom.models"):
        assert sub in modules


def test_core_dependencies_exclude_fem_and_benchmark_peers():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(meta["dependencies"]).lower()
    for pkg in ("dolfinx", "pymor", "petsc"):
        assert pkg not in core
    assert any("dolfinx-solver-real" in d for d in meta["optional-dependencies"]["fem"])
    assert any("pymor" in d for d in meta["optional-dependencies"]["bench"])
    assert meta["requires-python"] == ">=3.12"

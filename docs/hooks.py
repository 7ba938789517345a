"""mkdocs hook: the nav entries that follow the sources.

* ``API reference``: one page per module of ``rom/`` and ``solvers/``
  (``api/<package>.<module>.md``, each holding a mkdocstrings ``::: package.module``
  directive), generated at build time. mkdocstrings reads the sources statically (griffe),
  so ``solvers/`` needs no dolfinx here.
* ``Notebooks``: every case ``cases/*.py`` (jupytext percent format; ``cases/common.py``, the
  helper they share, excepted), served as ``notebooks/<name>.py`` straight from ``cases/``
  (no copy, no symlink), titled by its first Markdown heading; mkdocs-jupyter executes
  them. The case script, its documentation page and its regression test are one file.

A module or case added later appears without editing ``mkdocs.yml``.
"""

from __future__ import annotations

import ast
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

PACKAGES = {"rom": "rom: the library", "solvers": "solvers: dolfinx full-order models"}
NAV_TITLE = "API reference"
NOTEBOOKS_TITLE = "Notebooks"
CASES = "cases"
SHARED = {"common.py"}  # helper modules of the cases, not studies


def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def public_modules(root: Path, pkg: str) -> list[tuple[str, Path]]:
    """``(dotted name, path)`` of every public module and sub-package of ``pkg``.

    Private modules (``_name.py``) are left out: their public names are re-exported by their
    package and documented on its page.
    """
    out = []
    for path in sorted((root / pkg).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
            if len(parts) == 1:
                continue  # the top package: its names are documented in their modules
        if any(p.startswith("_") for p in parts):
            continue
        out.append((".".join(parts), path))
    return out


def _modules(config) -> dict[str, list[tuple[str, str]]]:
    """Per package, ``(module, first docstring line)`` for every public module."""
    out = {}
    for pkg in PACKAGES:
        mods = []
        for name, path in public_modules(_root(config), pkg):
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            mods.append((name, doc.strip().splitlines()[0] if doc else ""))
        out[pkg] = mods
    return out


def case_files(root: Path) -> list[Path]:
    """The studies of ``cases/``: one jupytext file each, executed into a notebook page."""
    return [p for p in sorted((root / CASES).glob("*.py")) if p.name not in SHARED]


def _notebooks(config) -> list[dict[str, str]]:
    entries = []
    for path in case_files(_root(config)):
        title = path.stem
        for line in path.read_text().splitlines():
            if line.startswith("# # "):
                title = line[4:].strip()
                break
        entries.append({title: f"notebooks/{path.name}"})
    return entries


def on_config(config):
    notebooks = _notebooks(config)
    for i, item in enumerate(config.nav or []):
        if isinstance(item, dict) and NOTEBOOKS_TITLE in item and notebooks:
            config.nav[i] = {NOTEBOOKS_TITLE: notebooks}
    mods = _modules(config)
    nav = [{"Overview": "api/index.md"}]
    for pkg, title in PACKAGES.items():
        nav.append({title: [{m: f"api/{m}.md"} for m, _ in mods[pkg]]})
    for i, item in enumerate(config.nav or []):
        if isinstance(item, dict) and NAV_TITLE in item:
            config.nav[i] = {NAV_TITLE: nav}
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns them into notebook pages
def on_files(files, config):
    for path in case_files(_root(config)):
        files.append(
            File.generated(config, f"notebooks/{path.name}", abs_src_path=str(path.resolve()))
        )
    mods = _modules(config)
    lines = [
        "# API reference",
        "",
        "Generated from the numpy-style docstrings (one page per module).",
        "",
    ]
    for pkg, title in PACKAGES.items():
        lines += [f"## {title}", "", "| module | summary |", "|---|---|"]
        lines += [f"| [`{m}`]({m}.md) | {summary.replace('|', '/')} |" for m, summary in mods[pkg]]
        lines.append("")
    files.append(File.generated(config, "api/index.md", content="\n".join(lines)))
    for pkg in PACKAGES:
        for m, _ in mods[pkg]:
            files.append(File.generated(config, f"api/{m}.md", content=f"# `{m}`\n\n::: {m}\n"))
    return files

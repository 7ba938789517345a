"""griffe extension: render the reStructuredText roles of our numpy docstrings in Markdown.

The docstrings follow numpydoc, whose math and cross-references are reST:
``:math:`x``` and ``.. math::`` blocks become arithmatex math (``\\(x\\)``, ``\\[x\\]``),
``:func:`rom.compression._pod``` and friends become code spans. Loaded by mkdocstrings (``mkdocs.yml``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_INLINE_MATH = re.compile(r":math:`([^`]+)`")
_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|ref|doc):`~?([^`]+)`")


def rst_to_markdown(text: str) -> str:
    """Convert the reST math and cross-reference roles of a docstring to Markdown."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^(\s*)\.\. math::\s*(.*)$", line)
        if not m:
            out.append(line)
            i += 1
            continue
        indent, first = m.group(1), m.group(2).strip()
        body = [first] if first else []
        i += 1
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)
        ):
            body.append(lines[i].strip())
            i += 1
        while body and not body[-1]:
            body.pop()
        while body and not body[0]:
            body.pop(0)
        out += ["", f"{indent}\\[", *(f"{indent}{b}" for b in body), f"{indent}\\]", ""]
    text = "\n".join(out)
    text = _INLINE_MATH.sub(lambda mt: f"\\({mt.group(1)}\\)", text)
    return _ROLE.sub(lambda mt: f"`{mt.group(1)}`", text)


class RstRoles(griffe.Extension):
    """Rewrite every docstring once, when griffe loads its object."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)

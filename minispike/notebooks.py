"""The numbered examples as Jupyter notebooks: percent-format ``.py`` files to nbformat 4 JSON.

Host-side file conversion (floor 4, like ``report.py``): standard library only, no jupytext or
nbformat needed.

The percent format (understood by VS Code, PyCharm, Spyder and jupytext) is a plain Python
file cut into cells by marker comments:

    # %% [markdown]                 a text cell: every line below is a comment, "# " + markdown
    # # 05 - A small spiking network
    # What you will learn: ...

    # %%                            a code cell: ordinary Python, up to the next marker
    import numpy as np
    x = np.arange(3)

Lines before the first marker, if any, form a code cell; blank lines around a cell are
dropped. A markdown line loses its leading ``"# "`` (or a lone ``"#"``).

A notebook (nbformat 4, https://nbformat.readthedocs.io) is one JSON object:

    {"nbformat": 4, "nbformat_minor": 5,
     "metadata": {"kernelspec": {...}, "language_info": {"name": "python"}},
     "cells": [{"cell_type": "markdown", "id": "...", "metadata": {}, "source": ["line\\n", ...]},
               {"cell_type": "code", "id": "...", "metadata": {}, "source": [...],
                "execution_count": null, "outputs": []}, ...]}

``python -m minispike notebooks --out DIR`` writes one ``NN_name.ipynb`` per example into DIR,
and a copy of ``examples/_shared.py`` beside them (every example imports it from its own
folder, so a notebook opened in DIR finds it). The notebooks import ``minispike`` itself, so run
them where minispike is installed (``pip install -e .`` in the checkout).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

__all__ = ["split_cells", "to_notebook", "find_examples", "write_notebooks"]

MARKER = re.compile(r"^# %%(?P<rest>.*)$")
MARKDOWN = re.compile(r"^\s*\[(markdown|md)\]")
EXAMPLE_GLOB = "[0-9][0-9]_*.py"
NBFORMAT, NBFORMAT_MINOR = 4, 5


def split_cells(text: str):
    """[(kind, source)] of a percent-format file: kind "markdown" or "code", source without the marker."""
    cells, kind, lines = [], "code", []

    def close():
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if lines:
            cells.append((kind, "\n".join(lines)))

    for line in text.splitlines():
        m = MARKER.match(line)
        if m:
            close()
            kind, lines = ("markdown" if MARKDOWN.match(m.group("rest")) else "code"), []
        elif kind == "markdown":
            lines.append(line[2:] if line.startswith("# ") else line[1:] if line.startswith("#") else line)
        else:
            lines.append(line)
    close()
    return cells


def _source_lines(source: str):
    """nbformat's multi-line string: a list of lines, each but the last ending in a newline."""
    lines = source.split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


def to_notebook(text: str, name: str = "example") -> dict:
    """The nbformat 4 notebook (a dict ready for ``json.dump``) of a percent-format file."""
    cells = []
    for i, (kind, source) in enumerate(split_cells(text)):
        cell = {"cell_type": kind, "id": f"{name}-{i}"[-64:], "metadata": {}, "source": _source_lines(source)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    return {"nbformat": NBFORMAT, "nbformat_minor": NBFORMAT_MINOR, "cells": cells,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"}}}


def find_examples(examples_dir=None) -> Path:
    """The folder of the numbered examples: ``examples_dir``, else the checkout's ``examples/``
    (beside this package), else ``./examples``. Raises FileNotFoundError (one line) if none holds one."""
    if examples_dir is not None:
        candidates = [Path(examples_dir)]
    else:
        candidates = [Path(__file__).resolve().parents[1] / "examples", Path.cwd() / "examples"]
    for d in candidates:
        if d.is_dir() and any(d.glob(EXAMPLE_GLOB)):
            return d
    where = " or ".join(str(d) for d in candidates)
    raise FileNotFoundError(f"no numbered examples (NN_name.py) found in {where}; "
                            f"give the examples folder of a minispike checkout with --examples DIR")


def write_notebooks(out, examples_dir=None):
    """Write one ``.ipynb`` per example (and ``_shared.py``) into ``out``; return the notebook paths."""
    src = find_examples(examples_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for py in sorted(src.glob(EXAMPLE_GLOB)):
        nb = to_notebook(py.read_text(encoding="utf-8"), name=py.stem)
        path = out / f"{py.stem}.ipynb"
        with open(path, "w", encoding="utf-8") as f:
            json.dump(nb, f, indent=1, ensure_ascii=False)
            f.write("\n")
        paths.append(path)
    shared = src / "_shared.py"
    if shared.is_file() and shared.resolve() != (out / shared.name).resolve():
        shutil.copyfile(shared, out / shared.name)
    return paths

"""Writes each notebook from its paired percent-format ``.py`` (the reviewed source).

    python colab/sync.py            # rewrite colab/*.ipynb from colab/*.py
The test suite checks the pairs are in sync with ``notebook_from_py``.
"""
from __future__ import annotations

import json
import pathlib
import re


def notebook_from_py(source: str) -> dict:
    """Cells split at ``# %%`` lines; ``# %% [markdown]`` cells have their ``# `` stripped."""
    cells = []
    for index, chunk in enumerate(re.split(r"^# %%", source, flags=re.M)[1:]):
        header, _, body = chunk.partition("\n")
        body = body.strip("\n")
        if header.strip() == "[markdown]":
            text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            cells.append({"cell_type": "markdown", "id": f"cell-{index}", "metadata": {},
                          "source": text.splitlines(keepends=True)})
        else:
            cells.append({"cell_type": "code", "id": f"cell-{index}", "metadata": {}, "execution_count": None,
                          "outputs": [], "source": body.splitlines(keepends=True)})
    return {
        "cells": cells,
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


if __name__ == "__main__":
    for py in sorted(pathlib.Path(__file__).parent.glob("*.py")):
        if py.name == "sync.py":
            continue
        nb = notebook_from_py(py.read_text())
        py.with_suffix(".ipynb").write_text(json.dumps(nb, indent=1) + "\n")
        print("wrote", py.with_suffix(".ipynb"))

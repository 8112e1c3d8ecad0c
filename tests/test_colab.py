"""The Colab notebooks: in sync with their paired .py, and they run (smoke setting)."""
import json
import pathlib
import sys

import pytest

COLAB = pathlib.Path(__file__).resolve().parents[1] / "colab"
sys.path.insert(0, str(COLAB))
from sync import notebook_from_py  # noqa: E402

NOTEBOOKS = sorted(p for p in COLAB.glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["quickstart.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_matches_paired_py(path):
    expected = notebook_from_py(path.with_suffix(".py").read_text())
    assert json.loads(path.read_text())["cells"] == expected["cells"], "run: python colab/sync.py"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_smoke_setting(path, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("POLRL_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(COLAB)}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "model:" in printed and "answer:" in printed

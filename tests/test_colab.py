"""The Colab notebooks: in sync with their paired .py, and they run (smoke setting)."""
import json
import pathlib
import re
import sys

import pytest

COLAB = pathlib.Path(__file__).resolve().parents[1] / "colab"
sys.path.insert(0, str(COLAB))
from sync import notebook_from_py  # noqa: E402

NOTEBOOKS = sorted(p for p in COLAB.glob("*.ipynb"))

# What each notebook's smoke run must print (regular expressions over its text outputs): the lines
# that show each part of the tour ran to the end, and the invariants it checks out loud.
PRINTED = {
    "quickstart.ipynb": [r"model:", r"answer:"],
    "preference.ipynb": [
        r"phase 'dpo_offline': \d+ pairs in the file",
        r"group 0 .* chosen '[^']*' +\(reward 1\) +rejected '[^']*' +\(reward 0\)",  # the file's pair: chosen scored 1
        r"phase 'online_dpo': \d+-token answers, G = \d+",
        r"offline: final pref_accuracy [0-9.]+, pref_margin -?[0-9.]+",
        r"on-policy: final pref_accuracy [0-9.]+, pref_margin -?[0-9.]+",
    ],
    "structured_rollouts.ipynb": [
        r"treepo with collector 'tree': \d+ leaves per prompt",
        r"slot 0 prompt .* (eos|length) ",
        r"the same tokens as polrl\.rollout\.sample: True",  # the hand-written program is group sampling
        r"source_b +int32",
        r"tree_node_bd",
        r"row \d+: group 0 on_policy +version \d+",
        r"row \d+: group 0 expert +version \d+ reward 1 ",  # the appended label, scored right
        r"decoded \d+ tokens for the \d+ tokens of the sampled rows",
        r"last TreePO step: reward_mean [0-9.]+",
    ],
    "control.ipynb": [
        r"observation \(4, 4\) actions 2 time limit 500",
        r"cartpole_ppo \{'env_steps': \d+, 'num_seeds': 2",
        r"mpe_spread_mappo \{'env_steps': \d+, 'num_seeds': 2",
        r"cartpole_ppo: \d+ updates, final return",
        r"mpe_spread_mappo: \d+ updates, final return",
    ],
    "diffusion.ipynb": [
        r"model: \d+ parameters, \d+ real ids \+ mask id \d+",
        r"t = 0\.50: ",
        r"K = +1: ELBO -?[0-9.]+ +spread over 8 keys",
        r"K = 256: ELBO -?[0-9.]+ +spread over 8 keys",
        r"exact \(all 7 mask sets\): -?[0-9.]+",
        r"step 1/\d+: .*\(committed positions \[\d",
        r"the same tokens as polrl\.diffusion\.sampler\.unmask: True",  # the written-out loop is the sampler
        r"held-out accuracy: initial [0-9.]+, after SFT [0-9.]+, after RL [0-9.]+",
        r"K = 2: bgpo \d+ bytes .* elbo_ratio \d+ bytes",
        r"K = 8: bgpo \d+ bytes .* elbo_ratio \d+ bytes",
        r"rl: \d+ steps, final reward_mean [0-9.]+",
    ],
}
# Notebooks whose last code cell shows its figure (an image output, whatever the matplotlib backend).
PLOTTED = {"preference.ipynb", "structured_rollouts.ipynb", "control.ipynb", "diffusion.ipynb"}


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["control.ipynb", "diffusion.ipynb", "preference.ipynb", "quickstart.ipynb",
                                           "structured_rollouts.ipynb"]
    assert sorted(PRINTED) == [p.name for p in NOTEBOOKS]


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
    code = [c for c in nb.cells if c.cell_type == "code"]
    printed = "".join(o.get("text", "") for c in code for o in c.get("outputs", []))
    missing = [marker for marker in PRINTED[path.name] if not re.search(marker, printed)]
    assert not missing, f"{path.name} did not print {missing}"
    if path.name in PLOTTED:
        assert any("image/png" in o.get("data", {}) for o in code[-1].get("outputs", [])), "no figure shown"

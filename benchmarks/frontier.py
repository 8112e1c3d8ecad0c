"""Diffusion policies, detectability and the court game: the companion benchmarks' tables in one page.

Each section is its companion script's ``render`` of every record in its committed raw results:

* ``frontier_bgpo``        BGPO on the masked-diffusion LM (``polrl.diffusion``): update memory against
                           the number of Monte-Carlo masks K, and arithmetic accuracy before and after RL;
* ``frontier_diffusion_preference``  SePPO and DRAGON on that model against BGPO;
* ``frontier_pgd``         policy-guided trajectory diffusion as synthetic data for offline RL on CartPole;
* ``frontier_ct2``         the CT² detectors (``polrl.detectability``) on a policy before and after GRPO,
                           with and without the detectability penalty as a reward term;
* ``frontier_volleyball``  MAPPO, IPPO and self-play on the volleyball court (``polrl.control.volleyball``),
                           scored against a scripted and a random team.

Usage (from the repository root; reruns nothing, rewrites ``benchmarks/frontier.md``)::

  python benchmarks/frontier.py
"""
from __future__ import annotations

import importlib
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.companion import RESULTS  # noqa: E402
from benchmarks.provenance import read  # noqa: E402

COMPANIONS = {
    "frontier_bgpo": ("BGPO (arXiv 2510.11683) on a masked-diffusion language model, arithmetic: the linear lower "
                      "bound taken one Monte-Carlo mask at a time against the non-linear ELBO-ratio objective "
                      "(`benchmarks/frontier_bgpo.py`):"),
    "frontier_diffusion_preference": ("SePPO (arXiv 2410.05255) and DRAGON (arXiv 2504.15217) on the same masked-diffusion "
                                      "model, the sequence log-ratio replaced by the ELBO difference on shared masks, "
                                      "against BGPO from the same SFT warm start at the same RL steps "
                                      "(`benchmarks/frontier_diffusion_preference.py`):"),
    "frontier_pgd": ("Policy-Guided Diffusion (arXiv 2404.06356) on CartPole's offline data: an IQL agent on real "
                     "transitions alone, and on real + synthetic ones from a trajectory diffusion model, unguided and "
                     "guided by the target policy's action likelihood (`benchmarks/frontier_pgd.py`):"),
    "frontier_ct2": ("CT² detectability (arXiv 2310.05030) on the chain task: each detector's AUROC between the "
                     "policy's answers and the demonstrations (1: always told apart, ½: indistinguishable) and the AI "
                     "Detectability Index, before and after GRPO, with and without the penalty, with GRPO's advantage "
                     "divided by the group's std (`grpo…`) and not (`grpo_mean…`) (`benchmarks/frontier_ct2.py`):"),
    "frontier_volleyball": ("VolleyBots-style court (arXiv 2502.01932): MAPPO, IPPO and self-play, 2 vs 2 (and MAPPO "
                            "1 vs 1), scored against a scripted and a random team (`benchmarks/frontier_volleyball.py`):"),
}


def render() -> str:
    lines = ["# Diffusion policies, detectability and the court game", "",
             "Written by `python benchmarks/frontier.py` from the companion scripts' raw results in "
             "`benchmarks/results/` (each table says its seeds; mean ± std over seeds)."]
    for script, what in COMPANIONS.items():
        records = read(RESULTS / f"{script}.jsonl")
        if records:
            table = importlib.import_module(f"benchmarks.{script}").render(records)
            lines += ["", what, "", table.rstrip("\n")]
    return "\n".join(lines) + "\n"


def main() -> None:
    path = ROOT / "benchmarks" / "frontier.md"
    path.write_text(render())
    print(path.read_text())


if __name__ == "__main__":
    main()

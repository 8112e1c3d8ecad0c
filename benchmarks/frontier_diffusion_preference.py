"""SePPO and DRAGON against BGPO on a masked-diffusion LM (``polrl.diffusion``), same warm start, same steps.

"SePPO: Semi-Policy Preference Optimization for Diffusion Alignment" (arXiv 2410.05255) and
"DRAGON: Distributional Rewards Optimize Diffusion Generative Models" (arXiv 2504.15217) align
diffusion generators with DPO-style losses; ``polrl.diffusion.preference`` runs them on ELBO
log-ratios. This companion compares them with BGPO ("Boundary-Guided Policy Optimization for
Memory-efficient RL of Diffusion Large Language Models", arXiv 2510.11683) on arithmetic:

* for every seed, ``benchmarks/frontier_bgpo.py``'s SFT warm start (``experiments/arithmetic_bgpo.py``,
  trained once under ``--warm_workdir``, reused when already there) is copied into each arm's run;
* each arm then takes ``--steps`` RL steps of its experiment (``bgpo``: experiments/arithmetic_bgpo.py;
  ``seppo``: experiments/arithmetic_diffusion_seppo.py; ``dragon``:
  experiments/arithmetic_diffusion_dragon.py; the same model, task, prompts per step, samples per
  prompt, sampler and K = 8 masks); recorded are the held-out greedy accuracy of the warm start
  and the final policy, and the mean exact-match reward of the step's samples over the first and
  last 10 RL steps (SePPO's samples are the pool member's, the others' the policy's).

One JSON line per run is appended to ``--results``; runs already there are not run again; a
markdown table is printed (``render``).

Usage (from the repository root)::

  python benchmarks/frontier_diffusion_preference.py --seeds 0 1 2 --steps 60
"""
from __future__ import annotations

import argparse
import importlib
import pathlib
import shutil
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import companion, frontier_bgpo  # noqa: E402
from benchmarks.provenance import provenance  # noqa: E402
from polrl.diffusion import train  # noqa: E402
from polrl.train.metrics import read_metrics  # noqa: E402

EXPERIMENTS = {"bgpo": "arithmetic_bgpo", "seppo": "arithmetic_diffusion_seppo",
               "dragon": "arithmetic_diffusion_dragon"}
ARMS = tuple(EXPERIMENTS)
WINDOW = 10


def run_arm(arm: str, seed: int, steps: int, warm: pathlib.Path, base: pathlib.Path) -> dict:
    workdir = base / f"{arm}_seed{seed}_steps{steps}"
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.copytree(warm / "checkpoints" / "sft", workdir / "checkpoints" / "sft")
    shutil.copy(warm / "metrics.jsonl", workdir / "metrics.jsonl")
    config = importlib.import_module(f"experiments.{EXPERIMENTS[arm]}").get_config()
    config.seed, config.total_steps = seed, steps
    start = time.time()
    summary = train.run(config, str(workdir))
    rl = [r for r in read_metrics(str(workdir)) if r["phase"] == "rl"]
    return {"kind": "training", "arm": arm, "seed": seed, "budget": steps, "num_mc": config.num_mc,
            "warm_accuracy": summary["sft"]["eval/accuracy"], "accuracy": summary["rl"]["eval/accuracy"],
            "reward_first": statistics.mean(r["reward_mean"] for r in rl[:WINDOW]),
            "reward_last": statistics.mean(r["reward_mean"] for r in rl[-WINDOW:]),
            "seconds": round(time.time() - start, 1), **provenance()}


def render(records: list[dict]) -> str:
    """Accuracy and sample reward per run, then the mean ± std over seeds of each arm and budget."""
    rows = frontier_bgpo.training_rows(records, ARMS, ("warm_accuracy", "accuracy", "reward_first", "reward_last"))
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=60, help="RL steps of every arm after the shared warm start")
    p.add_argument("--warm_workdir", default="/tmp/polrl_bench_frontier_bgpo",
                   help="where frontier_bgpo.py keeps (or this script trains) the per-seed SFT warm starts")
    p.add_argument("--workdir", default="/tmp/polrl_bench_frontier_diffusion_preference")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "frontier_diffusion_preference.jsonl"))
    args = p.parse_args(argv)
    arms = companion.parse_arms(args.arms, ARMS)
    base = pathlib.Path(args.workdir)
    done = companion.run_missing(args.results, arms, args.seeds, args.steps,
                                 lambda arm, seed, warm: run_arm(arm, seed, args.steps, warm, base),
                                 ("arm", "seed", "seconds", "warm_accuracy", "accuracy"),
                                 prepare_seed=lambda seed: frontier_bgpo.train_warm_start(
                                     seed, pathlib.Path(args.warm_workdir)))
    print(render(done))


if __name__ == "__main__":
    main()

"""INSPO against GRPO on embedded arithmetic: the same GRPO with and without the co-evolving
instruction population.

For every seed both arms start from that seed's SFT warm start (the ``sft_warmup`` phase of
``experiments/arithmetic_grpo.py``, trained once under ``--workdir`` and copied into each run, as
``benchmarks/algorithms.py`` does) and run ``--steps`` GRPO steps with the same prompts, learning
rate and KL:

* ``grpo``   ``experiments/arithmetic_grpo.py`` (the bare prompts);
* ``inspo``  ``experiments/arithmetic_inspo.py``: every question under an instruction drawn from the
             population by softmax(w / τ_s), w the running mean reward of the instruction, the 2
             lowest slots refilled every 20 steps with the policy's own proposals written after a
             failed row (arXiv 2512.01945; ``polrl.algorithms.inspo``).

Each run is evaluated every ``--eval_every`` steps on the 500 held-out prompts (greedy exact match);
its accuracy is the mean of its last ``LAST_EVALS`` evaluations. For inspo that is the policy under
the population's best instruction (``eval/accuracy``, the paper's inference setting); the record also
holds the same policy on the bare prompts (``eval/bare/accuracy``, ``bare_evals``). Both arms hold
the mean training accuracy over their steps; the inspo record holds the means over its steps of the
population size and the best instruction's score, and the proposal acceptance at the last step. One
JSON line per run is appended to ``--results``; runs already there are not run again; a markdown
table is printed (``render``).

Usage (from the repository root)::

  nice -n 10 python benchmarks/guided_inspo.py --seeds 0 1 2 --steps 200
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import algorithms as algorithms_bench, companion  # noqa: E402
from benchmarks.claims import last_evals_mean  # noqa: E402
from benchmarks.provenance import provenance  # noqa: E402
from benchmarks.stats import mean_std  # noqa: E402

ARMS = ("grpo", "inspo")
LAST_EVALS = 3
POPULATION_KEYS = ("inspo/population", "inspo/best_score", "inspo/score_spread")
SERIES = ("accuracy", "reward_mean", "kl", *POPULATION_KEYS)


def step_means(steps_log: list[dict], keys) -> dict:
    """The mean over a run's logged steps of each of ``keys`` it logged."""
    return {k: statistics.mean(float(x[k]) for x in steps_log if k in x) for k in keys if any(k in x for x in steps_log)}


def bare_accuracy(run: dict) -> float:
    """The mean of a run's last ``LAST_EVALS`` evaluations on the bare prompts (grpo's are its only ones)."""
    return last_evals_mean({"evals": run.get("bare_evals") or run["evals"]}, LAST_EVALS)


def run_arm(arm: str, seed: int, steps: int, eval_every: int, base: pathlib.Path) -> dict:
    r = algorithms_bench.run_one(arm, seed, steps, base, family="arithmetic", eval_every=eval_every)
    records = r.pop("records")
    steps_log = [x for x in records if "loss" in x]
    evals = [x for x in records if "eval/accuracy" in x]
    r["evals"] = [{"step": x["step"], "phase": x["phase"], "eval/accuracy": x["eval/accuracy"]} for x in evals]
    if arm == "inspo":
        r["bare_evals"] = [{"step": x["step"], "phase": x["phase"], "eval/accuracy": x["eval/bare/accuracy"]}
                           for x in evals]
        r["warm_accuracy"] = evals[0]["eval/bare/accuracy"]
        r["acceptance"] = float(steps_log[-1]["inspo/acceptance"])
    r["series"] = {k: [round(float(x[k]), 5) if k in x else None for x in steps_log]
                   for k in SERIES if any(k in x for x in steps_log)}
    r["train_accuracy"] = statistics.mean(float(x["accuracy"]) for x in steps_log)
    r["population"] = step_means(steps_log, POPULATION_KEYS)
    return {**r, "arm": arm, "budget": steps, **provenance()}


def render(done: list[dict]) -> str:
    """A markdown table: one row per run, then the seed mean ± std of each arm."""
    rows = ["| arm | seed | steps | warm start (bare) | held-out accuracy | held-out, bare prompts | training accuracy | "
            "population | best score | acceptance |", "|" + "---|" * 10]
    pct = lambda x: "–" if x is None else f"{100 * x:.1f}%"
    num = lambda x: "–" if x is None else f"{x:.2f}"
    pop = lambda r, k: r["population"].get(k)
    for r in sorted(done, key=lambda r: (ARMS.index(r["arm"]), r["budget"], r["seed"])):
        rows.append(f"| {r['arm']} | {r['seed']} | {r['budget']} | {pct(r['warm_accuracy'])} | "
                    f"{pct(last_evals_mean(r, LAST_EVALS))} | {pct(bare_accuracy(r))} | {pct(r['train_accuracy'])} | "
                    f"{num(pop(r, 'inspo/population'))} | {num(pop(r, 'inspo/best_score'))} | "
                    f"{pct(r.get('acceptance'))} |")
    for arm in ARMS:
        for budget in sorted({r["budget"] for r in done if r["arm"] == arm}):
            runs = [r for r in done if r["arm"] == arm and r["budget"] == budget]
            if len(runs) > 1:
                col = lambda f, scale=100.0, digits=1: mean_std([f(r) for r in runs], scale, digits)
                inspo = arm == "inspo"
                rows.append(f"| {arm} (mean ± std) | {len(runs)} seeds | {budget} | {col(lambda r: r['warm_accuracy'])} | "
                            f"{col(lambda r: last_evals_mean(r, LAST_EVALS))} | {col(bare_accuracy)} | "
                            f"{col(lambda r: r['train_accuracy'])} | "
                            f"{col(lambda r: pop(r, 'inspo/population'), 1.0, 2) if inspo else '–'} | "
                            f"{col(lambda r: pop(r, 'inspo/best_score'), 1.0, 2) if inspo else '–'} | "
                            f"{col(lambda r: r['acceptance']) if inspo else '–'} |")
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=200, help="GRPO steps of every arm")
    p.add_argument("--eval_every", type=int, default=50)
    p.add_argument("--workdir", default="/tmp/polrl_bench_guided_inspo")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "guided_inspo.jsonl"))
    args = p.parse_args(argv)
    arms = companion.parse_arms(args.arms, ARMS)
    base = algorithms_bench.prepare(args.workdir)
    done = companion.run_missing(args.results, arms, args.seeds, args.steps,
                                 lambda arm, seed, _: run_arm(arm, seed, args.steps, args.eval_every, base),
                                 ("arm", "seed", "seconds", "accuracy", "train_accuracy", "acceptance"))
    print(render(done))


if __name__ == "__main__":
    main()

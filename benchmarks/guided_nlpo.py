"""NLPO against PPO on embedded arithmetic: the same PPO with and without the mask model's top-p mask.

For every seed both arms start from that seed's SFT warm start with a value head (the
``sft_warmup`` phase of ``experiments/arithmetic_ppo.py``, trained once under ``--workdir`` and
copied into each run, as ``benchmarks/algorithms.py`` does) and run ``--steps`` PPO steps with the
same prompts, learning rate, KL and epochs × minibatches:

* ``ppo``   ``experiments/arithmetic_ppo.py`` (the paper's baseline: PPO on the unmasked policy);
* ``nlpo``  ``experiments/arithmetic_nlpo.py``: the same PPO on ``masked_groups`` — every token drawn
            from the policy renormalised over the top-0.9 nucleus of a copy of the policy refreshed
            every 5 steps, the loss on those masked log-probs (arXiv 2210.01241;
            ``polrl.algorithms.nlpo``).

Each run is evaluated every ``--eval_every`` steps on the 500 held-out prompts (greedy exact match
of the policy without the mask); its accuracy is the mean of its last ``LAST_EVALS`` evaluations.
Both arms hold the mean training accuracy and token entropy over their steps; the nlpo record also
holds the means over its steps of ``mask/kept_tokens`` (size of the kept set), ``mask/kept_mass``
(the policy's mass on it) and ``mask/argmax_masked_frac`` (positions where the policy's most likely
token is masked). One JSON line per run is appended to ``--results``; runs already there are not
run again; a markdown table is printed (``render``).

Usage (from the repository root)::

  python benchmarks/guided_nlpo.py --seeds 0 1 2 --steps 600
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

ARMS = ("ppo", "nlpo")
LAST_EVALS = 3
MASK_KEYS = ("mask/kept_tokens", "mask/kept_mass", "mask/argmax_masked_frac")
# per-step metrics kept as series
SERIES = ("accuracy", "reward_mean", "entropy", "kl", *MASK_KEYS)


def step_means(steps_log: list[dict], keys) -> dict:
    """The mean over a run's logged steps of each of ``keys`` it logged."""
    return {k: statistics.mean(float(x[k]) for x in steps_log if k in x) for k in keys if any(k in x for x in steps_log)}


def run_arm(arm: str, seed: int, steps: int, eval_every: int, base: pathlib.Path) -> dict:
    r = algorithms_bench.run_one(arm, seed, steps, base, family="arithmetic", eval_every=eval_every)
    records = r.pop("records")
    steps_log = [x for x in records if "loss" in x]
    r["evals"] = [{"step": x["step"], "phase": x["phase"], "eval/accuracy": x["eval/accuracy"]}
                  for x in records if "eval/accuracy" in x]
    r["series"] = {k: [round(float(x[k]), 5) if k in x else None for x in steps_log]
                   for k in SERIES if any(k in x for x in steps_log)}
    r["train_accuracy"] = statistics.mean(float(x["accuracy"]) for x in steps_log)
    r["mask"] = step_means(steps_log, MASK_KEYS)
    return {**r, "arm": arm, "budget": steps, **provenance()}


def render(done: list[dict]) -> str:
    """A markdown table: one row per run, then the seed mean ± std of each arm."""
    rows = ["| arm | seed | steps | warm start | held-out accuracy | training accuracy | token entropy | kept tokens | "
            "kept mass | argmax masked |", "|" + "---|" * 10]
    pct = lambda x: "–" if x is None else f"{100 * x:.1f}%"
    num = lambda x: "–" if x is None else f"{x:.2f}"
    mask = lambda r, k: r["mask"].get(k)
    for r in sorted(done, key=lambda r: (ARMS.index(r["arm"]), r["budget"], r["seed"])):
        rows.append(f"| {r['arm']} | {r['seed']} | {r['budget']} | {pct(r['warm_accuracy'])} | "
                    f"{pct(last_evals_mean(r, LAST_EVALS))} | {pct(r['train_accuracy'])} | {num(r['entropy'])} | "
                    f"{num(mask(r, 'mask/kept_tokens'))} | {pct(mask(r, 'mask/kept_mass'))} | "
                    f"{pct(mask(r, 'mask/argmax_masked_frac'))} |")
    for arm in ARMS:
        for budget in sorted({r["budget"] for r in done if r["arm"] == arm}):
            runs = [r for r in done if r["arm"] == arm and r["budget"] == budget]
            if len(runs) > 1:
                col = lambda f, scale=100.0, digits=1: mean_std([f(r) for r in runs], scale, digits)
                rows.append(f"| {arm} (mean ± std) | {len(runs)} seeds | {budget} | {col(lambda r: r['warm_accuracy'])} | "
                            f"{col(lambda r: last_evals_mean(r, LAST_EVALS))} | {col(lambda r: r['train_accuracy'])} | "
                            f"{col(lambda r: r['entropy'], 1.0, 2)} | {col(lambda r: mask(r, 'mask/kept_tokens'), 1.0, 2)} | "
                            f"{col(lambda r: mask(r, 'mask/kept_mass'))} | "
                            f"{col(lambda r: mask(r, 'mask/argmax_masked_frac'))} |")
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=600, help="PPO steps of every arm (benchmarks/algorithms.py's budget)")
    p.add_argument("--eval_every", type=int, default=50)
    p.add_argument("--workdir", default="/tmp/polrl_bench_guided_nlpo")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "guided_nlpo.jsonl"))
    args = p.parse_args(argv)
    arms = companion.parse_arms(args.arms, ARMS)
    base = algorithms_bench.prepare(args.workdir)
    done = companion.run_missing(args.results, arms, args.seeds, args.steps,
                                 lambda arm, seed, _: run_arm(arm, seed, args.steps, args.eval_every, base),
                                 ("arm", "seed", "seconds", "accuracy", "mask"))
    print(render(done))


if __name__ == "__main__":
    main()

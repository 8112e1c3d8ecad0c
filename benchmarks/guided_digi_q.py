"""Digi-Q on the chain task: a TD critic on the frozen warm start's features and best-of-N
extraction, against filtered behaviour cloning without a critic.

Every arm is ``experiments/chain_digi_q.py`` from the seed's chain_grpo SFT warm start, with the
same steps, prompts, trajectories per prompt, states and learning rate; they differ only in what
the actor trains on:

* ``digi_q``       the critic's TD targets (r + γ(1 − done)·V̄(s′), soft-updated target), and the
                   best of N candidate steps per state where A = max twin Q − max twin V > 0.1;
* ``digi_q_mc``    the same extraction with the Monte-Carlo critic (cross-entropy to
                   1[the trajectory's return > 0]), the paper's other target;
* ``filtered_bc``  no critic (it still trains, for its diagnostics): every step of the warm start's
                   right trajectories (rejection-sampling fine-tuning), the paper's baseline.

Recorded per (arm, seed): the held-out greedy exact match of every evaluation (the first is the
warm start), the critic's Q / V losses (each batch's losses before the critic trains on it) and
the fraction of states the actor trains on (weight 1), averaged over the last tenth of the steps.
One JSON line per run is appended to ``--results``; runs already there are not run again; the
markdown table is printed.

Usage (from the repository root)::

  python benchmarks/guided_digi_q.py                      # every arm, seeds 0 1 2
  python benchmarks/guided_digi_q.py --seeds 0            # one seed
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import algorithms as algorithms_bench  # noqa: E402
from benchmarks.claims import last_evals_mean, paired_runs  # noqa: E402
from benchmarks.provenance import append, read  # noqa: E402
from benchmarks.stats import mean_std  # noqa: E402

ARMS = {
    "digi_q": {},
    "digi_q_mc": {"algorithm_kwargs.critic_target": "mc"},
    "filtered_bc": {"algorithm_kwargs.actor": "successful_behaviour"},
}
DIAGNOSTICS = ("critic/q_loss", "critic/v_loss", "actor/weight_fraction", "actor/behaviour_chosen", "transitions/outcome")
LAST_EVALS = 3


def tail_means(records: list[dict], keys=DIAGNOSTICS, frac: float = 0.1) -> dict:
    """The mean of each key over the last ``frac`` of the logged training steps that carry it."""
    out = {}
    for key in keys:
        values = [r[key] for r in records if key in r and "loss" in r]
        if values:
            tail = values[-max(1, int(len(values) * frac)):]
            out[key] = sum(tail) / len(tail)
    return out


def run_arm(arm: str, seed: int, steps: int, eval_every: int, base: pathlib.Path) -> dict:
    r = algorithms_bench.run_one("digi_q", seed, steps, base, overrides=ARMS[arm], tag=f"_{arm}", family="chain",
                                 eval_every=eval_every)
    records = r.pop("records")
    evals = [{"step": e["step"], "eval/accuracy": e["eval/accuracy"]} for e in records if "eval/accuracy" in e]
    return {"arm": arm, "seed": seed, "steps": steps, "warm_accuracy": r["warm_accuracy"], "evals": evals,
            "diagnostics": tail_means(records), "seconds": r["seconds"],
            **{k: r[k] for k in ("devices", "cpu", "cores", "commit", "date")}}


def render(done: list[dict]) -> str:
    runs = {(r["arm"], r["seed"]): r for r in done}
    seeds = sorted({r["seed"] for r in done})
    lines = [
        "| arm | seeds | warm start % | final accuracy % | vs filtered_bc (points) | Q loss | V loss | weight-1 states | "
        "best = behaviour's step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        rs = [runs[(arm, s)] for s in seeds if (arm, s) in runs]
        if not rs:
            continue
        diag = lambda k: [r["diagnostics"].get(k) for r in rs]
        _, diffs = paired_runs(runs, arm, "filtered_bc", last_evals_mean)
        lines.append(
            f"| `{arm}` | {', '.join(str(r['seed']) for r in rs)} | {mean_std([r['warm_accuracy'] for r in rs], 100)} | "
            f"{mean_std([last_evals_mean(r, LAST_EVALS) for r in rs], 100)} | "
            f"{mean_std(diffs, 100) if arm != 'filtered_bc' else '–'} | {mean_std(diag('critic/q_loss'), 1, 4)} | "
            f"{mean_std(diag('critic/v_loss'), 1, 4)} | {mean_std(diag('actor/weight_fraction'), 1, 3)} | "
            f"{mean_std(diag('actor/behaviour_chosen'), 1, 3) if arm != 'filtered_bc' else '–'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=200, help="Digi-Q phase steps per run")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--workdir", default="/tmp/polrl_bench_guided_digi_q")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "guided_digi_q.jsonl"))
    args = p.parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise SystemExit(f"--arms: unknown {unknown}; use some of {list(ARMS)}")
    base = algorithms_bench.prepare(args.workdir)
    done = [r for r in read(args.results) if r["steps"] == args.steps]
    have = {(r["arm"], r["seed"]) for r in done}
    for seed in args.seeds:
        for arm in arms:
            if (arm, seed) in have:
                continue
            record = run_arm(arm, seed, args.steps, args.eval_every, base)
            append(args.results, record)
            done.append(record)
            print(json.dumps({k: record[k] for k in ("arm", "seed", "warm_accuracy", "seconds")}), flush=True)
    print(f"Digi-Q on the chain task, {args.steps} steps from the chain_grpo SFT warm start; held-out greedy exact "
          f"match, mean of the last {LAST_EVALS} evaluations; diagnostics over the last tenth of the steps.\n")
    print(render(done))


if __name__ == "__main__":
    main()

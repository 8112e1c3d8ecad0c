"""GHPO against GRPO on the chain task: hints for the prompts the policy cannot solve, same budget.

For every seed both arms start from that seed's SFT warm start (the ``sft_warmup`` phase of
``experiments/chain_grpo.py``, trained once under ``--workdir`` and copied into each run, as
``benchmarks/algorithms.py`` does) and run ``--steps`` GRPO steps at the same learning rate,
prompts and loss:

* ``grpo``  ``experiments/chain_grpo.py`` (the baseline);
* ``ghpo``  ``experiments/chain_ghpo.py``: the same GRPO on ``hinted_groups`` — every prompt none of
            whose 8 samples is right is drawn again after the first 25%, then 50%, then 75% of
            its labelled scratchpad (arXiv 2507.10628; ``polrl.collectors.hints``);
* ``ghpo_labels``  ``experiments/chain_ghpo_labels.py``, the label control: the same prompts (none
            of whose 8 samples is right) get their labelled answer in place of one sample, no hint
            (``polrl.collectors.unsolved_labels``) — the labels GHPO reads, without its mechanism.

Each run is evaluated every ``--eval_every`` steps on the 500 held-out prompts (greedy exact match,
no hints); its accuracy is the mean of its last ``LAST_EVALS`` evaluations. The ghpo record also
holds, over its steps, the mean fraction of groups drawn with a hint (``hinted_frac``), the
fraction of the hinted groups that the hint made solvable (``hinted_solved``, pooled over steps:
Σ hinted_frac · solved_frac / Σ hinted_frac), the hinted rows' accuracy (``guided_accuracy``,
pooled the same way) and the fraction of groups left unsolved after the last stage
(``unsolved_frac``); the ghpo_labels record the mean fraction of groups given the label
(``labelled_frac``); every arm holds the mean training accuracy of the policy's own samples. One
JSON line per run is appended to ``--results``; runs already there are not run again; a markdown
table is printed (``render``).

Usage (from the repository root)::

  python benchmarks/guided_ghpo.py --seeds 0 1 2 --steps 400
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

ARMS = ("grpo", "ghpo", "ghpo_labels")
LAST_EVALS = 3
# per-step metrics kept as series
SERIES = ("accuracy", "reward_mean", "hint/hinted_frac", "hint/solved_frac", "hint/unsolved_frac", "guided_accuracy",
          "offpolicy/zero_variance_frac", "label/injected_frac")


def hint_summary(steps_log: list[dict]) -> dict:
    """The module docstring's hint (or label) figures over a run's logged steps (empty for a run
    with neither)."""
    labelled = [float(x["label/injected_frac"]) for x in steps_log if "label/injected_frac" in x]
    if labelled:
        return {"labelled_frac": statistics.mean(labelled)}
    hinted = [float(x["hint/hinted_frac"]) for x in steps_log if "hint/hinted_frac" in x]
    if not hinted:
        return {}
    pooled = lambda key: (sum(float(x["hint/hinted_frac"]) * float(x[key]) for x in steps_log)
                          / max(sum(hinted), 1e-12))
    return {"hinted_frac": statistics.mean(hinted), "hinted_solved": pooled("hint/solved_frac"),
            "guided_accuracy": pooled("guided_accuracy"),
            "unsolved_frac": statistics.mean(float(x["hint/unsolved_frac"]) for x in steps_log)}


def run_arm(arm: str, seed: int, steps: int, eval_every: int, base: pathlib.Path) -> dict:
    r = algorithms_bench.run_one(arm, seed, steps, base, family="chain", eval_every=eval_every)
    records = r.pop("records")
    steps_log = [x for x in records if "loss" in x]
    r["evals"] = [{"step": x["step"], "phase": x["phase"], "eval/accuracy": x["eval/accuracy"]}
                  for x in records if "eval/accuracy" in x]
    r["series"] = {k: [round(float(x[k]), 5) if k in x else None for x in steps_log]
                   for k in SERIES if any(k in x for x in steps_log)}
    r["train_accuracy"] = statistics.mean(float(x["accuracy"]) for x in steps_log)
    r["hints"] = hint_summary(steps_log)
    return {**r, "arm": arm, "budget": steps, **provenance()}


def render(done: list[dict]) -> str:
    """A markdown table: one row per run, then the seed mean ± std of each arm."""
    rows = ["| arm | seed | steps | warm start | held-out accuracy | training accuracy (own samples) | groups hinted | "
            "hinted groups solved | hinted rows right | unsolved after hints | groups given the label |", "|" + "---|" * 11]
    pct = lambda x: "–" if x is None else f"{100 * x:.1f}%"
    hint = lambda r, k: r["hints"].get(k)
    for r in sorted(done, key=lambda r: (ARMS.index(r["arm"]), r["budget"], r["seed"])):
        rows.append(f"| {r['arm']} | {r['seed']} | {r['budget']} | {pct(r['warm_accuracy'])} | "
                    f"{pct(last_evals_mean(r, LAST_EVALS))} | {pct(r['train_accuracy'])} | {pct(hint(r, 'hinted_frac'))} | "
                    f"{pct(hint(r, 'hinted_solved'))} | {pct(hint(r, 'guided_accuracy'))} | "
                    f"{pct(hint(r, 'unsolved_frac'))} | {pct(hint(r, 'labelled_frac'))} |")
    for arm in ARMS:
        for budget in sorted({r["budget"] for r in done if r["arm"] == arm}):
            runs = [r for r in done if r["arm"] == arm and r["budget"] == budget]
            if len(runs) > 1:
                col = lambda f: mean_std([f(r) for r in runs], 100.0, 1)
                rows.append(f"| {arm} (mean ± std) | {len(runs)} seeds | {budget} | {col(lambda r: r['warm_accuracy'])} | "
                            f"{col(lambda r: last_evals_mean(r, LAST_EVALS))} | {col(lambda r: r['train_accuracy'])} | "
                            f"{col(lambda r: hint(r, 'hinted_frac'))} | {col(lambda r: hint(r, 'hinted_solved'))} | "
                            f"{col(lambda r: hint(r, 'guided_accuracy'))} | {col(lambda r: hint(r, 'unsolved_frac'))} | "
                            f"{col(lambda r: hint(r, 'labelled_frac'))} |")
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=400, help="GRPO steps of every arm (chain_grpo's budget)")
    p.add_argument("--eval_every", type=int, default=50)
    p.add_argument("--workdir", default="/tmp/polrl_bench_guided_ghpo")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "guided_ghpo.jsonl"))
    args = p.parse_args(argv)
    arms = companion.parse_arms(args.arms, ARMS)
    base = algorithms_bench.prepare(args.workdir)
    done = companion.run_missing(args.results, arms, args.seeds, args.steps,
                                 lambda arm, seed, _: run_arm(arm, seed, args.steps, args.eval_every, base),
                                 ("arm", "seed", "seconds", "accuracy", "hints"))
    print(render(done))


if __name__ == "__main__":
    main()

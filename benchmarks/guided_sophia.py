"""SOPHIA against GRPO on the chain task, same prompts per step and learning rate.

For every seed both arms start from that seed's SFT warm start (the ``sft_warmup`` phase of
``experiments/chain_grpo.py``, trained once under ``--workdir`` and copied into each run, as
``benchmarks/algorithms.py`` does) and run ``--steps`` steps with the same 16 prompts × 8 own samples
per step and learning rate:

* ``sophia``  ``experiments/chain_sophia.py``: each prompt's group also gets 2 scratchpads of the
              frozen large teacher, each continued 4 times by the policy (its final total), the
              scratchpad credited with the mean outcome of its continuations, the teacher's tokens
              weighted by min(π_old/μ, 2) (arXiv 2507.16814; ``polrl.collectors.with_borrowed_reasoning``);
* ``grpo``    ``experiments/chain_grpo.py``: the on-policy baseline.

The teacher of a seed is its ``experiments/chain_sft_large.py`` run (copied from
``--teacher_from``/large_seed<seed> when that run is complete, else trained here). Each run is
evaluated every ``--eval_every`` steps on the 500 held-out prompts (greedy exact match, the policy
alone); its accuracy is the mean of its last ``LAST_EVALS`` evaluations. The sophia records also
hold, over their steps, the mean accuracy of the semi-off-policy rows (``teacher_accuracy``), the
propagated reward of the scratchpads, their length, the share without a "#" and the importance
weights' mean and truncated share. One JSON line per run is appended to ``--results``; runs
already there are not run again; a markdown table is printed (``render``).

Usage (from the repository root)::

  python benchmarks/guided_sophia.py --seeds 0 1 2 --steps 100 --eval_every 25
"""
from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import algorithms as algorithms_bench, companion  # noqa: E402
from benchmarks.claims import last_evals_mean  # noqa: E402
from benchmarks.guided_distill import teacher_accuracy  # noqa: E402
from benchmarks.provenance import provenance  # noqa: E402
from benchmarks.stats import mean_std  # noqa: E402

ARMS = ("sophia", "grpo")
LAST_EVALS = 3
SEMI = ("teacher_accuracy", "sophia/reasoning_reward_mean", "sophia/borrowed_tokens", "sophia/no_marker_frac",
        "correction/ratio_mean", "correction/truncated_frac")
SERIES = ("accuracy", "reward_mean", "entropy") + SEMI


def run_arm(arm: str, seed: int, steps: int, eval_every: int, base: pathlib.Path, large: pathlib.Path) -> dict:
    overrides = {"models.large.path": str(large / "checkpoints" / "sft_warmup")} if arm == "sophia" else {}
    r = algorithms_bench.run_one(arm, seed, steps, base, overrides=overrides, family="chain", eval_every=eval_every)
    return {**companion.summarised(r, SERIES), "arm": arm, "budget": steps, "teacher_accuracy": teacher_accuracy(large),
            **provenance()}


def render(records: list[dict]) -> str:
    """A markdown table: one row per run, the seed mean ± std of each arm, and the paired difference
    SOPHIA − GRPO."""
    pct = lambda x: "–" if x is None else f"{100 * x:.1f}%"
    mean = lambda r, k: r["means"].get(k)
    rows = ["| arm | seed | steps | large teacher | warm start | held-out accuracy | training accuracy (own samples) | "
            "semi-off-policy rows right | importance weight (mean) | weights truncated |", "|" + "---|" * 10]
    for r in sorted(records, key=lambda r: (ARMS.index(r["arm"]), r["seed"])):
        weight = mean(r, "correction/ratio_mean")
        rows.append(f"| {r['arm']} | {r['seed']} | {r['budget']} | {pct(r['teacher_accuracy'])} | {pct(r['warm_accuracy'])} | "
                    f"{pct(last_evals_mean(r, LAST_EVALS))} | {pct(mean(r, 'accuracy'))} | "
                    f"{pct(mean(r, 'teacher_accuracy') if r['arm'] == 'sophia' else None)} | "
                    f"{'–' if weight is None else f'{weight:.3f}'} | {pct(mean(r, 'correction/truncated_frac'))} |")
    for arm in ARMS:
        runs = [r for r in records if r["arm"] == arm]
        if len(runs) > 1:
            col = lambda f: mean_std([f(r) for r in runs], 100.0, 1)
            rows.append(f"| {arm} (mean ± std) | {len(runs)} seeds | | {col(lambda r: r['teacher_accuracy'])} | "
                        f"{col(lambda r: r['warm_accuracy'])} | {col(lambda r: last_evals_mean(r, LAST_EVALS))} | "
                        f"{col(lambda r: mean(r, 'accuracy'))} | | | |")
    rows += companion.paired_sentence(records, "sophia", "grpo", "SOPHIA", "GRPO",
                                      lambda r: last_evals_mean(r, LAST_EVALS))
    return "\n".join(rows)


def main(argv=None) -> None:
    companion.teacher_main(argv, __doc__, "guided_sophia", ARMS, run_arm, render)


if __name__ == "__main__":
    main()

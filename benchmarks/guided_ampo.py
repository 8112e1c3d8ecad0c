"""AMPO against GRPO and against a single-teacher AMPO on the chain task, same budget.

For every seed all arms start from that seed's SFT warm start (the ``sft_warmup`` phase of
``experiments/chain_grpo.py``, trained once under ``--workdir`` and copied into each run, as
``benchmarks/algorithms.py`` does) and run ``--steps`` steps with the same prompts per step (16 × 8
samples) and learning rate:

* ``ampo``         ``experiments/chain_ampo.py``: the groups none of whose 8 samples is right get up to
                   2 right answers of a pool of two frozen teachers, ranked by the policy's
                   comprehension of them (arXiv 2510.02227; ``polrl.collectors.with_multi_guidance``);
* ``ampo_single``  the same with the pool reduced to the large teacher (at most one teacher row per
                   group): the single-teacher ablation;
* ``grpo``         ``experiments/chain_grpo.py``: the paper's on-policy baseline.

The teachers of a seed: ``large`` = its ``experiments/chain_sft_large.py`` run (copied from
``--teacher_from``/large_seed<seed> when that run is complete, else trained here), ``small`` = its
chain_grpo warm start (the student's own starting point). Each run is evaluated every
``--eval_every`` steps on the 500 held-out prompts (greedy exact match, the policy alone); its
accuracy is the mean of its last ``LAST_EVALS`` evaluations. The ampo records also hold, over
their steps, the mean fraction of groups with no right sample (``unsolved_frac``), of groups given
teacher rows (``injected_frac``), and each teacher's share of the injected rows and accuracy on the
step's prompts. One JSON line per run is appended to ``--results``; runs already there are not run
again; a markdown table is printed (``render``).

Usage (from the repository root)::

  python benchmarks/guided_ampo.py --seeds 0 1 2 --steps 200
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

ARMS = ("ampo", "ampo_single", "grpo")
# arm → (noun of experiments/chain_<noun>.py, overrides besides the teachers' paths)
CONFIGS = {"ampo": ("ampo", {}), "ampo_single": ("ampo", {"algorithm_kwargs.teachers": ("large",)}),
           "grpo": ("grpo", {})}
LAST_EVALS = 3
GUIDANCE = ("guidance/unsolved_frac", "guidance/injected_frac", "guidance/teacher_rows_frac",
            "guidance/large_share", "guidance/small_share", "guidance/large_accuracy", "guidance/small_accuracy",
            "guidance/large_comprehension", "guidance/small_comprehension")
SERIES = ("accuracy", "reward_mean", "teacher_accuracy", "teacher_prob_mean", "entropy") + GUIDANCE


def run_arm(arm: str, seed: int, steps: int, eval_every: int, base: pathlib.Path, large: pathlib.Path) -> dict:
    noun, changes = CONFIGS[arm]
    teachers = {"models.large.path": str(large / "checkpoints" / "sft_warmup"),
                "models.small.path": str(algorithms_bench._warm_start_dir(base, seed, False) / "checkpoints" / "sft_warmup")}
    if noun == "ampo":  # the small teacher is the seed's warm start: trained before the run reads it
        algorithms_bench._warm_start(base, seed, False, "chain")
    tag = "" if arm == noun else f"_{arm.split('_', 1)[1]}"
    r = algorithms_bench.run_one(noun, seed, steps, base, overrides={**changes, **(teachers if noun == "ampo" else {})},
                                 tag=tag, family="chain", eval_every=eval_every)
    return {**companion.summarised(r, SERIES), "arm": arm, "budget": steps, "teacher_accuracy": teacher_accuracy(large),
            **provenance()}


def render(records: list[dict]) -> str:
    """A markdown table: one row per run, the seed mean ± std of each arm, and the paired differences
    AMPO − GRPO and AMPO − single-teacher AMPO."""
    pct = lambda x: "–" if x is None else f"{100 * x:.1f}%"
    mean = lambda r, k: r["means"].get(k)
    rows = ["| arm | seed | steps | large teacher | warm start | held-out accuracy | training accuracy (own samples) | "
            "groups unsolved | groups given teacher rows | large teacher's share |", "|" + "---|" * 10]
    for r in sorted(records, key=lambda r: (ARMS.index(r["arm"]), r["seed"])):
        rows.append(f"| {r['arm']} | {r['seed']} | {r['budget']} | {pct(r['teacher_accuracy'])} | {pct(r['warm_accuracy'])} | "
                    f"{pct(last_evals_mean(r, LAST_EVALS))} | {pct(mean(r, 'accuracy'))} | "
                    f"{pct(mean(r, 'guidance/unsolved_frac'))} | {pct(mean(r, 'guidance/injected_frac'))} | "
                    f"{pct(mean(r, 'guidance/large_share'))} |")
    for arm in ARMS:
        runs = [r for r in records if r["arm"] == arm]
        if len(runs) > 1:
            col = lambda f: mean_std([f(r) for r in runs], 100.0, 1)
            rows.append(f"| {arm} (mean ± std) | {len(runs)} seeds | | {col(lambda r: r['teacher_accuracy'])} | "
                        f"{col(lambda r: r['warm_accuracy'])} | {col(lambda r: last_evals_mean(r, LAST_EVALS))} | "
                        f"{col(lambda r: mean(r, 'accuracy'))} | {col(lambda r: mean(r, 'guidance/unsolved_frac'))} | "
                        f"{col(lambda r: mean(r, 'guidance/injected_frac'))} | {col(lambda r: mean(r, 'guidance/large_share'))} |")
    for base, name in (("grpo", "GRPO"), ("ampo_single", "single-teacher AMPO")):
        rows += companion.paired_sentence(records, "ampo", base, "AMPO", name, lambda r: last_evals_mean(r, LAST_EVALS))
    return "\n".join(rows)


def main(argv=None) -> None:
    companion.teacher_main(argv, __doc__, "guided_ampo", ARMS, run_arm, render)


if __name__ == "__main__":
    main()

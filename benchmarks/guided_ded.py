"""DED's teacher selection against each teacher of its pool on the programs task, same budget.

For every seed the student is that seed's SFT warm start (the ``sft_warmup`` phase of
``experiments/programs_grpo.py``, trained once under ``--workdir`` and copied into each run, as
``benchmarks/algorithms.py`` does) and the pool is the seed's two SFT teachers, trained here:
``large`` = ``experiments/programs_sft_large.py`` (4 layers, d_model 256) and ``small`` =
``experiments/programs_sft_small.py`` (the student's model trained three times longer). Every arm
runs ``--steps`` steps of ``experiments/programs_ded.py`` (32 prompts per step, up to 4 distinct
right teacher programs per prompt, SFT at lr 1e-3):

* ``ded``        the teacher chosen by the quick distillation test on the first 4 steps
                 (arXiv 2508.09883; ``polrl.collectors.with_distilled_corpus``);
* ``ded_large``  the corpus of the large teacher, no test;
* ``ded_small``  the corpus of the small teacher, no test.

The paper's claim on teachers: the benchmark score of a teacher alone does not say which teacher
distils best, and the student-side test picks a teacher at least as good. Here the comparison is
DED against the arm of the teacher with the higher held-out score (the choice by benchmark), paired
by seed, and whether the probe picked the teacher whose arm ended higher. Each run is evaluated
every ``--eval_every`` steps on the 500 held-out prompts (greedy, every unit test passed, the
student alone); its accuracy is the mean of its last ``LAST_EVALS`` evaluations. A teacher's
accuracy is its own held-out evaluation at the end of its SFT. One JSON line per run is appended
to ``--results``; runs already there are not run again; a markdown table is printed (``render``).

Usage (from the repository root)::

  python benchmarks/guided_ded.py --seeds 0 1 2 --steps 200
"""
from __future__ import annotations

import argparse
import importlib
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import algorithms as algorithms_bench, companion  # noqa: E402
from benchmarks.claims import last_evals_mean  # noqa: E402
from benchmarks.guided_distill import teacher_accuracy  # noqa: E402
from benchmarks.provenance import provenance  # noqa: E402
from benchmarks.stats import mean_std  # noqa: E402

ARMS = ("ded", "ded_large", "ded_small")
TEACHERS = ("large", "small")
# arm → overrides of experiments/programs_ded.py besides the teachers' paths
CONFIGS = {"ded": {}, "ded_large": {"algorithm_kwargs.teachers": ("large",), "algorithm_kwargs.select_steps": 0},
           "ded_small": {"algorithm_kwargs.teachers": ("small",), "algorithm_kwargs.select_steps": 0}}
LAST_EVALS = 3
SERIES = ("loss", "ded/teacher", "ded/large_gain", "ded/small_gain", "corpus/teacher_accuracy", "corpus/solved_frac",
          "corpus/distinct_right", "corpus/rows_frac", "corpus/distance_mean", "response_length")


def teacher_runs(seed: int, base: pathlib.Path) -> dict[str, pathlib.Path]:
    """The seed's finished teacher runs under ``base`` (``teacher_<name>_seed<seed>``), trained
    when missing."""
    out = {}
    for name in TEACHERS:
        run = base / f"teacher_{name}_seed{seed}"
        if teacher_accuracy(run) is None:
            config = importlib.import_module(f"experiments.programs_sft_{name}").get_config()
            config.seed = seed
            algorithms_bench._run(config, run)
        out[name] = run
    return out


def run_arm(arm: str, seed: int, steps: int, eval_every: int, base: pathlib.Path, teachers: dict) -> dict:
    paths = {f"models.{name}.path": str(run / "checkpoints" / "sft_warmup") for name, run in teachers.items()}
    tag = arm[len("ded"):]
    r = algorithms_bench.run_one("ded", seed, steps, base, overrides={**CONFIGS[arm], **paths}, tag=tag,
                                 family="programs", eval_every=eval_every)
    record = companion.summarised(r, SERIES)
    pool = [n for n in TEACHERS if n in (CONFIGS[arm].get("algorithm_kwargs.teachers") or TEACHERS)]
    chosen = pool[int(record["series"]["ded/teacher"][-1])]
    return {**record, "arm": arm, "budget": steps, "chosen": chosen,
            "teacher_accuracy": {name: teacher_accuracy(run) for name, run in teachers.items()}, **provenance()}


def benchmark_choice(r: dict) -> str:
    """The teacher with the higher held-out accuracy of the record's seed (ties: the large one)."""
    acc = r["teacher_accuracy"]
    return max(TEACHERS, key=lambda name: (acc[name], name == "large"))


def render(records: list[dict]) -> str:
    """A markdown table: one row per run, the seed mean ± std of each arm, then DED against the
    benchmark's choice of teacher and the probe's agreement with the arms' outcome, per seed."""
    pct = lambda x: "–" if x is None else f"{100 * x:.1f}%"
    mean = lambda r, k: r["means"].get(k)
    by = {(r["arm"], r["seed"]): r for r in records}
    rows = ["| arm | seed | steps | teachers' accuracy (large / small) | teacher used | warm start | held-out accuracy | "
            "teacher's sample accuracy | distinct right programs per prompt | corpus rows filled |", "|" + "---|" * 10]
    for r in sorted(records, key=lambda r: (ARMS.index(r["arm"]), r["seed"])):
        acc = r["teacher_accuracy"]
        rows.append(f"| {r['arm']} | {r['seed']} | {r['budget']} | {pct(acc['large'])} / {pct(acc['small'])} | "
                    f"{r['chosen']} | {pct(r['warm_accuracy'])} | {pct(last_evals_mean(r, LAST_EVALS))} | "
                    f"{pct(mean(r, 'corpus/teacher_accuracy'))} | {mean(r, 'corpus/distinct_right'):.2f} | "
                    f"{pct(mean(r, 'corpus/rows_frac'))} |")
    for arm in ARMS:
        runs = [r for r in records if r["arm"] == arm]
        if len(runs) > 1:
            col = lambda f, scale=100.0, digits=1: mean_std([f(r) for r in runs], scale, digits)
            rows.append(f"| {arm} (mean ± std) | {len(runs)} seeds | | {col(lambda r: r['teacher_accuracy']['large'])} / "
                        f"{col(lambda r: r['teacher_accuracy']['small'])} | | {col(lambda r: r['warm_accuracy'])} | "
                        f"{col(lambda r: last_evals_mean(r, LAST_EVALS))} | "
                        f"{col(lambda r: mean(r, 'corpus/teacher_accuracy'))} | "
                        f"{col(lambda r: mean(r, 'corpus/distinct_right'), 1.0, 2)} | "
                        f"{col(lambda r: mean(r, 'corpus/rows_frac'))} |")
    seeds = sorted(s for (arm, s) in by if arm == "ded" and all((a, s) in by for a in ARMS))
    if seeds:
        score = lambda r: last_evals_mean(r, LAST_EVALS)
        diffs = [score(by["ded", s]) - score(by[f"ded_{benchmark_choice(by['ded', s])}", s]) for s in seeds]
        best = {s: max(TEACHERS, key=lambda n: score(by[f"ded_{n}", s])) for s in seeds}
        gains = {s: {n: by["ded", s]["series"][f"ded/{n}_gain"][-1] for n in TEACHERS} for s in seeds}
        rows += ["", f"DED − the corpus of the teacher with the higher held-out score, paired by seed "
                     f"({', '.join(map(str, seeds))}): {mean_std(diffs, 100.0, 1)} points; DED ahead on "
                     f"{sum(d > 0 for d in diffs)} of {len(diffs)}.",
                 "", "Per seed: the probe's mean gains (large / small, points of sampled accuracy of the distilled "
                     "copy over the student), its choice, the benchmark's choice, and the teacher whose arm ended "
                     "higher: " + "; ".join(
                         f"seed {s}: {100 * gains[s]['large']:+.1f} / {100 * gains[s]['small']:+.1f}, "
                         f"{by['ded', s]['chosen']}, {benchmark_choice(by['ded', s])}, {best[s]}" for s in seeds) + ".",
                 "", f"Different right programs per prompt among the teacher's 8 samples: "
                     f"{mean_std([by['ded', s]['means']['corpus/distinct_right'] for s in seeds], 1.0, 2)} (DED's "
                     f"corpus keeps up to 4): both teachers were trained on the canonical programs and seldom write a "
                     f"second right one, so the diversity rule has little to choose from, and the paper's claim for diverse "
                     f"trajectories is not checkable with this pool."]
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=200, help="main-phase steps of every arm")
    p.add_argument("--eval_every", type=int, default=50)
    p.add_argument("--workdir", default="/tmp/polrl_bench_guided_ded")
    p.add_argument("--results", default=str(companion.RESULTS / "guided_ded.jsonl"))
    args = p.parse_args(argv)
    chosen = companion.parse_arms(args.arms, ARMS)
    base = algorithms_bench.prepare(args.workdir)
    done = companion.run_missing(
        args.results, chosen, args.seeds, args.steps,
        lambda arm, seed, teachers: run_arm(arm, seed, args.steps, args.eval_every, base, teachers),
        ("arm", "seed", "seconds", "accuracy", "chosen", "teacher_accuracy"),
        prepare_seed=lambda seed: teacher_runs(seed, base))
    print(render([r for r in done if r["budget"] == args.steps]))


if __name__ == "__main__":
    main()

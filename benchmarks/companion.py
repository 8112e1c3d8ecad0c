"""The loop every guided-benchmark companion script shares: run each (arm, seed) its results file
lacks at the requested budget, append each record as it finishes, and return every record."""
from __future__ import annotations

import json
import pathlib
import statistics
from typing import Any, Callable, Sequence

from benchmarks.provenance import append, read

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def parse_arms(text: str, known: Sequence[str]) -> list[str]:
    """The comma-separated ``--arms``; SystemExit naming the unknown ones."""
    arms = [a.strip() for a in text.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(known))
    if unknown:
        raise SystemExit(f"--arms: unknown {unknown}; use some of {list(known)}")
    return arms


def run_missing(path: str, arms: Sequence[str], seeds: Sequence[int], budget: int,
                run: Callable[[str, int, Any], dict], shown: Sequence[str],
                prepare_seed: Callable[[int], Any] = lambda seed: None) -> list[dict]:
    """Runs ``run(arm, seed, prepared)`` for every (arm, seed) without a record of ``budget`` in
    ``path`` (``prepared = prepare_seed(seed)``, called only for seeds with a missing arm),
    appends each record and prints its ``shown`` fields; returns the file's records plus the new."""
    done = read(path)
    have = {(r["arm"], r["seed"], r.get("budget")) for r in done}
    for seed in seeds:
        missing = [arm for arm in arms if (arm, seed, budget) not in have]
        if not missing:
            continue
        prepared = prepare_seed(seed)
        for arm in missing:
            record = run(arm, seed, prepared)
            append(path, record)
            done.append(record)
            print(json.dumps({k: record.get(k) for k in shown}), flush=True)
    return done


def records(script: str) -> list[dict]:
    """The records of ``benchmarks/results/<script>.jsonl``, one per (arm, seed, budget): the last."""
    last = {(r["arm"], r["seed"], r.get("budget")): r for r in read(str(RESULTS / f"{script}.jsonl"))}
    return list(last.values())


def runs(script: str) -> dict:
    """``{(arm, seed): record}`` of a companion's results, at each arm's largest budget (empty when absent)."""
    by_arm_seed = {}
    for r in sorted(records(script), key=lambda r: r.get("budget") or 0):
        by_arm_seed[(r["arm"], r["seed"])] = r
    return by_arm_seed


def paired_sentence(records: list[dict], arm: str, base: str, arm_name: str, base_name: str,
                    score: Callable[[dict], float]) -> list[str]:
    """``["", "<arm> − <base>, held-out accuracy, paired by seed (…): Δ points; <arm> ahead on n of N."]``
    over the seeds both arms ran (empty when none did)."""
    from benchmarks.claims import paired_runs
    from benchmarks.stats import mean_std

    seeds, diffs = paired_runs({(r["arm"], r["seed"]): r for r in records}, arm, base, score)
    if not seeds:
        return []
    return ["", f"{arm_name} − {base_name}, held-out accuracy, paired by seed ({', '.join(map(str, seeds))}): "
                f"{mean_std(diffs, 100.0, 1)} points; {arm_name} ahead on {sum(d > 0 for d in diffs)} of {len(diffs)}."]


def teacher_main(argv, doc: str, name: str, arms: Sequence[str], run_arm: Callable, render: Callable) -> None:
    """The command line of a chain-task companion whose arms read a seed's large teacher
    (``guided_distill.teacher_run``) and start from the seed's chain warm start: ``--arms --seeds
    --steps --eval_every --workdir --teacher_from --warm_from --results``; runs what is missing and
    prints ``render`` of the records at ``--steps``."""
    import argparse

    from benchmarks import algorithms as algorithms_bench
    from benchmarks.guided_distill import student_warm_start, teacher_run

    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(arms))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=200, help="main-phase steps of every arm")
    p.add_argument("--eval_every", type=int, default=50)
    p.add_argument("--workdir", default=f"/tmp/polrl_bench_{name}")
    p.add_argument("--teacher_from", default="/tmp/polrl_bench_guided",
                   help="where finished large-teacher runs large_seed<seed> are copied from (benchmarks/guided.py's workdir)")
    p.add_argument("--warm_from", default="",
                   help="where finished student warm starts warm_seed<seed> are copied from ('' = train them here)")
    p.add_argument("--results", default=str(RESULTS / f"{name}.jsonl"))
    args = p.parse_args(argv)
    chosen = parse_arms(args.arms, arms)
    base = algorithms_bench.prepare(args.workdir)

    def prepare(seed):
        if args.warm_from:
            student_warm_start(seed, base, pathlib.Path(args.warm_from))
        return teacher_run(seed, base, pathlib.Path(args.teacher_from))

    done = run_missing(args.results, chosen, args.seeds, args.steps,
                       lambda arm, seed, teacher: run_arm(arm, seed, args.steps, args.eval_every, base, teacher),
                       ("arm", "seed", "seconds", "accuracy", "teacher_accuracy"), prepare_seed=prepare)
    print(render([r for r in done if r["budget"] == args.steps]))


def summarised(run: dict, series: Sequence[str]) -> dict:
    """``algorithms.run_one``'s record with its metric log replaced by a summary: the evaluations
    (``evals``), each of ``series`` per step (``series``, 5 decimals) and its mean over the steps (``means``)."""
    r = dict(run)
    records = r.pop("records")
    r.pop("run_means", None)
    steps_log = [x for x in records if "loss" in x]
    logged = [k for k in series if any(k in x for x in steps_log)]
    r["evals"] = [{"step": x["step"], "eval/accuracy": x["eval/accuracy"]} for x in records if "eval/accuracy" in x]
    r["series"] = {k: [round(float(x[k]), 5) for x in steps_log if k in x] for k in logged}
    r["means"] = {k: statistics.mean(float(x[k]) for x in steps_log if k in x) for k in logged}
    return r

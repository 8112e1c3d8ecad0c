"""Staleness as a controlled variable: each noun k updates off-policy, beside its on-policy run.

Every run starts from its seed's shared SFT warm start (``benchmarks/algorithms.py``) and trains
``experiments/arithmetic_<noun>.py`` for ``--steps`` steps with ``staleness = k``: the rows of
step s come from the policy of step s − k (``polrl.collectors.stale``; π_old = that behaviour
policy), on the same prompts. k = 0 is the ordinary on-policy run. Each record keeps the first
and last evaluation (greedy accuracy, and with ``--samples`` n > 0 the sampled metrics: pass@1,
pass@n, sampled accuracy, entropy, distinct answers) and the mean over the run of every logged
metric, which is where the mechanisms show whether they act: ``clip_frac`` (PPO's clip, GSPO's
sequence clip, CISPO's truncation), SAPO's gate, REC's mask, and the importance ratio of the
current policy to the behaviour policy (``offpolicy/is_ratio_*``, ``offpolicy/ess``).

    python benchmarks/staleness.py                                  # the default grid
    python benchmarks/staleness.py --nouns grpo --stale 0 8 --seeds 0

Appends one JSON line per run to ``benchmarks/results/staleness.jsonl`` (a run already there is
skipped) and writes ``benchmarks/staleness.md`` from every record in it.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import algorithms  # noqa: E402
from benchmarks.stats import mean_std  # noqa: E402
from benchmarks.provenance import append, read  # noqa: E402

NOUNS = ("grpo", "cispo", "gspo", "sapo", "rec")
# The activity metric of each noun's mechanism (the objective's own metric names).
MECHANISM = {"grpo": "clip_frac", "cispo": "clip_frac", "gspo": "clip_frac", "sapo": "gate_frac", "rec": "clip_frac"}


def _fmt(xs, scale=1.0, digits=1):
    return mean_std(xs, scale, digits)


def write_report(records: list[dict], path: pathlib.Path) -> None:
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["noun"], r["staleness"]), []).append(r)
    steps = sorted({r["steps"] for r in records})
    lines = [
        "# Staleness: each noun k updates off-policy, from the same warm start",
        "",
        f"Written by `python benchmarks/staleness.py` from `benchmarks/results/staleness.jsonl` "
        f"({'/'.join(map(str, steps))} steps per run on the arithmetic task; rows of step s come from the policy "
        "of step s − k, π_old = that behaviour policy). Accuracy: held-out greedy exact match on 500 prompts after "
        "the run; pass@k from n samples per prompt with the unbiased estimator. Activity: the mean over the run "
        "of the noun's mechanism metric (fraction of tokens, or of sequences for GSPO, where its clip, gate or mask "
        "acts) and of the importance ratio π_θ/μ of the current policy to the behaviour policy, with its ESS. "
        "Mean ± std over seeds.",
        "",
        "| noun | k | seeds | greedy accuracy % | pass@1 % | pass@n % | mechanism | activity % | ratio min / max | ESS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (noun, k), rs in sorted(groups.items(), key=lambda kv: (NOUNS.index(kv[0][0]) if kv[0][0] in NOUNS else 99, kv[0][1])):
        metric = MECHANISM.get(noun, "clip_frac")
        means = [r["run_means"] for r in rs]
        last = [r["last_eval"] for r in rs]
        n = rs[0]["samples"]
        pass1 = [e.get("eval/pass@1") for e in last]
        passn = [e.get(f"eval/pass@{n}") for e in last]
        lines.append(
            f"| `{noun}` | {k} | {len(rs)} | {_fmt([e['eval/accuracy'] for e in last], 100)} | {_fmt(pass1, 100)} | "
            f"{_fmt(passn, 100)} (n = {n}) | `{metric}` | {_fmt([m.get(metric) for m in means], 100, 2)} | "
            f"{_fmt([m.get('offpolicy/is_ratio_min') for m in means], 1, 3)} / "
            f"{_fmt([m.get('offpolicy/is_ratio_max') for m in means], 1, 2)} | "
            f"{_fmt([m.get('offpolicy/ess') for m in means], 1, 3)} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nouns", default=",".join(NOUNS))
    p.add_argument("--stale", type=int, nargs="+", default=[0, 4], help="the staleness values k")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--samples", type=int, default=8, help="sampled completions per held-out prompt at evaluation")
    p.add_argument("--workdir", default="/tmp/polrl_bench_cat", help="shared warm starts (benchmarks/algorithms.py --workdir)")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "staleness.jsonl"))
    p.add_argument("--report", default=str(ROOT / "benchmarks" / "staleness.md"))
    args = p.parse_args(argv)

    base = algorithms.prepare(args.workdir)
    done = read(args.results)
    have = {(r["noun"], r["seed"], r["staleness"], r["steps"]) for r in done}
    for seed in args.seeds:
        for noun in args.nouns.split(","):
            for k in args.stale:
                if (noun, seed, k, args.steps) in have:
                    continue
                overrides = {"staleness": k, "eval.samples": args.samples, "eval.batch_size": 100}
                r = algorithms.run_one(noun, seed, args.steps, base, overrides=overrides, tag=f"_stale{k}")
                r.update(staleness=k, samples=args.samples)
                print(json.dumps({key: v for key, v in r.items() if key != "run_means"}), flush=True)
                append(args.results, r)
                done.append(r)
    write_report(done, pathlib.Path(args.report))


if __name__ == "__main__":
    main()

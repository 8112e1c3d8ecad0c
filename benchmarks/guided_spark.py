"""SPARK against GRPO: the policy trained as a judge of its own samples, at the same budget.

For every seed both arms start from that seed's SFT warm start (the ``sft_warmup`` phase of
``experiments/arithmetic_grpo.py``, trained once under ``--workdir`` and copied into each run, as
``benchmarks/algorithms.py`` does) and run ``--steps`` main-phase steps at the same learning rate,
KL and prompts:

* ``grpo``   ``experiments/arithmetic_grpo.py`` (the baseline);
* ``spark``  ``experiments/arithmetic_spark.py``: the same GRPO plus cross-entropy on the step's own
             samples recycled into judge rows (pointwise, pairwise, reflection; arXiv 2509.22624);
* ``spark_no_reflection``  the same without the reflection rows (``reflection=False``): their
             targets are the labelled answers, a supervision the GRPO arm does not get, so this arm
             tells the judge rows' effect from the labels';
* ``spark_self_reward``  ``experiments/arithmetic_spark_self_reward.py``: the ``spark`` arm's
             ``--steps`` steps (phase ``rl``, the same run), then ``--steps`` / 2 steps of GRPO
             whose reward is the policy's own verdict (phase ``self_reward``);
* ``spark_then_verifier``  the same two phases with the verifier as phase 2's reward (its
             control: the same steps, KL and prompts).

The two-phase arms' accuracy is their final phase's; ``phase_accuracy`` holds each phase's.

Each run is evaluated every ``--eval_every`` steps on the 500 held-out prompts (greedy exact match);
its accuracy is the mean of its last ``LAST_EVALS`` evaluations. Then its final policy judges its
own samples of the first ``--prompts`` held-out prompts (G = the config's group size, temperature
1): ``polrl.collectors.judge_rows.with_self_judge`` scores each sample with the policy's own
π("y" | x ++ y ++ " ok?"), and the record holds, over those samples,

    agreement   = mean [s > ½] = [verifier accepts]        (with base_rate: the best constant's)
    pair_agreement   = of the best/worst pairs s picks in each group, the fraction the verifier
                       orders the same way, among the pairs it does not tie
    verifier_pair_accuracy = of each group's right/wrong pair, the fraction s orders rightly

(the GRPO arm was never trained as a judge: its numbers are the control). One JSON line per run is
appended to ``--results``; runs already there are not run again; a markdown table is printed.

Usage (from the repository root)::

  python benchmarks/guided_spark.py --seeds 0 1 2 --steps 300
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import algorithms as algorithms_bench  # noqa: E402
from benchmarks.claims import last_evals_mean  # noqa: E402
from benchmarks.provenance import append, provenance, read  # noqa: E402
from benchmarks.stats import mean_std  # noqa: E402

ARMS = ("grpo", "spark", "spark_no_reflection", "spark_self_reward", "spark_then_verifier")
# arms that are another arm's config with overrides: arm → (noun, overrides)
VARIANTS = {"spark_no_reflection": ("spark", {"algorithm_kwargs.reflection": False}),
            "spark_then_verifier": ("spark_self_reward", {"phases.1.reward": ""})}
# arms with a second phase of half the budget after the first (experiments/arithmetic_spark_self_reward.py)
TWO_PHASE = ("spark_self_reward", "spark_then_verifier")
LAST_EVALS = 3
PROMPTS_PER_CALL = 50
# per-step metrics kept as series (judge losses and the verdict probability of the spark arm)
SERIES = ("accuracy", "judge", "judge_verdict_prob", "judge_nll_pointwise", "judge_nll_pairwise",
          "judge_nll_reflection", "kl", "entropy", "reward_mean", "self_judge_agreement")


def held_out_judge(config, workdir: pathlib.Path, prompts: int, seed: int) -> dict:
    """The module docstring's judge numbers for the run in ``workdir`` (its last phase's final
    parameters)."""
    import jax
    import jax.numpy as jnp

    from benchmarks.guided import load
    from polrl import collectors
    from polrl.collectors.judge_rows import with_self_judge
    from polrl.core import PolicyState
    from polrl.tasks.data import task_batch
    from polrl.train.build import build_spec

    spec = build_spec(config, progress=False)
    task = spec.task
    last_phase = config.phases[-1].name if config.get("phases") else "rl"
    graphdef, params = load(config, workdir, last_phase, value_head=False)
    g = config.rollout.group_size
    ctx = collectors.Context(graphdef=graphdef, task=task, sampling=spec.sampling, group_size=g, layout=spec.layout)
    collect = jax.jit(with_self_judge()(collectors.group_samples(ctx), ctx).collect)
    state = PolicyState(step=jnp.zeros((), jnp.int32), rng=None, params=params, opt_state=None)
    n = min(prompts, len(task.test))
    sums = {"samples": 0.0, "accuracy": 0.0, "agreement": 0.0, "base_right": 0.0, "judge_mean": 0.0,
            "pair_agreed": 0.0, "pair_untied": 0.0, "verifier_pair_agreed": 0.0, "verifier_pairs": 0.0}
    rng = jax.random.key(seed)
    for start in range(0, n, PROMPTS_PER_CALL):
        chunk = [task.test[i] for i in range(start, min(start + PROMPTS_PER_CALL, n))]
        if len(chunk) < PROMPTS_PER_CALL:
            raise SystemExit(f"--prompts={prompts}: use a multiple of {PROMPTS_PER_CALL} (one compiled shape)")
        data = {k: v for k, v in task_batch(task, chunk).items() if k != "examples"}
        _, _, m = collect((), state, data, jax.random.fold_in(rng, start))
        m = jax.tree.map(float, m)
        rows, groups = PROMPTS_PER_CALL * g, PROMPTS_PER_CALL
        sums["samples"] += rows
        sums["accuracy"] += m["verifier_reward_mean"] * rows
        sums["agreement"] += m["self_judge_agreement"] * rows
        sums["judge_mean"] += m["reward_mean"] * rows
        sums["pair_agreed"] += m["pair_agreement"] * m["pair_untied"] * groups
        sums["pair_untied"] += m["pair_untied"] * groups
        sums["verifier_pair_agreed"] += m["verifier_pair_accuracy"] * m["verifier_pairs"] * groups
        sums["verifier_pairs"] += m["verifier_pairs"] * groups
    samples = sums["samples"]
    accuracy = sums["accuracy"] / samples
    return {"prompts": n, "samples": int(samples), "sample_accuracy": accuracy,
            "agreement": sums["agreement"] / samples, "base_rate": max(accuracy, 1.0 - accuracy),
            "judge_mean": sums["judge_mean"] / samples,
            "pair_agreement": sums["pair_agreed"] / max(sums["pair_untied"], 1.0), "pairs_untied": sums["pair_untied"],
            "verifier_pair_accuracy": sums["verifier_pair_agreed"] / max(sums["verifier_pairs"], 1.0),
            "verifier_pairs": sums["verifier_pairs"]}


def run_arm(arm: str, seed: int, steps: int, eval_every: int, prompts: int, base: pathlib.Path) -> dict:
    noun, changes = VARIANTS.get(arm, (arm, {}))
    tag = arm.removeprefix(noun) if arm.startswith(noun) else f"_as_{arm}"  # the run directory: noun + tag
    total = steps + steps // 2 if arm in TWO_PHASE else steps  # the config gives the second phase a third
    r = algorithms_bench.run_one(noun, seed, total, base, overrides=changes, tag=tag, family="arithmetic",
                                 eval_every=eval_every)
    records = r.pop("records")
    r.pop("run_means", None)
    steps_log = [x for x in records if "loss" in x]
    r["evals"] = [{"step": x["step"], "phase": x["phase"], "eval/accuracy": x["eval/accuracy"]}
                  for x in records if "eval/accuracy" in x]
    r["phase_accuracy"] = {phase: last_evals_mean({"evals": [e for e in r["evals"] if e["phase"] == phase]}, LAST_EVALS)
                           for phase in dict.fromkeys(e["phase"] for e in r["evals"])}
    r["series"] = {k: [round(float(x[k]), 5) if k in x else None for x in steps_log]
                   for k in SERIES if any(k in x for x in steps_log)}  # None: a phase that does not log it
    r["phase_means"] = {phase: {k: statistics.mean(float(x[k]) for x in logs if k in x)
                                for k in SERIES if any(k in x for x in logs)}
                        for phase in dict.fromkeys(x["phase"] for x in steps_log)
                        for logs in [[x for x in steps_log if x["phase"] == phase]]}
    config = algorithms_bench._config(noun, seed, total, changes, "arithmetic", eval_every)
    r["judge"] = held_out_judge(config, base / f"{noun}{tag}_seed{seed}", prompts, seed)
    return {**r, "arm": arm, "budget": steps, **provenance()}


def render(done: list[dict]) -> str:
    """A markdown table: one row per run, then the seed mean ± std of each arm."""
    head = ("| arm | seed | steps | warm start | held-out accuracy | judge agreement | best constant | "
            "pair agreement | right/wrong pairs ordered |")
    rows = [head, "|" + "---|" * 9]
    pct = lambda x: f"{100 * x:.1f}%"
    for r in sorted((r for r in done if r["arm"] not in TWO_PHASE), key=lambda r: (ARMS.index(r["arm"]), r["seed"])):
        j = r["judge"]
        rows.append(f"| {r['arm']} | {r['seed']} | {r['budget']} | {pct(r['warm_accuracy'])} | "
                    f"{pct(last_evals_mean(r, LAST_EVALS))} | {pct(j['agreement'])} | {pct(j['base_rate'])} | "
                    f"{pct(j['pair_agreement'])} | {pct(j['verifier_pair_accuracy'])} |")
    for arm in ARMS:
        runs = [r for r in done if r["arm"] == arm and arm not in TWO_PHASE]
        if len(runs) > 1:
            col = lambda f: mean_std([f(r) for r in runs], 100.0, 1)
            rows.append(f"| {arm} (mean ± std) | {len(runs)} seeds | | {col(lambda r: r['warm_accuracy'])} | "
                        f"{col(lambda r: last_evals_mean(r, LAST_EVALS))} | {col(lambda r: r['judge']['agreement'])} | "
                        f"{col(lambda r: r['judge']['base_rate'])} | {col(lambda r: r['judge']['pair_agreement'])} | "
                        f"{col(lambda r: r['judge']['verifier_pair_accuracy'])} |")
    two = [r for r in done if r["arm"] in TWO_PHASE]
    return "\n".join(rows + (["", two_phase_table(two)] if two else []))


def two_phase_table(runs: list[dict]) -> str:
    """The two-phase arms: accuracy after SPARK (phase ``rl``) and after phase 2, with phase 2's
    samples' accuracy (the verifier's reward) and the verdict's agreement with the verifier, each
    the mean over its steps."""
    pct = lambda x: f"{100 * x:.1f}%"
    rows = ["SPARK's judge as the reward of a second phase (GRPO, half the first phase's steps), against the "
            "verifier as that phase's reward:", "",
            "| arm | seed | after SPARK | after phase 2 | phase 2: sampled accuracy | phase 2: verdict agrees |",
            "|" + "---|" * 6]
    second = lambda r, key: r["phase_means"]["self_reward"][key]
    agree = lambda r: pct(second(r, "self_judge_agreement")) if "self_judge_agreement" in r["phase_means"]["self_reward"] else "–"
    for r in sorted(runs, key=lambda r: (ARMS.index(r["arm"]), r["seed"])):
        rows.append(f"| {r['arm']} | {r['seed']} | {pct(r['phase_accuracy']['rl'])} | "
                    f"{pct(r['phase_accuracy']['self_reward'])} | {pct(second(r, 'accuracy'))} | "
                    f"{agree(r)} |")
    for arm in TWO_PHASE:
        rs = [r for r in runs if r["arm"] == arm]
        if len(rs) > 1:
            col = lambda f: mean_std([f(r) for r in rs], 100.0, 1)
            rows.append(f"| {arm} (mean ± std) | {len(rs)} seeds | {col(lambda r: r['phase_accuracy']['rl'])} | "
                        f"{col(lambda r: r['phase_accuracy']['self_reward'])} | "
                        f"{col(lambda r: second(r, 'accuracy'))} | "
                        + (f"{col(lambda r: second(r, 'self_judge_agreement'))} |"
                           if all("self_judge_agreement" in r["phase_means"]["self_reward"] for r in rs) else "– |"))
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=300, help="main-phase steps of every arm")
    p.add_argument("--eval_every", type=int, default=50)
    p.add_argument("--prompts", type=int, default=200, help=f"held-out prompts the judge is measured on "
                                                            f"(a multiple of {PROMPTS_PER_CALL})")
    p.add_argument("--workdir", default="/tmp/polrl_bench_guided_spark")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "guided_spark.jsonl"))
    args = p.parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise SystemExit(f"--arms: unknown {unknown}; use some of {list(ARMS)}")
    base = algorithms_bench.prepare(args.workdir)
    done = [r for r in read(args.results) if r["budget"] == args.steps]
    have = {(r["arm"], r["seed"]) for r in done}
    for seed in args.seeds:
        for arm in arms:
            if (arm, seed) in have:
                continue
            record = run_arm(arm, seed, args.steps, args.eval_every, args.prompts, base)
            append(args.results, record)
            done.append(record)
            print(json.dumps({k: record[k] for k in ("arm", "seed", "seconds", "accuracy", "judge")}), flush=True)
    print(render(done))


if __name__ == "__main__":
    main()

"""Does tool use pay? Multiplication with a calculator (Flow-GRPO) vs without (GRPO), same budget.

Two arms, both from an SFT warm start on the same labelled problems:

* ``tool``    — ``experiments/multiply_flow_grpo.py``: the demonstrations are calculator
  transcripts, RL is Flow-GRPO over multi-turn rollouts with the calculator environment;
* ``no_tool`` — ``experiments/multiply_grpo.py``: the demonstrations are the products, RL is
  GRPO over single-turn samples.

Same model, task problems, demonstrations (the same 1000 problems), SFT steps, RL steps,
prompts × samples per step, learning rate and KL coefficient; seeds are paired (seed s of both
arms shares the model initialisation and the prompt order). Each arm is scored the same way:
greedy decoding on the 500 held-out test problems through the arm's own program (the tool arm
with the calculator for up to ``max_turns`` turns, the no-tool arm in one turn, which is the
trainer's own evaluation), exact match of the final answer with the product, after the warm
start and after RL.

Writes one JSON line per finished run to ``--results`` (resumable), the table
``benchmarks/tools.md`` and the figure ``benchmarks/tools.png``.

Usage (from the repository root)::

  python benchmarks/tools.py                       # seeds 0 1 2, the experiments' step counts
  python benchmarks/tools.py --seeds 0 --steps 50  # a quick look (results go to --results)
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import pathlib
import shutil
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.stats import mean_std  # noqa: E402
from benchmarks.provenance import append, provenance, read  # noqa: E402

from polrl import devices  # noqa: E402  (before JAX starts: one CPU device per core)

devices.use_every_core()

ARMS = {"tool": "multiply_flow_grpo", "no_tool": "multiply_grpo"}


def arm_config(arm: str, seed: int, steps: int | None):
    config = importlib.import_module(f"experiments.{ARMS[arm]}").get_config()
    config.seed = seed
    if steps is not None:
        config.total_steps = steps
    config.eval_every = 10**9  # the trainer evaluates at the start and the end of each phase only
    config.checkpoint_every = 0
    config.log_every = 1
    return config


def program(config, spec) -> dict:
    """The arm's rollout program for evaluation: its turns and per-turn budget."""
    if config.collector == "turns":
        kw = config.collector_kwargs
        return dict(max_turns=kw.max_turns, turn_tokens=kw.turn_tokens, env_kwargs=dict(kw.get("env_kwargs", {})))
    return dict(max_turns=1, turn_tokens=spec.sampling.max_new_tokens, env_kwargs={})


def greedy_accuracy(spec, params, *, max_turns: int, turn_tokens: int, env_kwargs: dict, num_examples: int,
                    batch_size: int) -> float:
    """Exact-match accuracy of greedy trajectories (calculator environment, ``max_turns``
    turns) on the first ``num_examples`` test problems."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from polrl import collectors
    from polrl.core import PolicyState
    from polrl.tasks import task_batch

    greedy = dataclasses.replace(spec.sampling, temperature=0.0)
    ctx = collectors.Context(graphdef=spec.graphdef, task=spec.task, sampling=greedy, group_size=1, layout=spec.layout)
    collector = collectors.turns(ctx, env="calculator", max_turns=max_turns, turn_tokens=turn_tokens,
                                 env_kwargs=env_kwargs)
    state = PolicyState(step=jnp.int32(0), rng=jax.random.key(0), params=params, opt_state=None)
    examples = [spec.task.test[i] for i in range(min(num_examples, len(spec.task.test)))]
    rewards = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        data = task_batch(spec.task, chunk + [chunk[-1]] * (batch_size - len(chunk)))
        arrays = spec.layout.from_global({k: v for k, v in data.items() if k != "examples"})
        batch, _, _ = collector.collect((), state, {**arrays, "examples": data["examples"]}, jax.random.key(0))
        rewards.append(np.asarray(batch.reward_b)[: len(chunk)])
    return float((np.concatenate(rewards) >= 1.0).mean())


def train(config, workdir: pathlib.Path):
    from polrl.train.build import build_spec
    from polrl.train.trainer import Trainer

    spec = build_spec(config, progress=False)
    start = time.perf_counter()
    trainer = Trainer(spec, str(workdir))
    trainer.run()
    if trainer.preempted:  # SIGTERM: never record a run that stopped early
        raise SystemExit(f"preempted during {workdir}; relaunch to resume the benchmark")
    return spec, trainer.params, time.perf_counter() - start


def run_one(arm: str, seed: int, steps: int | None, base: pathlib.Path) -> dict:
    from polrl.train import metrics as metrics_lib

    config = arm_config(arm, seed, steps)
    evaluate = lambda spec, params: greedy_accuracy(spec, params, **program(config, spec),
                                                     num_examples=config.eval.num_examples,
                                                     batch_size=config.eval.batch_size)
    warm_dir, run_dir = base / f"{arm}_warm_seed{seed}", base / f"{arm}_seed{seed}"
    shutil.rmtree(warm_dir, ignore_errors=True)
    warm_config = arm_config(arm, seed, 0)
    spec, warm_params, warm_seconds = train(warm_config, warm_dir)
    warm_accuracy = evaluate(spec, warm_params)
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(warm_dir / "checkpoints" / "sft_warmup", run_dir / "checkpoints" / "sft_warmup")
    warm_records = [r for r in metrics_lib.read_metrics(str(warm_dir)) if r["phase"] == "sft_warmup"]
    with open(run_dir / "metrics.jsonl", "w") as f:  # the run's log starts with its warm start's
        f.writelines(json.dumps(r) + "\n" for r in warm_records)
    spec, params, seconds = train(config, run_dir)
    records = [r for r in metrics_lib.read_metrics(str(run_dir)) if r["phase"] == "rl"]
    trained = [r for r in records if "accuracy" in r]
    tail = trained[-max(1, len(trained) // 10):]
    mean = lambda key: statistics.mean(r[key] for r in tail) if key in tail[0] else None
    return {
        "arm": arm, "seed": seed, "steps": config.total_steps, "noun": config.algorithm,
        "max_turns": program(config, spec)["max_turns"],
        "warm_accuracy": warm_accuracy, "accuracy": evaluate(spec, params),
        "trainer_eval_accuracy": records[-1]["eval/accuracy"],
        "train_accuracy_last10pct": mean("accuracy"), "turns_mean_last10pct": mean("turns_mean"),
        "env_error_frac_last10pct": mean("env_error_frac"),
        "curve": [[r["phase_step"], r["accuracy"]] for r in trained],
        "seconds": seconds, "warm_seconds": warm_seconds,
    }


def _fmt(xs, scale=100.0, digits=1):
    return mean_std(xs, scale, digits)


def write_report(results: list[dict], path_md: pathlib.Path, remark: str = "") -> None:
    by_arm = {arm: sorted((r for r in results if r["arm"] == arm), key=lambda r: r["seed"]) for arm in ARMS}
    seeds = sorted({r["seed"] for r in by_arm["tool"]} & {r["seed"] for r in by_arm["no_tool"]})
    steps = sorted({r["steps"] for r in results})
    lines = [
        "# Tool use on multiplication: calculator (Flow-GRPO) vs no tool (GRPO), same budget",
        "",
        f"Written by `python benchmarks/tools.py` from `benchmarks/results/tools.jsonl` ({len(seeds)} paired seeds, "
        f"{'/'.join(map(str, steps))} RL steps per run). Accuracy: greedy exact match of the final answer on the 500 "
        "held-out test problems, each arm through its own program (turns: the most generations per trajectory; "
        "the tool arm calls the calculator in its first), after the SFT warm start and after RL; mean ± std over "
        "seeds. Train accuracy: sampled rollouts, mean over the last 10% of RL steps. Wall time per run (RL "
        "phase) on the machine that ran it.",
        *([remark] if remark else []),
        "",
        "| arm | experiment | seeds | turns | after SFT % | after RL % | RL gain (points) | train accuracy % | "
        "turns played | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, rs in by_arm.items():
        if not rs:
            continue
        turns = [r["turns_mean_last10pct"] for r in rs if r["turns_mean_last10pct"] is not None]
        lines.append(
            f"| {arm} | `experiments/{ARMS[arm]}.py` | {len(rs)} | {rs[0]['max_turns']} | "
            f"{_fmt([r['warm_accuracy'] for r in rs])} | "
            f"{_fmt([r['accuracy'] for r in rs])} | {_fmt([r['accuracy'] - r['warm_accuracy'] for r in rs])} | "
            f"{_fmt([r['train_accuracy_last10pct'] for r in rs])} | "
            f"{_fmt(turns, 1.0, 2) if turns else '1'} | {_fmt([r['seconds'] for r in rs], 1.0, 0)} |")
    if seeds:
        pair = {arm: {r["seed"]: r for r in by_arm[arm]} for arm in ARMS}
        diffs = [pair["tool"][s]["accuracy"] - pair["no_tool"][s]["accuracy"] for s in seeds]
        lines += [
            "",
            "Paired by seed (tool − no tool, held-out accuracy after RL, points): "
            + ", ".join(f"seed {s}: {100 * d:+.1f}" for s, d in zip(seeds, diffs))
            + f"; mean {_fmt(diffs)}; the tool arm is ahead on {sum(d > 0 for d in diffs)} of {len(seeds)} seeds.",
        ]
    path_md.write_text("\n".join(lines) + "\n")


def write_figure(results: list[dict], path_png: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"tool": "#4c72b0", "no_tool": "#c44e52"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for i, arm in enumerate(ARMS):
        rs = [r for r in results if r["arm"] == arm]
        if not rs:
            continue
        for x, key in ((i * 3, "warm_accuracy"), (i * 3 + 1, "accuracy")):
            values = [100 * r[key] for r in rs]
            left.bar(x, statistics.mean(values), color=colors[arm], alpha=0.45 if key == "warm_accuracy" else 0.9)
            left.scatter([x] * len(values), values, color="black", s=10, zorder=3)
        for r in rs:
            steps, acc = zip(*r["curve"])
            window = max(1, len(acc) // 30)
            smooth = [statistics.mean(acc[max(0, j - window + 1) : j + 1]) * 100 for j in range(len(acc))]
            right.plot(steps, smooth, color=colors[arm], alpha=0.8, label=f"{arm}, seed {r['seed']}")
    left.set_xticks([0, 1, 3, 4], ["tool\nafter SFT", "tool\nafter RL", "no tool\nafter SFT", "no tool\nafter RL"])
    left.set_ylabel("held-out greedy accuracy %")
    left.set_title("multiplication, same budget (dots: seeds)")
    right.set_xlabel("RL step")
    right.set_ylabel("train rollout accuracy % (smoothed)")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path_png, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None, help="RL steps per run (default: the experiments')")
    p.add_argument("--workdir", default="/tmp/polrl_bench_tools")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "tools.jsonl"))
    p.add_argument("--report", default=str(ROOT / "benchmarks" / "tools.md"))
    p.add_argument("--remark", default="", help="a line for the report's header")
    args = p.parse_args(argv)

    from absl import logging

    logging.set_verbosity(logging.ERROR)
    base = pathlib.Path(args.workdir)
    base.mkdir(parents=True, exist_ok=True)
    done = read(args.results)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    wanted = {(arm, seed, args.steps if args.steps is not None else arm_config(arm, seed, None).total_steps)
              for seed in args.seeds for arm in arms}
    for seed in args.seeds:
        for arm in arms:
            steps = args.steps if args.steps is not None else arm_config(arm, seed, None).total_steps
            if any((r["arm"], r["seed"], r["steps"]) == (arm, seed, steps) for r in done):
                continue
            r = {**run_one(arm, seed, steps, base), **provenance()}
            print(json.dumps({k: v for k, v in r.items() if k != "curve"}), flush=True)
            append(args.results, r)
            done.append(r)
    report = pathlib.Path(args.report)
    reported = [r for r in done if (r["arm"], r["seed"], r["steps"]) in wanted]
    write_report(reported, report, args.remark)
    write_figure(reported, report.with_suffix(".png"))
    print(json.dumps({"report": str(report), "runs": len(done)}))


if __name__ == "__main__":
    main()

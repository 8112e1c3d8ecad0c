"""TreePO vs GRPO on the chain task, paired per seed, on the same budget of sampled tokens.

For each seed the SFT warm start (the ``sft_warmup`` phase of ``experiments/chain_grpo.py``) is
trained once and its checkpoint copied into every run of that seed, so GRPO
(``experiments/chain_grpo.py``) and TreePO (``experiments/chain_treepo.py``) start from
bit-identical parameters. Both are evaluated every ``--eval_every`` steps on the 500 held-out
prompts (greedy exact match of the final answer). GRPO runs ``--steps`` steps; its sampled
tokens (every row decodes its own tokens) are the budget. TreePO decodes a shared prefix once,
so it runs ``--treepo_steps`` steps and is read at the last evaluation whose cumulative sampled
tokens are within GRPO's budget ("same budget") and at step ``--steps`` ("same steps"). The
ablation ``tree_grpo`` (TreePO's tree rollouts with GRPO's advantage, ``--treepo_steps`` steps)
separates the rollouts from the advantage; an SFT-only run of the same seed (``experiments/chain_sft.py``: the warm start's SFT continued for
``--steps`` more steps on the same demonstrations) shows where supervised training stays.

Writes one JSON line per run to ``benchmarks/results/treepo.jsonl`` (its evaluation curve with
cumulative sampled and row tokens and step times), then ``benchmarks/treepo.md`` (mean ± std
over seeds, and per seed) and ``benchmarks/treepo.png`` (accuracy vs sampled tokens). Runs
already in the results file are not run again.

Usage (from the repository root)::

  python benchmarks/treepo.py                            # seeds 0 1 2
  python benchmarks/treepo.py --seeds 0 --steps 100      # a quick look
"""
from __future__ import annotations

import argparse
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

CONFIGS = {"grpo": "chain_grpo", "treepo": "chain_treepo", "tree_grpo": "chain_treepo", "sft": "chain_sft"}


def _config(method: str, seed: int, steps: int, eval_every: int):
    config = importlib.import_module(f"experiments.{CONFIGS[method]}").get_config()
    if method == "tree_grpo":  # the ablation: tree rollouts, GRPO's advantage and loss
        grpo = importlib.import_module("experiments.chain_grpo").get_config()
        config.algorithm, config.algorithm_kwargs = grpo.algorithm, grpo.algorithm_kwargs
    config.seed = seed
    config.eval_every = eval_every
    config.checkpoint_every = 0
    config.log_every = 1
    config.total_steps = steps
    return config


def _run(config, workdir: pathlib.Path) -> float:
    from polrl.train.build import build_spec
    from polrl.train.trainer import Trainer

    start = time.perf_counter()
    trainer = Trainer(build_spec(config, progress=False), str(workdir))
    trainer.run()
    if trainer.preempted:
        raise SystemExit(f"preempted during {workdir}; relaunch to resume the benchmark")
    return time.perf_counter() - start


def warm_start(base: pathlib.Path, seed: int, eval_every: int) -> pathlib.Path:
    """The seed's SFT warm start, trained once (a chain_grpo run with 0 RL steps)."""
    workdir = base / f"warm_seed{seed}"
    if not (workdir / "done").exists():
        shutil.rmtree(workdir, ignore_errors=True)
        _run(_config("grpo", seed, 0, eval_every), workdir)
        (workdir / "done").write_text("")
    return workdir


def curve(workdir: pathlib.Path, phase: str, sampled_key: str) -> dict:
    """Per evaluation: step, cumulative sampled tokens, cumulative row tokens, accuracy; and the
    run's mean step time."""
    from polrl.train import metrics as metrics_lib

    records = [r for r in metrics_lib.read_metrics(str(workdir)) if r["phase"] == phase]
    points, sampled, rows, times = [], 0.0, 0.0, []
    for r in records:
        if "phase_step" in r:
            sampled += r.get(sampled_key, r.get("response_tokens", 0.0))
            rows += r.get("response_tokens", 0.0)
            times.append(r["step_time_s"])
        if "eval/accuracy" in r:
            points.append({"step": r.get("phase_step", 0), "sampled_tokens": sampled, "row_tokens": rows,
                           "accuracy": r["eval/accuracy"]})
    return {"curve": points, "mean_step_s": statistics.median(times[1:]) if len(times) > 1 else None}


def run_one(method: str, seed: int, steps: int, eval_every: int, base: pathlib.Path) -> dict:
    from polrl.train import metrics as metrics_lib

    warm = warm_start(base, seed, eval_every)
    warm_accuracy = [r for r in metrics_lib.read_metrics(str(warm)) if "eval/accuracy" in r][-1]["eval/accuracy"]
    workdir = base / f"{method}_seed{seed}"
    shutil.rmtree(workdir, ignore_errors=True)
    if method == "sft":
        config = _config("sft", seed, 0, eval_every)
        warmup = importlib.import_module("experiments.chain_grpo").get_config().warmup.steps
        config.total_steps = warmup + steps
        seconds = _run(config, workdir)
        points = curve(workdir, "sft", "response_tokens")
        points["curve"] = [dict(p, step=p["step"] - warmup) for p in points["curve"] if p["step"] >= warmup]
    else:
        (workdir / "checkpoints").mkdir(parents=True)
        shutil.copytree(warm / "checkpoints" / "sft_warmup", workdir / "checkpoints" / "sft_warmup")
        shutil.copy(warm / "metrics.jsonl", workdir / "metrics.jsonl")
        seconds = _run(_config(method, seed, steps, eval_every), workdir)
        points = curve(workdir, "rl", "sampled_tokens")
    return {"method": method, "seed": seed, "steps": steps, "warm_accuracy": warm_accuracy,
            "final_accuracy": points["curve"][-1]["accuracy"], **points, "seconds": seconds}


SMOOTH = 3  # evaluations averaged into one reading (500 prompts: one evaluation's std is ~2 points)


def _reading(points: list[dict]) -> dict:
    """The last point of ``points``, its accuracy the mean over the last ``SMOOTH`` of them."""
    return dict(points[-1], accuracy=statistics.mean(p["accuracy"] for p in points[-SMOOTH:]))


def at_budget(run: dict, budget: float) -> dict:
    """The reading at the last evaluation whose cumulative sampled tokens are ≤ ``budget``."""
    return _reading([p for p in run["curve"] if p["sampled_tokens"] <= budget * (1 + 1e-9)])


def at_step(run: dict, step: int) -> dict:
    """The reading at the last evaluation at or before ``step``."""
    return _reading([p for p in run["curve"] if p["step"] <= step])


def _fmt(xs, scale=100.0, digits=1):
    return mean_std(xs, scale, digits)


NAMES = {"grpo": "GRPO", "treepo": "TreePO", "tree_grpo": "tree rollouts + GRPO advantage", "sft": "SFT only"}


def write_report(results: list[dict], steps: int, path_md: pathlib.Path, path_png: pathlib.Path, remark: str) -> None:
    by = {(r["method"], r["seed"]): r for r in results}
    seeds = sorted({s for m, s in by if m == "grpo" and ("treepo", s) in by})
    tree_methods = [m for m in ("treepo", "tree_grpo") if all((m, s) in by for s in seeds)]
    rows = []
    for s in seeds:
        grpo = by[("grpo", s)]
        budget = at_step(grpo, steps)
        row = {"seed": s, "warm": grpo["warm_accuracy"], "grpo": budget["accuracy"], "grpo_step_s": grpo["mean_step_s"],
               "sft": at_step(by[("sft", s)], steps)["accuracy"] if ("sft", s) in by else None}
        for m in tree_methods:
            same_budget, same_steps = at_budget(by[(m, s)], budget["sampled_tokens"]), at_step(by[(m, s)], steps)
            row.update({f"{m}_budget": same_budget["accuracy"], f"{m}_budget_step": same_budget["step"],
                        f"{m}_steps": same_steps["accuracy"], f"{m}_step_s": by[(m, s)]["mean_step_s"],
                        f"{m}_tokens": same_steps["sampled_tokens"] / budget["sampled_tokens"],
                        f"{m}_per_row": same_steps["sampled_tokens"] / same_steps["row_tokens"]})
        rows.append(row)
    col = lambda k: [r[k] for r in rows if r[k] is not None]
    lines = [
        "# TreePO vs GRPO on the chain task: same warm start, same budget of sampled tokens",
        "",
        f"Written by `python benchmarks/treepo.py` from `benchmarks/results/treepo.jsonl`: {len(rows)} seeds "
        f"({', '.join(map(str, seeds))}), paired (every method of a seed starts from the same SFT warm start); "
        "mean ± std over seeds. Accuracy: greedy exact match of the final answer on the 500 held-out prompts; "
        f"a reading is the mean of the last {SMOOTH} evaluations up to that point (one evaluation every 20 steps).",
        f"GRPO runs {steps} steps and its sampled tokens are the budget. The tree runs decode shared prefixes once, "
        "so they run longer and are read at their last evaluation within GRPO's budget (\"same budget\") and at "
        f"step {steps} (\"same steps\"). Sampled tokens = tokens decoded; row tokens = the tokens the update "
        "trains on (a shared prefix once per row). The warm start is its final evaluation.",
        *(["", remark] if remark else []),
        "",
        "| run | accuracy % |",
        "|---|---|",
        f"| SFT warm start | {_fmt(col('warm'))} |",
        *([f"| SFT only, {steps} more steps on the same demonstrations | {_fmt(col('sft'))} |"] if col("sft") else []),
        f"| GRPO, {steps} steps | {_fmt(col('grpo'))} |",
    ]
    for m in tree_methods:
        lines += [f"| {NAMES[m]}, same budget of sampled tokens | {_fmt(col(f'{m}_budget'))} |",
                  f"| {NAMES[m]}, same steps ({steps}) | {_fmt(col(f'{m}_steps'))} |"]
    lines += ["", "| rollout cost at the same steps | " + " | ".join(["GRPO"] + [NAMES[m] for m in tree_methods]) + " |",
              "|---" * (2 + len(tree_methods)) + "|",
              "| sampled tokens vs GRPO's | 1 | " + " | ".join(_fmt(col(f"{m}_tokens"), 1, 3) for m in tree_methods) + " |",
              "| sampled tokens per row token | 1 | " + " | ".join(_fmt(col(f"{m}_per_row"), 1, 3) for m in tree_methods) + " |",
              f"| median step time, s (rollout + update) | {_fmt(col('grpo_step_s'), 1, 3)} | "
              + " | ".join(_fmt(col(f"{m}_step_s"), 1, 3) for m in tree_methods) + " |",
              "", "Per seed (accuracy %; same budget: the step reached in parentheses):", "",
              "| seed | warm | SFT only | GRPO | " + " | ".join(f"{NAMES[m]} same budget | same steps" for m in tree_methods) + " |",
              "|---" * (4 + 2 * len(tree_methods)) + "|"]
    pct = lambda x: "–" if x is None else f"{100 * x:.1f}"
    for r in rows:
        cells = [str(r["seed"]), pct(r["warm"]), pct(r["sft"]), pct(r["grpo"])]
        for m in tree_methods:
            cells += [f"{pct(r[f'{m}_budget'])} ({r[f'{m}_budget_step']})", pct(r[f"{m}_steps"])]
        lines.append("| " + " | ".join(cells) + " |")
    path_md.write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colors = {"grpo": "#4c72b0", "treepo": "#dd8452", "tree_grpo": "#8172b3"}
    for method in ["grpo", *tree_methods]:
        for seed in seeds:
            run = by[(method, seed)]
            ax.plot([p["sampled_tokens"] / 1e6 for p in run["curve"]], [100 * p["accuracy"] for p in run["curve"]],
                    color=colors[method], alpha=0.7, label=NAMES[method] if seed == seeds[0] else None)
    ax.axvline(statistics.mean(at_step(by[("grpo", s)], steps)["sampled_tokens"] for s in seeds) / 1e6, color="gray",
               ls=":", label="GRPO's budget (mean)")
    ax.set_xlabel("sampled tokens (millions)")
    ax.set_ylabel("held-out accuracy %")
    ax.set_title(f"chain task, {len(seeds)} seeds, one warm start per seed")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_png, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=400, help="GRPO steps (and SFT-only steps)")
    p.add_argument("--treepo_steps", type=int, default=560, help="TreePO steps (it samples fewer tokens per step)")
    p.add_argument("--eval_every", type=int, default=20)
    p.add_argument("--methods", default="grpo,treepo,tree_grpo,sft")
    p.add_argument("--workdir", default="/tmp/polrl_bench_treepo")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "treepo.jsonl"))
    p.add_argument("--report", default=str(ROOT / "benchmarks" / "treepo.md"))
    p.add_argument("--remark", default="", help="a line for the report's header")
    args = p.parse_args(argv)

    from absl import logging

    logging.set_verbosity(logging.ERROR)
    base = pathlib.Path(args.workdir)
    base.mkdir(parents=True, exist_ok=True)
    done = read(args.results)
    steps_of = {"grpo": args.steps, "sft": args.steps, "treepo": args.treepo_steps, "tree_grpo": args.treepo_steps}
    done = [r for r in done if r["steps"] == steps_of[r["method"]]]
    have = {(r["method"], r["seed"]) for r in done}
    for seed in args.seeds:
        for method in args.methods.split(","):
            if (method, seed) in have:
                continue
            r = {**run_one(method, seed, steps_of[method], args.eval_every, base), **provenance()}
            print(json.dumps({k: v for k, v in r.items() if k != "curve"}), flush=True)
            append(args.results, r)
            done.append(r)
    report = pathlib.Path(args.report)
    write_report(done, args.steps, report, report.with_suffix(".png"), args.remark)
    print(json.dumps({"report": str(report), "runs": len(done)}))


if __name__ == "__main__":
    main()

"""Every algorithm noun on the arithmetic task, from the same SFT warm start, same budget, ≥ 3 seeds.

For each seed the SFT warm start (the ``sft_warmup`` phase of ``experiments/arithmetic_grpo.py``)
is trained once and its checkpoint is copied into every noun's run directory, so every noun
starts from bit-identical parameters (the trainer reuses a finished phase's checkpoint). Each
noun then runs its own ``experiments/arithmetic_<noun>.py`` config — its algorithm, its
``algorithm_kwargs`` and rollout options — with the common budget ``--steps`` main-phase steps
(and evaluation at the end on the 500 held-out prompts). Nouns with a value head (PPO-family)
get their own warm start with the value head (the SFT loss does not touch it).

Writes ``benchmarks/algorithms.md`` (final held-out accuracy mean ± std over seeds, its gain over
the warm start, mean token entropy and KL over the last 10% of steps, wall time per run) and
``benchmarks/algorithms.png`` (accuracy per noun with the seeds as dots), and keeps one JSON line
per finished run in ``--results`` so an interrupted benchmark resumes where it stopped.

Usage (from the repository root)::

  python benchmarks/algorithms.py                      # every noun, seeds 0 1 2, 600 steps
  python benchmarks/algorithms.py --nouns grpo,dapo --seeds 0 --steps 50   # a quick look

The committed table was made with one process per seed (``--seeds 0``, ``--seeds 1`` and
``--seeds 2`` at once, appending to the same ``--results`` file), then one call without runs left
to do, which only writes the report (``--remark`` adds a line to its header).
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

NOUNS = (
    "grpo", "ppo", "dr_grpo", "dapo", "gspo", "cispo", "rloo", "reinforce_pp", "remax", "sapo",
    "chord", "opmd", "asymre", "rec", "mdpo", "lp_reg", "rover", "otr", "copg", "drpo", "rl_plus",
    "remix", "tppo",
)


def _config(noun: str, seed: int, steps: int, overrides: dict | None = None, family: str = "arithmetic",
            eval_every: int | None = None):
    config = importlib.import_module(f"experiments.{family}_{noun}").get_config()
    for key, value in (overrides or {}).items():  # dotted keys: "eval.samples", "phases.1.reward"
        *path, leaf = key.split(".")
        node = config
        for name in path:
            node = node[int(name)] if isinstance(node, (list, tuple)) else node[name]
        node[leaf] = value
    config.seed = seed
    config.total_steps = steps
    config.eval_every = eval_every or 10**9  # by default at the start and the end of each phase only
    config.checkpoint_every = 0
    config.log_every = 1 if eval_every else max(1, steps // 100)
    return config  # a follow-up phase (ReMix's reincarnation) splits total_steps itself


def _warm_start_dir(base: pathlib.Path, seed: int, value_head: bool) -> pathlib.Path:
    return base / f"warm_seed{seed}{'_value' if value_head else ''}"


def _run(config, workdir: pathlib.Path):
    from polrl.train.build import build_spec
    from polrl.train.trainer import Trainer

    spec = build_spec(config, progress=False)
    t0 = time.perf_counter()
    trainer = Trainer(spec, str(workdir))
    summary = trainer.run()
    if trainer.preempted:  # SIGTERM: the run stopped early; never record it as a result
        raise SystemExit(f"preempted during {workdir}; relaunch to resume the benchmark")
    return spec, summary, time.perf_counter() - t0


def _warm_start(base: pathlib.Path, seed: int, value_head: bool, family: str = "arithmetic") -> None:
    """Trains the seed's SFT warm start once (a run with 0 main-phase steps)."""
    workdir = _warm_start_dir(base, seed, value_head)
    if (workdir / "done").exists():
        return
    config = _config("ppo" if value_head else "grpo", seed, 1, family=family)
    config.total_steps = 0
    shutil.rmtree(workdir, ignore_errors=True)
    _run(config, workdir)
    (workdir / "done").write_text("")


def _last_fraction_mean(records, key: str, frac: float = 0.1):
    rows = [r[key] for r in records if key in r and r.get("phase") != "sft_warmup"]
    if not rows:
        return None
    tail = rows[-max(1, int(len(rows) * frac)):]
    return sum(tail) / len(tail)


def _run_means(records) -> dict:
    """The mean of every scalar metric over the main phase's logged steps (mechanism activity)."""
    rows = [r for r in records if r.get("phase") != "sft_warmup" and "loss" in r]
    keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and k not in ("step", "phase_step")})
    return {k: sum(r[k] for r in rows if k in r) / sum(k in r for r in rows) for k in keys}


def run_one(noun: str, seed: int, steps: int, base: pathlib.Path, overrides: dict | None = None, tag: str = "",
            family: str = "arithmetic", eval_every: int | None = None) -> dict:
    """Trains ``noun`` (config ``experiments/<family>_<noun>.py``) from the seed's shared warm
    start; ``overrides`` (dotted config keys) and a ``tag`` naming the run directory let other
    benchmarks vary one thing. The record holds the first and last evaluation (every ``eval/*``
    key) and ``run_means``, the mean of every logged scalar over the main phase (clip, gate and
    mask fractions, importance-ratio range, ESS); with ``eval_every`` also ``records``, the main
    phase's log (every logged step and evaluation)."""
    import jax

    from polrl.train import metrics as metrics_lib

    config = _config(noun, seed, steps, overrides, family, eval_every)
    from polrl import algorithms

    needs_values = "values" in algorithms.get(config.algorithm)(**dict(config.algorithm_kwargs)).needs
    _warm_start(base, seed, needs_values, family)
    workdir = base / f"{noun}{tag}_seed{seed}"
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "checkpoints").mkdir(parents=True)
    warm_dir = _warm_start_dir(base, seed, needs_values)
    shutil.copytree(warm_dir / "checkpoints" / "sft_warmup", workdir / "checkpoints" / "sft_warmup")
    warm_records = [r for r in metrics_lib.read_metrics(str(warm_dir)) if r["phase"] == "sft_warmup"]
    with open(workdir / "metrics.jsonl", "w") as f:  # the run's log starts with its warm start's
        f.writelines(json.dumps(r) + "\n" for r in warm_records)
    _, summary, seconds = _run(config, workdir)
    records = metrics_lib.read_metrics(str(workdir))
    evals = [r for r in records if "eval/accuracy" in r and r["phase"] != "sft_warmup"]  # first: the warm start
    return {
        "noun": noun, "seed": seed, "steps": steps,
        "warm_accuracy": evals[0]["eval/accuracy"], "accuracy": evals[-1]["eval/accuracy"],
        "entropy": _last_fraction_mean(records, "entropy"), "kl": _last_fraction_mean(records, "kl"),
        **({"first_eval": evals[0], "last_eval": evals[-1], "run_means": _run_means(records)} if overrides is not None else {}),
        **({"records": [r for r in records if r.get("phase") != "sft_warmup"]} if eval_every else {}),
        "seconds": seconds, "devices": jax.device_count(), **provenance(),
    }



def prepare(workdir: str) -> pathlib.Path:
    """A learning benchmark's start: one host device per core, as the launcher (the configs' mesh
    uses them all), quiet logging, and ``workdir`` created; returns it as a path."""
    from absl import logging

    from polrl.devices import use_every_core

    use_every_core()
    logging.set_verbosity(logging.ERROR)
    base = pathlib.Path(workdir)
    base.mkdir(parents=True, exist_ok=True)
    return base


def _fmt(xs, scale=1.0, digits=1):
    return mean_std(xs, scale, digits)


def write_report(results: list[dict], path_md: pathlib.Path, path_png: pathlib.Path, steps: int,
                 remark: str = "") -> None:
    by_noun = {}
    for r in results:
        by_noun.setdefault(r["noun"], []).append(r)
    order = sorted(by_noun, key=lambda n: -statistics.mean(r["accuracy"] for r in by_noun[n]))
    lines = [
        "# Algorithms on arithmetic: same warm start, same budget",
        "",
        f"Written by `python benchmarks/algorithms.py` ({steps} main-phase steps per run; held-out greedy",
        "exact match on 500 test prompts; mean ± std over seeds; entropy and KL: mean over the last",
        "10% of logged steps; wall time per run on the machine that ran it).",
        *([remark, ""] if remark else [""]),
        "| noun | seeds | warm start % | final accuracy % | gain (points) | entropy | KL | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in order:
        rs = by_noun[n]
        lines.append(
            f"| `{n}` | {len(rs)} | {_fmt([r['warm_accuracy'] for r in rs], 100)} | "
            f"{_fmt([r['accuracy'] for r in rs], 100)} | "
            f"{_fmt([r['accuracy'] - r['warm_accuracy'] for r in rs], 100)} | "
            f"{_fmt([r['entropy'] for r in rs], 1, 3)} | {_fmt([r['kl'] for r in rs], 1, 4)} | "
            f"{_fmt([r['seconds'] for r in rs], 1, 0)} |"
        )
    path_md.write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(order)), 4))
    for i, n in enumerate(order):
        accs = [100 * r["accuracy"] for r in by_noun[n]]
        ax.bar(i, statistics.mean(accs), color="#4c72b0", alpha=0.7)
        ax.scatter([i] * len(accs), accs, color="black", s=8, zorder=3)
    warm = [100 * r["warm_accuracy"] for r in results]
    ax.axhline(statistics.mean(warm), color="#c44e52", ls="--", label="SFT warm start")
    ax.set_xticks(range(len(order)), order, rotation=60, ha="right")
    ax.set_ylabel("held-out accuracy %")
    ax.set_title(f"arithmetic, {steps} steps from the same warm start")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path_png, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nouns", default=",".join(NOUNS), help="comma-separated nouns")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=600, help="main-phase steps per run")
    p.add_argument("--workdir", default="/tmp/polrl_bench_algorithms")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "algorithms.jsonl"))
    p.add_argument("--report", default=str(ROOT / "benchmarks" / "algorithms.md"))
    p.add_argument("--remark", default="", help="a line for the report's header (e.g. how the runs shared the machine)")
    args = p.parse_args(argv)

    base = prepare(args.workdir)
    done = [r for r in read(args.results) if r["steps"] == args.steps]
    have = {(r["noun"], r["seed"]) for r in done}
    nouns = [n.strip() for n in args.nouns.split(",") if n.strip()]
    for seed in args.seeds:
        for noun in nouns:
            if (noun, seed) in have:
                continue
            r = run_one(noun, seed, args.steps, base)
            print(json.dumps(r), flush=True)
            append(args.results, r)
            done.append(r)
    report = pathlib.Path(args.report)
    write_report([r for r in done if r["noun"] in nouns], report, report.with_suffix(".png"), args.steps, args.remark)
    print(json.dumps({"report": str(report), "runs": len(done)}))


if __name__ == "__main__":
    main()

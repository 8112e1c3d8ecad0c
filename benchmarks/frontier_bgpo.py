"""BGPO's memory claim and its training effect on a masked-diffusion LM (``polrl.diffusion``).

"Boundary-Guided Policy Optimization for Memory-efficient RL of Diffusion Large Language Models"
(arXiv 2510.11683) claims that its linear lower bound keeps an update's memory constant in the
number K of Monte-Carlo ELBO masks, where the non-linear ELBO-ratio objective grows with K.

* memory: for K in ``--num_mc`` and both objectives (``bgpo``: the bound, gradient accumulated one
  mask at a time; ``elbo_ratio``: all K masks in one differentiated graph), one update (loss,
  gradient, Adam step) of ``experiments/arithmetic_bgpo.py``'s model on its batch of
  ``batch_prompts × group_size`` rows is compiled for the CPU and XLA's ``memory_analysis()`` temp
  bytes are recorded (deterministic: no run, no timing);
* training: for every seed, the config's SFT warm start is trained once under ``--workdir`` and
  copied into each arm's run, which then takes ``--steps`` RL steps with that arm's objective
  (K = the config's ``num_mc``); recorded are the held-out greedy accuracy of the initial model, the
  warm start and the final policy, and the mean training reward of the first and last 10 RL steps.

One JSON line per measurement is appended to ``--results``; those already there are not measured
again; a markdown table is printed (``render``).

Usage (from the repository root)::

  python benchmarks/frontier_bgpo.py --seeds 0 1 2 --steps 300
"""
from __future__ import annotations

import argparse
import pathlib
import shutil
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from benchmarks import companion  # noqa: E402
from benchmarks.provenance import append, provenance, read  # noqa: E402
from benchmarks.stats import mean_std  # noqa: E402
from experiments import arithmetic_bgpo  # noqa: E402
from polrl.diffusion import bgpo, train  # noqa: E402
from polrl.train.metrics import read_metrics  # noqa: E402

ARMS = ("bgpo", "elbo_ratio")
NUM_MC = (1, 2, 4, 8, 16)
OBJECTIVES = {"bgpo": bgpo.bgpo_value_and_grad, "elbo_ratio": bgpo.elbo_ratio_value_and_grad}
WINDOW = 10


def update_temp_bytes(setup: train.Setup, objective: str, num_mc: int) -> int:
    """XLA's temp bytes of one compiled update (loss, gradient, Adam step) with K = ``num_mc`` masks."""
    c = setup.config
    rows = c.batch_prompts * c.group_size
    prompt, valid, response, _ = [x[:rows] for x in setup.train]
    optimizer = optax.adam(c.learning_rate)

    def update(params, opt_state, old_kb, adv_b, key):
        _, grads = OBJECTIVES[objective](setup.apply, params, old_kb, prompt, valid, response, adv_b, key,
                                         setup.mask)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    args = (setup.params, optimizer.init(setup.params), jnp.zeros((num_mc, rows)), jnp.zeros((rows,)),
            jax.random.key(0))
    return int(jax.jit(update).lower(*args).compile().memory_analysis().temp_size_in_bytes)


def measure_memory(path: str, num_mc: tuple[int, ...]) -> None:
    have = {(r["arm"], r["num_mc"]) for r in read(path) if r.get("kind") == "memory"}
    setup = train.Setup(arithmetic_bgpo.get_config())
    for arm in ARMS:
        for k in num_mc:
            if (arm, k) not in have:
                record = {"kind": "memory", "arm": arm, "seed": None, "budget": None, "num_mc": k,
                          "temp_bytes": update_temp_bytes(setup, arm, k), **provenance()}
                append(path, record)
                print({x: record[x] for x in ("arm", "num_mc", "temp_bytes")}, flush=True)


def train_warm_start(seed: int, base: pathlib.Path) -> pathlib.Path:
    """The seed's SFT phase alone (RL budget 0), trained once under ``base``."""
    workdir = base / f"sft_seed{seed}"
    config = arithmetic_bgpo.get_config()
    config.seed, config.total_steps = seed, 0
    train.run(config, str(workdir))
    return workdir


def run_arm(arm: str, seed: int, steps: int, warm: pathlib.Path, base: pathlib.Path) -> dict:
    workdir = base / f"{arm}_seed{seed}_steps{steps}"
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.copytree(warm / "checkpoints" / "sft", workdir / "checkpoints" / "sft")
    shutil.copy(warm / "metrics.jsonl", workdir / "metrics.jsonl")
    config = arithmetic_bgpo.get_config()
    config.seed, config.total_steps, config.objective = seed, steps, arm
    start = time.time()
    summary = train.run(config, str(workdir))
    rl = [r for r in read_metrics(str(workdir)) if r["phase"] == "rl"]
    return {"kind": "training", "arm": arm, "seed": seed, "budget": steps, "num_mc": config.num_mc,
            "initial_accuracy": summary["initial"]["eval/accuracy"],
            "warm_accuracy": summary["sft"]["eval/accuracy"], "accuracy": summary["rl"]["eval/accuracy"],
            "reward_first": statistics.mean(r["reward_mean"] for r in rl[:WINDOW]),
            "reward_last": statistics.mean(r["reward_mean"] for r in rl[-WINDOW:]),
            "seconds": round(time.time() - start, 1), **provenance()}


COLUMNS = {"initial_accuracy": "initial", "warm_accuracy": "warm start", "accuracy": "after RL",
           "reward_first": "reward, first 10 steps", "reward_last": "reward, last 10 steps"}


def training_rows(records: list[dict], arms, keys) -> list[str]:
    """A markdown table of the training records: one row per run, then each arm's mean ± std over seeds at
    each budget; ``keys`` (of ``COLUMNS``) are the fractions shown, in percent."""
    runs = sorted((r for r in records if r.get("kind") == "training"),
                  key=lambda r: (arms.index(r["arm"]), r["budget"], r["seed"]))
    rows = ["| objective | seed | RL steps | K | " + " | ".join(COLUMNS[k] for k in keys) + " |",
            "|" + "---|" * (4 + len(keys))]
    for r in runs:
        rows.append(f"| {r['arm']} | {r['seed']} | {r['budget']} | {r['num_mc']} | "
                    + " | ".join(f"{100 * r[k]:.1f}%" for k in keys) + " |")
    for arm in arms:
        for budget in sorted({r["budget"] for r in runs if r["arm"] == arm}):
            group = [r for r in runs if r["arm"] == arm and r["budget"] == budget]
            if len(group) > 1:
                rows.append(f"| {arm} (mean ± std) | {len(group)} seeds | {budget} | {group[0]['num_mc']} | "
                            + " | ".join(mean_std([r[k] for r in group], 100.0) for k in keys) + " |")
    return rows


def render(records: list[dict]) -> str:
    """Two markdown tables: an update's temp memory against K, then accuracy/reward per run and seed mean."""
    memory = {(r["arm"], r["num_mc"]): r["temp_bytes"] for r in records if r.get("kind") == "memory"}
    ks = sorted({k for _, k in memory})
    rows = ["| objective | " + " | ".join(f"K = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    mib = lambda arm, k: "–" if (arm, k) not in memory else f"{memory[arm, k] / 2**20:.2f} MiB"
    for arm in ARMS:
        rows.append(f"| {arm} | " + " | ".join(mib(arm, k) for k in ks) + " |")
    rows += [""] + training_rows(records, ARMS, ("initial_accuracy", "warm_accuracy", "accuracy", "reward_first",
                                                  "reward_last"))
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=300, help="RL steps of every arm after the shared warm start")
    p.add_argument("--num_mc", type=int, nargs="+", default=list(NUM_MC))
    p.add_argument("--workdir", default="/tmp/polrl_bench_frontier_bgpo")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "frontier_bgpo.jsonl"))
    args = p.parse_args(argv)
    arms = companion.parse_arms(args.arms, ARMS)
    measure_memory(args.results, tuple(args.num_mc))
    base = pathlib.Path(args.workdir)
    done = companion.run_missing(args.results, arms, args.seeds, args.steps,
                                 lambda arm, seed, warm: run_arm(arm, seed, args.steps, warm, base),
                                 ("arm", "seed", "seconds", "warm_accuracy", "accuracy"),
                                 prepare_seed=lambda seed: train_warm_start(seed, base))
    print(render(done))


if __name__ == "__main__":
    main()

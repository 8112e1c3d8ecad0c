"""DialTree-RPO against the same attacker trained without the tree, at the same target-call budget.

Task: ``polrl.tasks.target_says`` (make a frozen arithmetic model say a number; the judge is the
rule reply = X). The target is the SFT warm start of experiments/arithmetic_grpo.py (seed 0, one
device), trained once into ``--workdir`` and shared by every run. Per seed, two arms of
experiments/target_says_dialtree_rpo.py from the same cold start (SFT on the same demonstrations):

* ``dialtree_rpo``  the tree (3 turns, 4 children per live dialogue, 2 kept per parent, width 4):
                    at most 28 target calls per goal and step;
* ``no_tree``       9 independent 3-turn dialogues per goal (``get_config("no_tree")``): at most 27.

Both use the ``dialtree_rpo`` noun (GRPO over each goal's dialogues with the adaptive format mask),
the same learning rate, KL, goals per step and steps, so they differ only in how the dialogues
are collected. Evaluation, on every distinct held-out goal (goals no run trains on): the attacker
decoding greedily without a tree holds one dialogue of up to 3 turns with the target (greedy);
``success`` = the fraction of goals where the target said X at some turn, ``first_turn`` = at the
first turn. The cold start's (``cold_*``) is measured the same way: the headroom.

Writes one JSON line per (arm, seed) to ``--results`` (runs already there are skipped) and prints a
markdown table (mean ± std over the seeds present).

Usage (from the repository root)::

  python benchmarks/guided_dialtree.py --seeds 0 1 2 --steps 300
"""
from __future__ import annotations

import argparse
import functools
import json
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks.provenance import append, provenance, read  # noqa: E402
from experiments import arithmetic_grpo, target_says_dialtree_rpo  # noqa: E402
from polrl.collectors.dialogue_tree import dialogue_tree_rollout, max_target_calls  # noqa: E402
from polrl.rollout import SamplingConfig  # noqa: E402
from polrl.tasks.data import decode_example, encode_prompts  # noqa: E402
from polrl.tasks.target_says import attack_rules  # noqa: E402
from polrl.tasks.tokenizer import EOS_ID, PAD_ID  # noqa: E402
from polrl.train import metrics as metrics_lib  # noqa: E402
from polrl.train.auxiliary import frozen_model_structure  # noqa: E402
from polrl.train.build import build_spec  # noqa: E402
from polrl.train.reward_checkpoint import load_params, policy_source  # noqa: E402
from polrl.train.trainer import Trainer  # noqa: E402

ARMS = {"dialtree_rpo": None, "no_tree": "no_tree"}
BENCHMARK = "guided_dialtree"


def train_target(workdir: pathlib.Path) -> pathlib.Path:
    """The SFT warm start of experiments/arithmetic_grpo.py (seed 0, one device): its sft_warmup checkpoint."""
    config = arithmetic_grpo.get_config()
    config.total_steps = 0
    config.mesh.data = 1
    run = workdir / "target"
    Trainer(build_spec(config, progress=False), str(run)).run()
    return run / "checkpoints" / "sft_warmup"


def arm_config(arm: str, seed: int, steps: int, target: pathlib.Path):
    config = target_says_dialtree_rpo.get_config(ARMS[arm])
    config.seed = seed
    config.total_steps = steps
    config.eval_every = steps
    config.checkpoint_every = steps
    config.models.target.path = str(target)
    return config


def load_policy(config, path: pathlib.Path, vocab_size: int):
    graphdef, shapes = frozen_model_structure(config.model, vocab_size, value_head=False, field="model")
    return graphdef, load_params(str(path), shapes, policy_source("attacker", "model"))


@functools.partial(jax.jit, static_argnums=(0, 1, 6, 7))
def greedy_dialogues(graphdef, target_def, params, target_params, prompt_bp, valid_bp, rules, max_turns):
    """One greedy dialogue per goal (no tree): ``(success at some turn, success at the first turn)``."""
    sampling = SamplingConfig(max_new_tokens=rules.turn_tokens, eos_id=EOS_ID, pad_id=PAD_ID, temperature=0.0)
    out = dialogue_tree_rollout(nnx.merge(graphdef, params), nnx.merge(target_def, target_params), rules, prompt_bp,
                                valid_bp, jax.random.key(0), sampling, max_turns=max_turns, init_branches=1, branch=1,
                                width=1, top_k=1, pad_id=PAD_ID)
    success = out.success_r.reshape(prompt_bp.shape[0], -1)
    turns = out.turns_r.reshape(prompt_bp.shape[0], -1)
    return success.sum(axis=1) > 0, jnp.sum(success * (turns == 1), axis=1) > 0


def evaluate(config, task, attacker_path: pathlib.Path, target_path: pathlib.Path) -> dict:
    """``success`` / ``first_turn`` over the distinct held-out goals (module docstring)."""
    tokenizer = task.tokenizer
    goals = sorted({decode_example(task.test[i])["prompt"] for i in range(len(task.test))})
    prompt_bp, valid_bp = encode_prompts(tokenizer, goals, task.max_prompt_len)
    graphdef, params = load_policy(config, attacker_path, tokenizer.vocab_size)
    target_def, target_params = load_target(config, target_path, tokenizer.vocab_size)
    rules = attack_rules(tokenizer)
    success, first = greedy_dialogues(graphdef, target_def, params, target_params, jnp.asarray(prompt_bp),
                                      jnp.asarray(valid_bp), rules, config.collector_kwargs.max_turns)
    return {"goals": len(goals), "success": float(np.mean(success)), "first_turn": float(np.mean(first))}


def load_target(config, path: pathlib.Path, vocab_size: int):
    graphdef, shapes = frozen_model_structure(config.models.target.model, vocab_size, value_head=False,
                                              field="models.target.model")
    return graphdef, load_params(str(path), shapes, policy_source("models.target.path", "models.target.model"))


def run_arm(arm: str, seed: int, steps: int, workdir: pathlib.Path, target: pathlib.Path) -> dict:
    config = arm_config(arm, seed, steps, target)
    run = workdir / f"{arm}_seed{seed}"
    start = time.time()
    spec = build_spec(config, progress=False)
    Trainer(spec, str(run)).run()
    wall = time.time() - start
    records = [r for r in metrics_lib.read_metrics(str(run)) if r.get("phase") == "rl" and "target_calls" in r]
    kw = config.collector_kwargs
    calls_max = max_target_calls(max_turns=kw.max_turns, init_branches=kw.get("init_branches") or kw.branch,
                                 branch=kw.branch, width=kw.width, top_k=kw.get("top_k") or kw.branch)
    trained = evaluate(config, spec.task, run / "checkpoints" / "rl", target)
    cold = evaluate(config, spec.task, run / "checkpoints" / "sft_warmup", target)
    return {"benchmark": BENCHMARK, "arm": arm, "seed": seed, "steps": steps, "demos": config.demos.num,
            "warmup_steps": config.warmup.steps, "goals": trained["goals"],
            "success": trained["success"], "first_turn": trained["first_turn"],
            "cold_success": cold["success"], "cold_first_turn": cold["first_turn"],
            "target_calls_max": calls_max,
            "target_calls_mean": statistics.fmean(r["target_calls"] for r in records),
            "train_goal_success_last10": statistics.fmean(r["goal_success"] for r in records[-10:]),
            "wall_s": round(wall, 1), **provenance()}


def table(rows: list[dict]) -> str:
    def ms(xs):
        xs = [100 * x for x in xs]
        return f"{statistics.fmean(xs):.1f} ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"

    lines = ["| arm | seeds | steps | target calls / goal / step (max; mean) | held-out success % (cold start) | "
             "first-turn success % (cold start) |", "|---|---|---|---|---|---|"]
    for arm in ARMS:
        runs = [r for r in rows if r["arm"] == arm]
        if not runs:
            continue
        seeds = ",".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"]))
        calls = f"{runs[0]['target_calls_max']}; {statistics.fmean(r['target_calls_mean'] for r in runs):.1f}"
        lines.append(f"| {arm} | {seeds} | {runs[0]['steps']} | {calls} | {ms([r['success'] for r in runs])} "
                     f"({ms([r['cold_success'] for r in runs])}) | {ms([r['first_turn'] for r in runs])} "
                     f"({ms([r['cold_first_turn'] for r in runs])}) |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--workdir", default=str(ROOT / "runs" / "guided_dialtree"))
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "guided_dialtree.jsonl"))
    args = p.parse_args(argv)
    workdir = pathlib.Path(args.workdir)
    target = workdir / "target" / "checkpoints" / "sft_warmup"
    if not target.is_dir():
        target = train_target(workdir)
    done = {(r["arm"], r["seed"], r["steps"]) for r in read(args.results)}
    for seed in args.seeds:
        for arm in args.arms.split(","):
            if (arm, seed, args.steps) in done:
                continue
            record = run_arm(arm, seed, args.steps, workdir, target)
            append(args.results, record)
            print(json.dumps(record), flush=True)
    rows = [r for r in read(args.results) if r["steps"] == args.steps]
    print(table(rows))


if __name__ == "__main__":
    main()

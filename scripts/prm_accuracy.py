"""Held-out step accuracy and Brier score of a process reward model trained by a chain_prm-style
run, against the best constant prediction.

    python scripts/prm_accuracy.py --config experiments/chain_prm.py --workdir runs/chain_prm

The first ``--examples`` test-split prompts (never trained on) are labelled as in training
(``polrl.collectors.step_labels``: the completer, WORKDIR/checkpoints/sft_warmup, samples the
config's G responses per prompt, each of its first ``max_steps`` steps labelled by the mean
verified reward of ``--continuations`` completions, the last step by the response's reward), and
the PRM (WORKDIR/checkpoints/process_reward_model) scores every labelled step end with
``polrl.search.scoring.token_scores``. With p the PRM's probability and ŷ the label, over the
labelled steps:

    step accuracy = mean[(p > ½) = (ŷ > ½)],      Brier = mean[(p − ŷ)²],

beside the same two numbers for the constant p = mean ŷ (the held-out label mean: the best
constant Brier score, var ŷ), and both again over the intermediate steps only (those that do not
end their response, whose labels come from completions). Prints one JSON line.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # the configs import experiments.*

from polrl import collectors  # noqa: E402
from polrl.algorithms.process_reward import step_agreement  # noqa: E402
from polrl.collectors.step_labels import STEP_END, STEP_LABEL  # noqa: E402
from polrl.core import PolicyState  # noqa: E402
from polrl.search.scoring import token_scores  # noqa: E402
from polrl.tasks.data import task_batch  # noqa: E402
from polrl.train.build import build_spec, reward_model_structure  # noqa: E402
from polrl.train.reward_checkpoint import load_params, load_reward_params, policy_source  # noqa: E402


def agreement(p, label, weight) -> dict:
    """``step_agreement`` of the PRM and of the constant label mean, as floats."""
    mean = float((label * weight).sum() / max(weight.sum(), 1.0))
    prm = step_agreement(jnp.asarray(p), jnp.asarray(label), jnp.asarray(weight))
    const = step_agreement(jnp.full(label.shape, mean), jnp.asarray(label), jnp.asarray(weight))
    return {"steps": int(weight.sum()), "label_mean": mean,
            "accuracy": float(prm["accuracy"]), "brier": float(prm["brier"]),
            "constant_accuracy": float(const["accuracy"]), "constant_brier": float(const["brier"])}


def held_out_step_metrics(config, workdir: str, *, examples: int, continuations: int, seed: int,
                          prompts_per_call: int) -> dict:
    """The module docstring's numbers for the run at ``workdir`` (its config ``config``)."""
    spec = build_spec(config, progress=False)
    task = spec.task
    graphdef, shapes = reward_model_structure(config.model, task.tokenizer.vocab_size)
    checkpoints = os.path.join(workdir, "checkpoints")
    prm = load_reward_params(os.path.join(checkpoints, config.phase_name), shapes)
    completer = load_params(os.path.join(checkpoints, "sft_warmup"), shapes, policy_source("--workdir", "config.model"))
    kwargs = dict(config.collector_kwargs)
    ctx = collectors.Context(graphdef=graphdef, task=task, sampling=spec.sampling, group_size=config.rollout.group_size,
                             layout=spec.layout)
    collect = jax.jit(collectors.step_labels(ctx, continuations=continuations, max_steps=kwargs["max_steps"]).collect)
    score = jax.jit(token_scores, static_argnums=0)
    state = PolicyState(step=jnp.zeros((), jnp.int32), rng=None, params=None, opt_state=None, ref_params=completer)
    p_all, label_all, valid_all, last_all, reward_all = [], [], [], [], []
    rng = jax.random.key(seed)
    n = min(examples, len(task.test))
    for start in range(0, n, prompts_per_call):
        chunk = [task.test[i] for i in range(start, min(start + prompts_per_call, n))]
        chunk += chunk[:prompts_per_call - len(chunk)]  # one compiled shape; the repeats are dropped below
        data = {k: v for k, v in task_batch(task, chunk).items() if k != "examples"}
        batch, _, _ = collect((), state, data, jax.random.fold_in(rng, start))
        keep = (min(start + prompts_per_call, n) - start) * config.rollout.group_size
        end = np.asarray(batch.aux[STEP_END])[:keep]
        p = np.asarray(score(graphdef, prm, batch.prompt_bp, batch.prompt_valid_bp, batch.response_bt))[:keep]
        p_all.append(np.take_along_axis(p, np.maximum(end, 0), axis=1))
        label_all.append(np.asarray(batch.aux[STEP_LABEL])[:keep])
        valid_all.append(end >= 0)
        last_all.append(end == np.asarray(batch.mask_bt)[:keep].sum(axis=1, keepdims=True) - 1)
        reward_all.append(np.asarray(batch.reward_b)[:keep])
    p, label, valid, last = (np.concatenate(x).astype(np.float64) for x in (p_all, label_all, valid_all, last_all))
    return {"prompts": n, "responses": int(sum(len(r) for r in reward_all)),
            "completer_accuracy": float(np.concatenate(reward_all).mean()), "continuations": continuations,
            "all_steps": agreement(p, label, valid), "intermediate_steps": agreement(p, label, valid * (1.0 - last))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="the PRM run's experiment file")
    parser.add_argument("--arg", default="", help="the config's argument (e.g. smoke)")
    parser.add_argument("--workdir", required=True, help="the PRM run's workdir (its checkpoints/ are read)")
    parser.add_argument("--examples", type=int, default=200, help="test-split prompts")
    parser.add_argument("--continuations", type=int, default=16, help="completions per held-out step label")
    parser.add_argument("--prompts-per-call", type=int, default=25, help="prompts labelled per compiled call")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("prm_config", args.config)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(args.arg or None)
    out = held_out_step_metrics(config, args.workdir, examples=args.examples, continuations=args.continuations,
                                seed=args.seed, prompts_per_call=args.prompts_per_call)
    print(json.dumps({**out, "workdir": args.workdir, "seed": args.seed}))


if __name__ == "__main__":
    main()

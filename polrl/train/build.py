"""From an experiment config (``ml_collections.ConfigDict``) to a ``RunSpec``.

Config layout (every experiment in ``experiments/`` follows it)::

  seed, total_steps, eval_every, checkpoint_every, log_every
  task:       name (a factory in polrl.tasks, e.g. "arithmetic") + its keyword arguments;
              data_dir ("" → $POLRL_DATA_DIR or ~/.cache/polrl/data)
  model:      TransformerConfig fields except vocab_size (taken from the task's tokenizer)
  demos:      num (size of the fixed labelled set drawn from train), batch_size
  warmup:     steps (SFT warm start on the demos; 0 skips it), learning_rate
  algorithm:  a noun in polrl.algorithms ("grpo", "ppo", "dpo", "sft"); algorithm_kwargs
  batches:    "demonstrations" | "rollouts" | "preference_pairs"
  rollout:    batch_size (sequences per step = prompts × group_size), group_size,
              max_new_tokens (0 → the task's longest answer),
              temperature, top_k, top_p
  eval:       num_examples, batch_size
"""
from __future__ import annotations

import os

import numpy as np
from flax import nnx

from polrl import algorithms
from polrl.models import Transformer, TransformerConfig
from polrl.rollout import SamplingConfig
from polrl.tasks import get_task
from polrl.train.trainer import Phase, RunSpec

PHASE_NAMES = {"demonstrations": "sft", "rollouts": "rl", "preference_pairs": "dpo"}


def default_data_dir() -> str:
    return os.environ.get("POLRL_DATA_DIR", os.path.expanduser("~/.cache/polrl/data"))


def build_task(config):
    kwargs = dict(config.task)
    name = kwargs.pop("name")
    data_dir = kwargs.pop("data_dir", "") or default_data_dir()
    return get_task(name, data_dir=data_dir, **kwargs)


def demonstrations(task, num: int, seed: int) -> list[dict]:
    """A fixed labelled set: ``num`` training examples drawn once with ``seed``."""
    if not 0 < num <= len(task.train):
        raise ValueError(f"demos.num={num} must be in [1, {len(task.train)}] (the train split size)")
    idx = np.random.default_rng([seed, 7]).permutation(len(task.train))[:num]
    return [task.train[int(i)] for i in idx]


def prompts_per_step(rollout) -> int:
    """Prompts per step: ``rollout.batch_size`` sequences in groups of ``rollout.group_size``."""
    if rollout.group_size < 1 or rollout.batch_size % rollout.group_size:
        raise ValueError(
            f"rollout.batch_size={rollout.batch_size} is not divisible by rollout.group_size="
            f"{rollout.group_size}; make batch_size a multiple of group_size (prompts × samples per prompt)"
        )
    return rollout.batch_size // rollout.group_size


def build_spec(config, *, progress: bool = True) -> RunSpec:
    """Resolves names to real objects and validates what can be checked without compiling."""
    algo_fn = algorithms.get(config.algorithm)
    main = algo_fn(**dict(config.algorithm_kwargs))
    if config.batches not in PHASE_NAMES:
        raise ValueError(f"config.batches={config.batches!r}; use one of {sorted(PHASE_NAMES)}")
    task = build_task(config)
    demos = demonstrations(task, config.demos.num, config.seed)
    phases = []
    if config.warmup.steps:
        warm = algorithms.sft(learning_rate=config.warmup.learning_rate)
        phases.append(Phase("sft_warmup", warm, "demonstrations", config.warmup.steps, config.demos.batch_size, demos))
    main_is_sft = config.batches == "demonstrations"
    phases.append(Phase(
        PHASE_NAMES[config.batches], main, config.batches, config.total_steps,
        config.demos.batch_size if main_is_sft else prompts_per_step(config.rollout),
        demos if main_is_sft else task.train,
    ))
    if config.batches == "preference_pairs" and not config.warmup.steps:
        raise ValueError("batches='preference_pairs' samples pairs from the warm model: set warmup.steps > 0")

    needs_values = any("values" in ph.algorithm.needs for ph in phases)
    model_cfg = TransformerConfig(vocab_size=task.tokenizer.vocab_size, value_head=needs_values, **dict(config.model))
    model = Transformer(model_cfg, rngs=nnx.Rngs(config.seed))
    graphdef, params = nnx.split(model, nnx.Param)

    r = config.rollout
    sampling = SamplingConfig(
        max_new_tokens=r.max_new_tokens or task.max_answer_len,
        eos_id=task.tokenizer.eos_id,
        pad_id=task.tokenizer.pad_id,
        temperature=r.temperature,
        top_k=r.top_k,
        top_p=r.top_p,
    )
    return RunSpec(
        task=task,
        graphdef=graphdef,
        init_params=params,
        phases=tuple(phases),
        sampling=sampling,
        group_size=r.group_size,
        seed=config.seed,
        eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every,
        eval_examples=config.eval.num_examples,
        eval_batch_size=config.eval.batch_size,
        log_every=config.get("log_every", 1),
        progress=progress,
    )

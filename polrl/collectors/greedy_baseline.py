"""ReMax's baseline: the reward of one greedy response per prompt."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from polrl.collectors.context import Context, check_one_group_per_prompt, repeat_rows
from polrl.collectors.group_samples import device_reward
from polrl.core import Collector
from polrl.rollout import sample

FIELD = "greedy_reward_b"


def with_greedy_baseline():
    """``(collector, context) -> collector``: adds ``aux["greedy_reward_b"]``, the task's reward
    of the greedy (temperature 0) response to each row's prompt, shared by the prompt's group
    (ReMax, arXiv 2310.10505). The inner collector must return one group per prompt; the task
    must have a device reward."""

    def wrap(inner: Collector, ctx: Context) -> Collector:
        if ctx.task.device_reward is None:
            raise ValueError(f"with_greedy_baseline: task {ctx.task.name!r} has only a host reward; the greedy "
                             f"baseline needs a task with a device reward")
        greedy = dataclasses.replace(ctx.sampling, temperature=0.0)

        def collect(cstate, state, data, rng):
            batch, cstate, metrics = inner.collect(cstate, state, data, rng)
            out = sample(ctx.graphdef, state.params, data["prompt_bp"], data["prompt_valid_bp"], rng, greedy)
            base = device_reward(ctx, out.response_bt, out.mask_bt, data["answer_ba"], data["answer_valid_ba"])
            check_one_group_per_prompt(batch, base.shape[0], "with_greedy_baseline")
            return batch.replace(aux={**batch.aux, FIELD: repeat_rows(base, batch.group_size)}), cstate, metrics

        def example(prompts):
            ex = inner.example(prompts)
            return ex.replace(aux={**ex.aux, FIELD: jax.ShapeDtypeStruct((ex.batch_size,), jnp.float32)})

        return inner._replace(collect=collect, example=example)

    return wrap

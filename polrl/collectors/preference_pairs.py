"""Preference pairs from sampled groups: the best and the worst sample of each prompt."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl.collectors.context import Context
from polrl.collectors.group_samples import group_samples
from polrl.core import Batch, Collector


def best_and_worst_rows(reward_b, group_size: int) -> jax.Array:
    """int [2·groups]: the rows ``[best_0, worst_0, best_1, worst_1, …]`` of consecutive groups of
    ``group_size`` rows, best/worst = the first arg-max/arg-min of ``reward_b`` within the group."""
    r = reward_b.reshape(-1, group_size)
    base = jnp.arange(r.shape[0]) * group_size
    return jnp.stack([base + jnp.argmax(r, axis=1), base + jnp.argmin(r, axis=1)], axis=1).reshape(-1)


def best_and_worst(batch: Batch) -> Batch:
    """Rows ``[best_0, worst_0, best_1, worst_1, …]`` of each group, as groups of two.

    Best/worst are the first arg-max/arg-min of ``reward_b`` within the group
    (``best_and_worst_rows``); a group whose rewards are all equal yields a tie, which the
    preference loss ignores.
    """
    rows = best_and_worst_rows(batch.reward_b, batch.group_size)
    pairs = jax.tree.map(lambda x: x[rows], batch.replace(group_b=None))
    return pairs.replace(group_b=jnp.arange(rows.shape[0], dtype=jnp.int32) // 2, group_size=2)


def preference_pairs(ctx: Context, *, policy: str = "reference", group_size: int | None = None,
                     scored_by=None) -> Collector:
    """G samples per prompt (``group_samples``, from the frozen reference by default: DPO on
    the warm model's own samples, or ``policy="current"`` for on-policy pairs), ranked by the
    verifier — or by ``scored_by``, a wrapper ``(collector, ctx) -> collector`` that rescores the G
    samples (``with_reward_model``, ``with_density_ratio``) — then the best and the worst of each
    prompt as a pair (``best_and_worst``). Metrics describe all G samples."""
    samples = group_samples(ctx, group_size=group_size, policy=policy)
    if samples.host:
        raise ValueError(f"preference_pairs: task {ctx.task.name!r} has only a host reward; pairs are ranked "
                         f"inside the compiled step and need a task with a device reward")
    if scored_by is not None:
        samples = scored_by(samples, ctx)

    def collect(cstate, state, data, rng):
        batch, cstate, metrics = samples.collect(cstate, state, data, rng)
        return best_and_worst(batch), cstate, metrics

    def example(prompts):
        full = samples.example(prompts)
        pairs = jax.tree.map(lambda x: jax.ShapeDtypeStruct((prompts * 2,) + x.shape[1:], x.dtype), full)
        return pairs.replace(group_size=2)

    return samples._replace(collect=collect, example=example)

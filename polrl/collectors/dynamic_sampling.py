"""DAPO's dynamic sampling with static shapes: draw more prompts, keep the informative groups."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import ops
from polrl.core import Batch, Collector


def keep_informative_groups(batch: Batch, num_groups: int) -> tuple[Batch, dict]:
    """Keep ``num_groups`` of the batch's groups, those whose rewards are not all equal first
    (in draw order), then zero-variance ones.

    The batch was drawn with ``oversample ×`` as many prompts as a step trains on, which plays
    the role of DAPO's "sample more prompts until the batch is full"; when too few informative
    groups were drawn, the remaining slots hold zero-variance groups (no signal with
    group-relative advantages). Logs ``dynamic/informative_frac`` (informative groups kept ÷
    ``num_groups``) and ``dynamic/drawn_informative_frac`` (of all drawn groups).
    """
    g = batch.group_size
    drawn = batch.batch_size // g
    if num_groups > drawn:
        raise ValueError(f"keep_informative_groups: asked for {num_groups} groups, the batch has {drawn}")
    zero_g = ops.zero_variance_groups(batch.reward_b, batch.group_b, batch.batch_size)[::g]
    order = jnp.argsort(zero_g.astype(jnp.int32), stable=True)[:num_groups]
    rows = (order[:, None] * g + jnp.arange(g)).reshape(-1)
    kept = jax.tree.map(lambda x: x[rows], batch.replace(group_b=None))
    kept = kept.replace(group_b=jnp.arange(num_groups * g, dtype=jnp.int32) // g)
    informative = (~zero_g).astype(jnp.float32)
    metrics = {
        "dynamic/informative_frac": informative[order].mean(),
        "dynamic/drawn_informative_frac": informative.mean(),
    }
    return kept, metrics


def dynamic_sampling(oversample: int):
    """``(collector, context) -> collector``: the inner collector runs on ``oversample ×`` the
    step's prompts (its metrics describe all drawn rows); ``keep_informative_groups`` keeps as
    many groups as the step has prompts, informative ones first (DAPO, arXiv 2503.14476)."""
    if oversample < 1:
        raise ValueError(f"dynamic_sampling: oversample={oversample} must be >= 1")

    def wrap(inner: Collector, ctx) -> Collector:
        del ctx

        def collect(cstate, state, data, rng):
            batch, cstate, metrics = inner.collect(cstate, state, data, rng)
            kept, dm = keep_informative_groups(batch, batch.batch_size // batch.group_size // oversample)
            return kept, cstate, {**metrics, **dm}

        def example(prompts):
            full = inner.example(prompts * oversample)
            rows = full.batch_size // oversample
            return jax.tree.map(lambda x: jax.ShapeDtypeStruct((rows,) + x.shape[1:], x.dtype), full)

        return inner._replace(collect=collect, example=example,
                              reads=lambda prompts: inner.reads(prompts * oversample),
                              init=lambda prompts: inner.init(prompts * oversample))

    return wrap

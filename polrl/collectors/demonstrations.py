"""Labelled answers as responses: supervised fine-tuning data."""
from __future__ import annotations

import jax.numpy as jnp

from polrl.collectors.context import Context, shapes
from polrl.core import Batch, Collector


def demonstration_batch(data: dict, *, pad_id: int) -> Batch:
    """Prompt ++ answer, with the answer (incl. EOS) as the supervised response."""
    valid = data["answer_valid_ba"]
    return Batch(
        prompt_bp=data["prompt_bp"],
        prompt_valid_bp=data["prompt_valid_bp"],
        response_bt=jnp.where(valid, data["answer_ba"], pad_id),
        mask_bt=valid.astype(jnp.float32),
    )


def demonstrations(ctx: Context) -> Collector:
    """One row per prompt: its labelled answer (SFT, the warm start). Logs ``response_tokens``."""

    def collect(cstate, state, data, rng):
        del state, rng
        batch = demonstration_batch(data, pad_id=ctx.pad_id)
        return batch, cstate, {"response_tokens": batch.mask_bt.sum()}

    def example(prompts):
        return shapes(prompts, ctx.task.max_prompt_len, ctx.task.max_answer_len, 1)

    return Collector(init=lambda prompts: (), collect=collect, example=example)

"""Group sampling, the most common rollout program: prefill each prompt once, fork it into G
slots, decode (``polrl.rollout.engine``).

    slots = extend(init_slots(model, B, P + N), prompt_bp, prompt_valid_bp)   # one prefill
    slots = repeat(slots, G)                                                    # fork ×G
    out, _ = generate(model, slots, rng, config, commit_last=False)

After a row emits ``eos_id`` it only produces ``pad_id`` (mask 0, logp 0). An ``eos_id``
outside [0, vocab) is never produced, which disables stopping: the loop then runs exactly
``max_new_tokens`` steps and skips the every-step "all rows done?" test (under a mesh that
test is a cross-device all-reduce, a synchronisation point of every decode step).
"""
from __future__ import annotations

from typing import Callable

import flax
import jax
import jax.numpy as jnp
from flax import nnx

from polrl import sharding
from polrl.rollout import engine
from polrl.rollout.sampling import SamplingConfig


@flax.struct.dataclass
class SampleOutput:
    """Sampled responses (N = max_new_tokens); see the field comments."""

    response_bt: jax.Array  # int32 [B, N], pad_id after EOS
    logp_bt: jax.Array      # float32 [B, N], log π_T(token), 0 where mask is 0
    mask_bt: jax.Array      # float32 [B, N], 1 up to and including the first EOS
    length_b: jax.Array     # int32 [B], generated tokens including EOS


def sample(graphdef: nnx.GraphDef, params: nnx.State, prompt_bp: jax.Array,
           prompt_valid_bp: jax.Array, rng: jax.Array, config: SamplingConfig,
           num_samples: int = 1) -> SampleOutput:
    """Sample ``config.max_new_tokens`` tokens after LEFT-padded prompts. Pure and jittable.

    Every row needs at least one valid prompt token (its last column is the last real one).
    With ``num_samples`` = G > 1 each prompt is prefilled once and forked into G slots, giving
    B·G rows ordered like ``jnp.repeat(prompt_bp, G, axis=0)`` (the same samples as passing
    the repeated prompts, without G-fold prefill work).
    """
    b, p = prompt_bp.shape
    assert prompt_valid_bp.shape == (b, p) and prompt_valid_bp.dtype == jnp.bool_, (
        prompt_valid_bp.shape, prompt_valid_bp.dtype)
    assert num_samples >= 1, num_samples
    # Under a mesh: weights in the rollout layout, rows split over the batch axes.
    model = nnx.merge(graphdef, sharding.reshard_for_rollout(params))
    prompt_bp, prompt_valid_bp = sharding.constrain_batch((prompt_bp, prompt_valid_bp), rollout=True)
    slots = engine.extend(model, engine.init_slots(model, b, p + config.max_new_tokens), prompt_bp, prompt_valid_bp)
    if num_samples > 1:
        slots = engine.repeat(slots, num_samples)
    out, _ = engine.generate(model, slots, rng, config, commit_last=False)
    return SampleOutput(response_bt=out.tokens_sn, logp_bt=out.logp_sn, mask_bt=out.mask_sn, length_b=out.length_s)


def make_sampler(graphdef: nnx.GraphDef, config: SamplingConfig, num_samples: int = 1
                 ) -> Callable[[nnx.State, jax.Array, jax.Array, jax.Array], SampleOutput]:
    """``sample`` with graphdef, config and num_samples bound, jitted once:
    (params, prompt, valid, rng) → SampleOutput."""
    return jax.jit(lambda params, prompt_bp, prompt_valid_bp, rng: sample(
        graphdef, params, prompt_bp, prompt_valid_bp, rng, config, num_samples))

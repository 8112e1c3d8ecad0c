"""Autoregressive sampling: one prefill over the prompt, then a ``lax.while_loop`` of
single-token decode steps against a KV cache, all inside one jitted function.

Token i of the response is drawn from π_T(· | prompt, y<i) with
    log π_T = log_softmax(logits / T)                       (T = temperature; T = 0 → argmax)
restricted first to the top-k logits (top_k > 0), then to the smallest set of tokens whose
probability mass reaches top_p (top_p < 1). The recorded ``logp`` is always the log-prob
under the untruncated log_softmax(logits / T) (T = 1 when greedy), i.e. exactly what the
training forward computes over concat(prompt, response) with positions cumsum(valid) − 1.

After a row emits ``eos_id`` it only produces ``pad_id`` (mask 0, logp 0). An ``eos_id``
outside [0, vocab) is never produced, which disables stopping: the loop then runs exactly
``max_new_tokens`` steps and skips the every-step "all rows done?" test (under a mesh that
test is a cross-device all-reduce, a synchronisation point of every decode step).

The decode step is kept lean: one uniform per row and step is drawn before the loop
(no RNG inside it), sampling needs no length-V cumsum or Gumbel noise (two-level
inverse CDF), and only the last position's logits are computed.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import flax
import jax
import jax.numpy as jnp
from flax import nnx

from polrl import sharding
from polrl.models import init_cache


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """Static sampling options (part of the compiled function)."""

    max_new_tokens: int
    eos_id: int
    pad_id: int = 0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    eos_check_every: int = 1

    def __post_init__(self):
        if self.max_new_tokens <= 0:
            raise ValueError(f"SamplingConfig.max_new_tokens must be > 0, got "
                             f"{self.max_new_tokens}.")
        if self.temperature < 0:
            raise ValueError(f"SamplingConfig.temperature must be >= 0 (0 = greedy), got "
                             f"{self.temperature}.")
        if self.top_k < 0:
            raise ValueError(f"SamplingConfig.top_k must be >= 0 (0 = off), got {self.top_k}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"SamplingConfig.top_p must be in (0, 1] (1 = off), got {self.top_p}.")
        if self.eos_check_every <= 0:
            raise ValueError(f"SamplingConfig.eos_check_every must be >= 1, got "
                             f"{self.eos_check_every}.")


@flax.struct.dataclass
class SampleOutput:
    """Sampled responses (N = max_new_tokens); see the field comments."""

    response_bt: jax.Array  # int32 [B, N], pad_id after EOS
    logp_bt: jax.Array      # float32 [B, N], log π_T(token), 0 where mask is 0
    mask_bt: jax.Array      # float32 [B, N], 1 up to and including the first EOS
    length_b: jax.Array     # int32 [B], generated tokens including EOS


def _keep_mask(scaled_bv: jax.Array, top_k: int, top_p: float) -> jax.Array:
    """Tokens that survive top-k, then the top-p nucleus (both optional).

    Nucleus: sort descending, keep token j iff the mass strictly before it is < top_p
    (so the token that crosses top_p is kept, and so is the top token always).
    """
    if top_k > 0:
        top_bk = jax.lax.top_k(scaled_bv, min(top_k, scaled_bv.shape[-1]))[0]
    else:
        top_bk = -jnp.sort(-scaled_bv, axis=-1)
    if top_p < 1.0:
        probs_bk = jax.nn.softmax(top_bk, axis=-1)
        mass_before_bk = jnp.cumsum(probs_bk, axis=-1) - probs_bk
        top_bk = jnp.where(mass_before_bk < top_p, top_bk, jnp.inf)
    return scaled_bv >= jnp.min(top_bk, axis=-1, keepdims=True)


def _inverse_cdf(weight_bv: jax.Array, u_b: jax.Array) -> jax.Array:
    """First j with C_j ≥ u·C_V, C = cumsum(w), for w ≥ 0 and u ∈ (0, 1]: P(j) = w_j / Σw.

    Two levels so no length-V cumsum is needed (XLA's is slow on CPU): split the vocab
    into blocks of c ≈ √V, pick block J by inverse CDF over the block masses, then the
    token inside J by inverse CDF with the leftover fraction of J's mass. Each level
    counts entries strictly below a target in (0, total], so it never picks a zero weight.
    """
    b, v = weight_bv.shape
    c = 1 << math.ceil(math.log2(v) / 2)
    nb = -(-v // c)
    w_bnc = jnp.pad(weight_bv, ((0, 0), (0, nb * c - v))).reshape(b, nb, c)
    mass_bn = jnp.sum(w_bnc, axis=-1)
    cdf_bn = jnp.cumsum(mass_bn, axis=-1)
    target_b = u_b * cdf_bn[:, -1]
    block_b = jnp.sum(cdf_bn < target_b[:, None], axis=-1)
    mass_b = jnp.take_along_axis(mass_bn, block_b[:, None], axis=-1)[:, 0]
    before_b = jnp.take_along_axis(cdf_bn, block_b[:, None], axis=-1)[:, 0] - mass_b
    frac_b = jnp.clip((target_b - before_b) / mass_b, jnp.finfo(jnp.float32).tiny, 1.0)
    inner_bc = jnp.take_along_axis(w_bnc, block_b[:, None, None], axis=1)[:, 0]
    inner_cdf_bc = jnp.cumsum(inner_bc, axis=-1)
    inner_b = jnp.sum(inner_cdf_bc < (frac_b * inner_cdf_bc[:, -1])[:, None], axis=-1)
    return (block_b * c + inner_b).astype(jnp.int32)


def _draw(logits_bv: jax.Array, uniform_b: jax.Array, config: SamplingConfig):
    """One token per row and its log-prob under the untruncated tempered softmax.

    With x = logits / T and w = exp(x − max x) on the kept tokens (0 elsewhere), the token
    is drawn by inverse CDF from w with u = 1 − uniform_b ∈ (0, 1] (uniform_b ∈ [0, 1));
    log p = x_tok − logsumexp(x).
    """
    assert uniform_b.shape == logits_bv.shape[:1], (uniform_b.shape, logits_bv.shape)
    scaled_bv = logits_bv if config.temperature == 0.0 else logits_bv / config.temperature
    max_b1 = jnp.max(scaled_bv, axis=-1, keepdims=True)
    weight_bv = jnp.exp(scaled_bv - max_b1)
    log_z_b = max_b1[:, 0] + jnp.log(jnp.sum(weight_bv, axis=-1))
    if config.temperature == 0.0:
        token_b = jnp.argmax(logits_bv, axis=-1).astype(jnp.int32)
    else:
        if config.top_k > 0 or config.top_p < 1.0:
            weight_bv = jnp.where(_keep_mask(scaled_bv, config.top_k, config.top_p), weight_bv, 0.0)
        token_b = _inverse_cdf(weight_bv, 1.0 - uniform_b)
    logp_b = jnp.take_along_axis(scaled_bv, token_b[:, None], axis=-1)[:, 0] - log_z_b
    return token_b, logp_b


def _constrain_rows(cache):
    """The KV cache split over the batch axes (and KV heads over ``tensor``) under a mesh."""
    heads = lambda x: sharding.constrain(x, ("batch", "kv_heads", None, None), rollout=True)
    return cache.replace(k=tuple(map(heads, cache.k)), v=tuple(map(heads, cache.v)),
                         valid_bs=sharding.constrain_batch(cache.valid_bs, rollout=True))


def sample(graphdef: nnx.GraphDef, params: nnx.State, prompt_bp: jax.Array,
           prompt_valid_bp: jax.Array, rng: jax.Array, config: SamplingConfig,
           num_samples: int = 1) -> SampleOutput:
    """Sample ``config.max_new_tokens`` tokens after LEFT-padded prompts. Pure and jittable.

    Every row needs at least one valid prompt token (its last column is the last real one).
    With ``num_samples`` = G > 1 each prompt is prefilled once and its cache repeated, giving
    B·G rows ordered like ``jnp.repeat(prompt_bp, G, axis=0)`` (the same samples as passing
    the repeated prompts, without G-fold prefill work).
    """
    b, p = prompt_bp.shape
    n = config.max_new_tokens
    assert prompt_valid_bp.shape == (b, p) and prompt_valid_bp.dtype == jnp.bool_, (
        prompt_valid_bp.shape, prompt_valid_bp.dtype)
    assert num_samples >= 1, num_samples
    # Under a mesh: weights in the rollout layout, rows split over the batch axes.
    model = nnx.merge(graphdef, sharding.reshard_for_rollout(params))
    prompt_bp, prompt_valid_bp = sharding.constrain_batch((prompt_bp, prompt_valid_bp), rollout=True)
    cache = init_cache(model.config, b, p + n)
    positions_bp = jnp.maximum(jnp.cumsum(prompt_valid_bp, axis=1, dtype=jnp.int32) - 1, 0)
    hidden, cache = model.forward(prompt_bp.astype(jnp.int32), positions_bp, prompt_valid_bp, cache)
    logits_bv = model.logits(hidden[:, -1])
    next_pos_b = positions_bp[:, -1] + 1
    if num_samples > 1:
        repeat = lambda x: jnp.repeat(x, num_samples, axis=0) if x.ndim else x
        cache, logits_bv, next_pos_b = jax.tree.map(repeat, (cache, logits_bv, next_pos_b))
        b *= num_samples
    cache, logits_bv = _constrain_rows(cache), sharding.constrain_batch(logits_bv, rollout=True)
    uniform_nb = jax.random.uniform(rng, (n, b))  # all randomness drawn up front
    token_b, logp_b = _draw(logits_bv, uniform_nb[0], config)

    def record(i, token_b, logp_b, done_b, out):
        """Write step i; a row already done emits pad with mask 0."""
        response, logp, mask = out
        live_b = ~done_b
        token_b = jnp.where(live_b, token_b, config.pad_id)
        response = jax.lax.dynamic_update_slice(response, token_b[:, None], (0, i))
        logp = jax.lax.dynamic_update_slice(logp, jnp.where(live_b, logp_b, 0.0)[:, None], (0, i))
        mask = jax.lax.dynamic_update_slice(mask, live_b.astype(jnp.float32)[:, None], (0, i))
        return token_b, done_b | (token_b == config.eos_id), (response, logp, mask)

    empty = (jnp.full((b, n), config.pad_id, jnp.int32), jnp.zeros((b, n), jnp.float32),
             jnp.zeros((b, n), jnp.float32))
    token_b, done_b, out = record(0, token_b, logp_b, jnp.zeros((b,), bool), empty)

    can_stop = 0 <= config.eos_id < model.config.vocab_size

    def cond(state):
        i, _, done_b, _, _ = state
        if not can_stop:
            return i < n
        check = (i % config.eos_check_every) == 0
        return (i < n) & ~(check & jnp.all(done_b))

    def body(state):
        i, token_b, done_b, cache, out = state
        hidden, cache = model.forward(token_b[:, None], (next_pos_b + i - 1)[:, None],
                                      jnp.ones((b, 1), bool), cache)
        cache = _constrain_rows(cache)
        token_b, logp_b = _draw(model.logits(hidden[:, 0]), uniform_nb[i], config)
        token_b, done_b, out = record(i, token_b, logp_b, done_b, out)
        return i + 1, token_b, done_b, cache, out

    state = (jnp.ones((), jnp.int32), token_b, done_b, cache, out)
    _, _, _, _, (response, logp, mask) = jax.lax.while_loop(cond, body, state)
    return SampleOutput(response_bt=response, logp_bt=logp, mask_bt=mask,
                        length_b=mask.sum(axis=1).astype(jnp.int32))


def make_sampler(graphdef: nnx.GraphDef, config: SamplingConfig, num_samples: int = 1
                 ) -> Callable[[nnx.State, jax.Array, jax.Array, jax.Array], SampleOutput]:
    """``sample`` with graphdef, config and num_samples bound, jitted once:
    (params, prompt, valid, rng) → SampleOutput."""
    return jax.jit(lambda params, prompt_bp, prompt_valid_bp, rng: sample(
        graphdef, params, prompt_bp, prompt_valid_bp, rng, config, num_samples))

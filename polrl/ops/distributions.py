"""Log-probabilities and entropies of categorical policies given by logits.

Logits are divided by the sampling ``temperature`` first, so the scores match the distribution
the tokens were sampled from, and are computed in float32 whatever the logits' dtype (float64
logits stay float64).
"""
from __future__ import annotations

from typing import Callable

import chex
import jax
import jax.numpy as jnp

Array = jax.Array


def _scaled(logits: Array, temperature: float) -> Array:
    return logits.astype(jnp.promote_types(logits.dtype, jnp.float32)) / temperature


def log_softmax_at(logits_btv: Array, tokens_bt: Array, temperature: float = 1.0) -> Array:
    """log π(x_t) = z_{x_t} − log Σ_v exp z_v with z = logits / temperature.

    Args:
      logits_btv: [B, T, V].
      tokens_bt: int token ids [B, T].

    Returns:
      logp_bt [B, T], float32.
    """
    chex.assert_rank([logits_btv, tokens_bt], [3, 2])
    chex.assert_type(tokens_bt, int)
    chex.assert_equal_shape_prefix([logits_btv, tokens_bt], 2)
    z = _scaled(logits_btv, temperature)
    z_at = jnp.take_along_axis(z, tokens_bt[..., None], axis=-1)[..., 0]
    return z_at - jax.nn.logsumexp(z, axis=-1)


def entropy_from_logits(logits_btv: Array, temperature: float = 1.0) -> Array:
    """H = −Σ_v π_v log π_v with π = softmax(logits / temperature); [B, T], float32.

    Entries with π_v = 0 (logit −inf) contribute 0, in value and gradient.
    """
    chex.assert_rank(logits_btv, 3)
    logp = jax.nn.log_softmax(_scaled(logits_btv, temperature), axis=-1)
    p = jnp.exp(logp)
    positive = p > 0
    return -jnp.sum(jnp.where(positive, p * jnp.where(positive, logp, 0), 0), axis=-1)


def token_logp_and_entropy(
    hidden_btd: Array,
    head_fn: Callable[[Array], Array],
    tokens_bt: Array,
    *,
    chunk_size: int,
    temperature: float = 1.0,
    with_mean: bool = False,
):
    """``log_softmax_at`` and ``entropy_from_logits`` of ``head_fn(hidden)``, by chunks of T
    (and, with ``with_mean``, ``mean_log_prob_from_logits`` from the same chunks).

    The LM head is applied to ``chunk_size`` positions at a time inside ``lax.map``, so only one
    [B, chunk_size, V] block of logits exists at once. Each chunk is rematerialized
    (``jax.checkpoint``) so the backward pass does not store every block's logits either. T need
    not be a multiple of ``chunk_size`` (the tail is padded, then dropped).

    Args:
      hidden_btd: final hidden states [B, T, D].
      head_fn: [B, C, D] hidden → [B, C, V] logits (closing over its parameters).
      tokens_bt: int token ids [B, T].
      chunk_size: C, static.
      temperature: sampling temperature.

    Returns:
      (logp_bt, entropy_bt), each [B, T] float32; with ``with_mean``, (logp_bt, entropy_bt, mean_bt).
    """
    chex.assert_rank([hidden_btd, tokens_bt], [3, 2])
    chex.assert_equal_shape_prefix([hidden_btd, tokens_bt], 2)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    batch, length, _ = hidden_btd.shape
    num_chunks = -(-length // chunk_size)
    pad = num_chunks * chunk_size - length
    hidden_btd = jnp.pad(hidden_btd, ((0, 0), (0, pad), (0, 0)))
    tokens_bt = jnp.pad(tokens_bt, ((0, 0), (0, pad)))

    def to_chunks(x):  # [B, n·C, …] → [n, B, C, …]
        x = x.reshape(batch, num_chunks, chunk_size, *x.shape[2:])
        return jnp.moveaxis(x, 1, 0)

    @jax.checkpoint
    def score(chunk):
        hidden, tokens = chunk
        logits = head_fn(hidden)
        scores = (log_softmax_at(logits, tokens, temperature), entropy_from_logits(logits, temperature))
        return (*scores, mean_log_prob_from_logits(logits, temperature)) if with_mean else scores

    outs = jax.lax.map(score, (to_chunks(hidden_btd), to_chunks(tokens_bt)))

    def from_chunks(x):  # [n, B, C] → [B, T]
        return jnp.moveaxis(x, 0, 1).reshape(batch, num_chunks * chunk_size)[:, :length]

    return tuple(from_chunks(x) for x in outs)


def mean_log_prob_from_logits(logits_btv: Array, temperature: float = 1.0) -> Array:
    """m = (1/V) Σ_v log softmax(z)_v = mean_v z_v − logsumexp_v z_v, z = logits / temperature.

    The vocabulary mean of the log-probs at each position ([B, T], float32; float64 logits stay
    float64), without forming the [B, T, V] log-probs: one more reduction over V next to the
    logsumexp the log-probs already take (ROVER's uniform-policy value).
    """
    z = logits_btv.astype(jnp.promote_types(logits_btv.dtype, jnp.float32)) / temperature
    return jnp.mean(z, axis=-1) - jax.nn.logsumexp(z, axis=-1)

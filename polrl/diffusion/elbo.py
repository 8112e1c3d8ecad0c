"""Monte-Carlo ELBO of a masked-diffusion model's log-likelihood log π_θ(y | x).

LLaDA ("Large Language Diffusion Models", arXiv 2502.09992) bounds the log-likelihood of a
response y of length L given a prompt x by

    log π_θ(y | x) ≥ B_θ(y | x) = E_t E_{y_t ~ q_t(·|y)} [ (1/t) Σ_{i: y_t,i = M} log p_θ(y_i | x, y_t) ],

t ~ U(0, 1), every response token masked (M) independently with probability t, the prompt never.
Conditioning on the number m of masked tokens, ∫₀¹ t^{m−1} (1 − t)^{L−m} dt = 1 / (m·C(L, m)), so

    B_θ(y | x) = Σ_{M ⊆ {1..L}, M ≠ ∅} 1/(|M|·C(L, |M|)) Σ_{i ∈ M} log p_θ(y_i | x, y with M masked)
               = E_{l ~ U{1..L}} E_{M uniform, |M| = l} [ (L/l) Σ_{i ∈ M} log p_θ(y_i | x, y_M) ],

the lower-variance form LLaDA uses to evaluate likelihoods (its (L/l) weight stays ≤ L where 1/t is
unbounded). Each of the K Monte-Carlo samples draws (l_k, M_k) from its own key
``fold_in(key, k)``; the estimate is

    B̂_θ = (1/K) Σ_k ℓ_k,   ℓ_k = (L/l_k) Σ_{i ∈ M_k} log p_θ(y_i | x, y_{M_k}).

The same key gives π_θ and π_old the same masks (BGPO, arXiv 2510.11683, evaluates both ELBOs on
shared samples), and sample k is the same whether the K samples are drawn together or one at a time.
The bound is the expectation over uniformly random unmasking orders σ of the order's
autoregressive log-likelihood, E_σ Σ_j log p_θ(y_{σ_j} | x, y_{σ_<j}), hence ≤ log E_σ Π_j p_θ(…).

INFERRED: the samples use the count form (l, then M) rather than drawing t; both have the
expectation above, and the count form's weights are bounded by L.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

# (tokens [B, T], valid [B, T]) -> log-probabilities [B, T, V]
LogProbsFn = Callable[[jax.Array, jax.Array], jax.Array]


def draw_mask(key: jax.Array, batch: int, length: int) -> tuple[jax.Array, jax.Array]:
    """One sample per row: l ~ U{1..L}, then l of the L positions uniformly without replacement.

    Returns (masked [B, L] bool, weight [B] = L / l).
    """
    count_key, order_key = jax.random.split(key)
    count_b = jax.random.randint(count_key, (batch,), 1, length + 1)
    rank_bl = jnp.argsort(jnp.argsort(jax.random.uniform(order_key, (batch, length)), axis=1), axis=1)
    return rank_bl < count_b[:, None], length / count_b


def sample_term(log_probs_fn: LogProbsFn, prompt_bp: jax.Array, prompt_valid_bp: jax.Array,
                response_bl: jax.Array, masked_bl: jax.Array, weight_b: jax.Array, mask: int) -> jax.Array:
    """ℓ = weight · Σ_{i masked} log p_θ(y_i | x, y with the masked positions set to ``mask``), [B]."""
    noisy_bl = jnp.where(masked_bl, mask, response_bl)
    tokens = jnp.concatenate([prompt_bp, noisy_bl], axis=1)
    valid = jnp.concatenate([prompt_valid_bp, jnp.ones(response_bl.shape, bool)], axis=1)
    logp_blv = log_probs_fn(tokens, valid)[:, prompt_bp.shape[1]:]
    logp_bl = jnp.take_along_axis(logp_blv, response_bl[..., None], axis=-1)[..., 0]
    return weight_b.astype(logp_bl.dtype) * jnp.sum(jnp.where(masked_bl, logp_bl, 0.0), axis=1)


def elbo_samples(log_probs_fn: LogProbsFn, prompt_bp: jax.Array, prompt_valid_bp: jax.Array,
                 response_bl: jax.Array, key: jax.Array, num_samples: int, mask: int) -> jax.Array:
    """ℓ_k for k < K, [K, B]: sample k's mask from ``fold_in(key, k)``, one forward per sample in turn."""
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"elbo_samples: num_samples (K, the Monte-Carlo masks) must be an int >= 1, got "
                         f"{num_samples!r}.")
    b, length = response_bl.shape

    def one(k):
        masked_bl, weight_b = draw_mask(jax.random.fold_in(key, k), b, length)
        return sample_term(log_probs_fn, prompt_bp, prompt_valid_bp, response_bl, masked_bl, weight_b, mask)

    return jax.lax.map(one, jnp.arange(num_samples))


def elbo(log_probs_fn: LogProbsFn, prompt_bp: jax.Array, prompt_valid_bp: jax.Array, response_bl: jax.Array,
         key: jax.Array, num_samples: int, mask: int) -> jax.Array:
    """B̂_θ(y | x) = (1/K) Σ_k ℓ_k, [B]."""
    return jnp.mean(elbo_samples(log_probs_fn, prompt_bp, prompt_valid_bp, response_bl, key, num_samples, mask),
                    axis=0)

"""Sampling a masked-diffusion model: S steps of iterative unmasking with low-confidence remasking.

LLaDA ("Large Language Diffusion Models", arXiv 2502.09992), reverse process: the response starts
as L mask ids. Step s = 0 … S−1 predicts every masked position at once,

    ŷ_i ~ softmax(log p_θ(· | x, y) / τ)   (τ = 0: ŷ_i = argmax),   c_i = p_θ(ŷ_i | x, y),

keeps the n_s predictions of highest confidence c_i and remasks the others (low-confidence
remasking), with n_s = ⌊L/S⌋ + [s < L mod S] so that Σ_s n_s = L and no mask is left after S
steps. The prompt is never changed. Sampling at τ > 0 uses the Gumbel-max draw
argmax(log p / τ + g), which has the law of softmax(log p / τ).

INFERRED: ties in confidence commit the leftmost position first (a stable sort); LLaDA's
semi-autoregressive blocks are not used (one block of length L).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl.diffusion.elbo import LogProbsFn


def unmask(log_probs_fn: LogProbsFn, prompt_bp: jax.Array, prompt_valid_bp: jax.Array, key: jax.Array, *,
           length: int, steps: int, temperature: float, mask: int) -> jax.Array:
    """A response [B, L] drawn by S = ``steps`` unmasking steps (see the module docstring)."""
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"unmask: length (the response length L) must be an int >= 1, got {length!r}.")
    if not isinstance(steps, int) or not 1 <= steps <= length:
        raise ValueError(f"unmask: steps must be an int in [1, length={length}] (each step unmasks at least one "
                         f"token), got {steps!r}.")
    if temperature < 0:
        raise ValueError(f"unmask: temperature must be >= 0 (0 = greedy), got {temperature!r}.")
    b, p = prompt_bp.shape
    valid = jnp.concatenate([prompt_valid_bp, jnp.ones((b, length), bool)], axis=1)

    def step(s, response_bl):
        logp_blv = log_probs_fn(jnp.concatenate([prompt_bp, response_bl], axis=1), valid)[:, p:]
        if temperature > 0:
            gumbel = jax.random.gumbel(jax.random.fold_in(key, s), logp_blv.shape, logp_blv.dtype)
            pred_bl = jnp.argmax(logp_blv / temperature + gumbel, axis=-1)
        else:
            pred_bl = jnp.argmax(logp_blv, axis=-1)
        masked_bl = response_bl == mask
        conf_bl = jnp.take_along_axis(logp_blv, pred_bl[..., None], axis=-1)[..., 0]
        conf_bl = jnp.where(masked_bl, conf_bl, -jnp.inf)
        rank_bl = jnp.argsort(jnp.argsort(-conf_bl, axis=1, stable=True), axis=1)
        count = length // steps + (s < length % steps)
        commit_bl = masked_bl & (rank_bl < count)
        return jnp.where(commit_bl, pred_bl.astype(response_bl.dtype), response_bl)

    start = jnp.full((b, length), mask, prompt_bp.dtype)
    return jax.lax.fori_loop(0, steps, step, start)

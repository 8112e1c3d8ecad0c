"""BGPO: a linear lower bound of the ELBO-ratio objective, so K Monte-Carlo samples cost one's memory.

"Boundary-Guided Policy Optimization for Memory-efficient RL of Diffusion Large Language Models"
(arXiv 2510.11683). A masked-diffusion policy has no tractable log π_θ(y | x); RL for it replaces
log π by the ELBO estimate B̂_θ = (1/K) Σ_k ℓ_k^θ (:mod:`polrl.diffusion.elbo`), π_θ and π_old
scored on the same K masks. With d_k = ℓ_k^θ − ℓ_k^old and a group-relative advantage A (GRPO,
``polrl.ops.group_advantages``) the ELBO-ratio objective of one response is

    J = A · exp(B̂_θ − B̂_old) = A · exp((1/K) Σ_k d_k),

non-linear in the samples: ∇J = A·exp(·)·(1/K) Σ_k ∇ℓ_k^θ needs every sample's ∇ℓ_k^θ at once,
so reverse mode keeps the activations of all K forwards (memory O(K)). BGPO maximizes instead

    J_lb = (1/K) Σ_k j_k,   j_k = A · (1 + d_k)   if A ≥ 0   (exp(x) ≥ 1 + x),
                            j_k = A · exp(d_k)    if A < 0   (Jensen: exp(mean d) ≤ mean exp(d)),

so J_lb ≤ J for every θ (A ≥ 0 multiplies a lower bound of the exponential; A < 0 an upper bound),
and J_lb is a sum of terms that each depend on one sample: ∇J_lb = (1/K) Σ_k ∇j_k is accumulated
one sample at a time (a ``lax.scan`` whose body takes one forward and backward), memory O(1) in K.
On-policy (θ = θ_old, all d_k = 0) J_lb = J = A and ∇J_lb = ∇J = A·(1/K) Σ_k ∇ℓ_k^θ.

The loss of a batch is −(1/B) Σ_b J_b (or J_lb), a mean over responses. Every d_k is clipped to
[−20, 20] before exp, as ``polrl.ops.log_ratio`` (docs/conventions.md).

INFERRED: the piecewise form above (tangent line for A ≥ 0, Jensen for A < 0) is the bound built
from the two properties the paper requires of it (linear in the samples; equal value and gradient
on-policy); no PPO clipping and no KL term (one update per batch, the on-policy setting in which the
paper states BGPO's value and gradient equal the ELBO objective's); the advantage is GRPO's.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from polrl.diffusion.elbo import draw_mask, elbo_samples, sample_term

LOG_RATIO_CLAMP = 20.0
# (params, tokens [B, T], valid [B, T]) -> log-probabilities [B, T, V]
ApplyFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


def bound_terms(new_kb: jax.Array, old_kb: jax.Array, adv_b: jax.Array) -> jax.Array:
    """j_k per sample and response [K, B]: A(1 + d_k) where A ≥ 0, A·exp(d_k) where A < 0."""
    d_kb = jnp.clip(new_kb - old_kb, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return jnp.where(adv_b >= 0, adv_b * (1.0 + d_kb), adv_b * jnp.exp(d_kb))


def bgpo_loss(new_kb: jax.Array, old_kb: jax.Array, adv_b: jax.Array) -> jax.Array:
    """−(1/B) Σ_b (1/K) Σ_k j_k: BGPO's loss from all K samples' ELBO terms at once."""
    return -jnp.mean(bound_terms(new_kb, old_kb, adv_b))


def elbo_ratio_loss(new_kb: jax.Array, old_kb: jax.Array, adv_b: jax.Array) -> jax.Array:
    """−(1/B) Σ_b A_b · exp((1/K) Σ_k d_k): the non-linear ELBO-ratio objective BGPO bounds."""
    d_b = jnp.clip(jnp.mean(new_kb - old_kb, axis=0), -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return -jnp.mean(adv_b * jnp.exp(d_b))


def bgpo_value_and_grad(apply: ApplyFn, params, old_kb: jax.Array, prompt_bp: jax.Array,
                        prompt_valid_bp: jax.Array, response_bl: jax.Array, adv_b: jax.Array, key: jax.Array,
                        mask: int):
    """BGPO's loss and gradient, accumulated over the K = ``old_kb.shape[0]`` samples one at a time.

    Sample k's mask comes from ``fold_in(key, k)`` (the masks ``old_kb`` was scored on); each scan
    step differentiates −(1/(K·B)) Σ_b j_k through one forward, so peak memory does not grow with K.
    """
    num_samples, b = old_kb.shape
    length = response_bl.shape[1]

    def one(carry, k):
        masked_bl, weight_b = draw_mask(jax.random.fold_in(key, k), b, length)

        def loss_k(p):
            new_b = sample_term(lambda t, v: apply(p, t, v), prompt_bp, prompt_valid_bp, response_bl, masked_bl,
                                weight_b, mask)
            return -jnp.mean(bound_terms(new_b[None], old_kb[k][None], adv_b)) / num_samples

        value, grad = jax.value_and_grad(loss_k)(params)
        total, grads = carry
        return (total + value, jax.tree.map(jnp.add, grads, grad)), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    (loss, grads), _ = jax.lax.scan(one, (jnp.zeros((), old_kb.dtype), zeros), jnp.arange(num_samples))
    return loss, grads


def elbo_ratio_value_and_grad(apply: ApplyFn, params, old_kb: jax.Array, prompt_bp: jax.Array,
                              prompt_valid_bp: jax.Array, response_bl: jax.Array, adv_b: jax.Array,
                              key: jax.Array, mask: int):
    """The non-linear objective's loss and gradient: all K samples' forwards in one differentiated graph."""

    def loss(p):
        new_kb = elbo_samples(lambda t, v: apply(p, t, v), prompt_bp, prompt_valid_bp, response_bl, key,
                              old_kb.shape[0], mask)
        return elbo_ratio_loss(new_kb, old_kb, adv_b)

    return jax.value_and_grad(loss)(params)

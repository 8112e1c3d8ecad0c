"""Clip-Cov and KL-Cov: restrain the updates of high-covariance tokens to keep the entropy up.

Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models"
(arXiv 2505.22617). The change of the policy's entropy under a policy-gradient step is driven by
the covariance between a token's log-probability and its advantage: confident tokens with a
positive advantage (and rare tokens with a negative one) lower the entropy. Over the valid tokens
of the update minibatch,

    Cov_t = (log π_θ(y_t) − mean log π_θ) · (A_t − mean A)          (both means over valid tokens,
                                                                      log π_θ stop-gradient)

Clip-Cov removes a few random tokens with a large covariance from the PPO loss; KL-Cov puts a KL
penalty to π_old on the tokens with the largest covariance. Checked against verl's
``compute_policy_loss_clip_cov`` / ``compute_policy_loss_kl_cov`` and its actor
config defaults (``clip_cov_ratio`` 2e-4, ``clip_cov_lb`` 1, ``clip_cov_ub`` 5, ``kl_cov_ratio``
2e-4, ``ppo_kl_coef`` 0.1, ``clip_ratio`` 0.2, ``loss_agg_mode`` token-mean).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import advantages, ops
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.core import Algorithm, Batch, Transform, stateless
from polrl.objectives import old_logp


def token_covariance(logp_bt, adv_bt, mask_bt):
    """Cov_t = (sg(log π_t) − mean log π) · (A_t − mean A), means over the valid tokens, [B, T]."""
    logp = jax.lax.stop_gradient(logp_bt)
    return (logp - ops.masked_mean(logp, mask_bt)) * (adv_bt - ops.masked_mean(adv_bt, mask_bt))


def _budget(fraction: float, mask_bt):
    """max(⌊fraction · #valid tokens⌋, 1): how many tokens the mechanism may touch (verl's count)."""
    return jnp.maximum(jnp.floor(fraction * jnp.sum(mask_bt > 0)), 1.0)


def _lowest(key_bt, k):
    """bool [B, T]: the k entries with the smallest key (ties: the earlier flat index first)."""
    flat = key_bt.reshape(-1)
    order = jnp.argsort(flat, stable=True)
    rank = jnp.zeros(flat.shape, jnp.int32).at[order].set(jnp.arange(flat.size, dtype=jnp.int32))
    return (rank < k).reshape(key_bt.shape)


def _check_fraction(name: str, value: float, by: str) -> None:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{by}: {name}={value} must be in (0, 1]")


def clip_cov_policy_gradient(
    *,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    clip_cov_ratio: float = 2e-4,
    clip_cov_lb: float = 1.0,
    clip_cov_ub: float = 5.0,
) -> Transform:
    """Clip-Cov's per-token loss, term ``"pg"`` (objective transform; reads the ``rng`` extra).

        L_t = max(−A_t ρ_t, −A_t clip(ρ_t, 1−ε_low, 1+ε_high)) · (1 − 1[t ∈ I])

    I: ``clip_cov_ratio`` · (number of valid tokens), at least 1, tokens drawn uniformly at random
    (without replacement, with the ``rng`` extra) among the valid tokens whose covariance lies
    strictly inside (lb, ub) and that PPO's clip has not already clipped (all of them when fewer
    qualify). Their loss and gradient are 0; every other token keeps PPO's clipped surrogate
    (no dual clip, as verl). With bounds that no token's covariance satisfies (e.g. lb ≥ ub)
    the loss is PPO's. The selection acts on-policy too (ρ = 1): it does not need π_old ≠ π_θ.

    Logs ``clip_frac`` (PPO-clipped tokens), ``cov_clip_frac`` (valid tokens in I; verl logs this
    as its ``pg_clipfrac``), ``ratio_mean`` and ``ratio_max``.
    """
    _check_fraction("clip_cov_ratio", clip_cov_ratio, "clip_cov_policy_gradient")

    def fn(batch: Batch, *, rng=None) -> Batch:
        batch.require("logp_bt", "adv_bt", by="clip_cov_policy_gradient")
        if rng is None:
            raise ValueError("clip_cov_policy_gradient draws the detached tokens with the 'rng' extra; pass rng=…")
        m, adv = batch.mask_bt, batch.adv_bt
        ratio = jnp.exp(ops.log_ratio(batch.logp_bt, old_logp(batch)))
        loss_bt, clipped_bt = ops.clipped_surrogate(ratio, adv, eps_low=eps_low, eps_high=eps_high)
        cov = token_covariance(batch.logp_bt, adv, m)
        candidate = (m > 0) & (clipped_bt == 0) & (cov > clip_cov_lb) & (cov < clip_cov_ub)
        u = jax.random.uniform(rng, cov.shape)
        chosen = candidate & _lowest(jnp.where(candidate, u, 2.0), _budget(clip_cov_ratio, m))
        sg_ratio = jax.lax.stop_gradient(ratio)
        return batch.add_term("pg", jnp.where(chosen, 0.0, loss_bt)).add_metrics(
            clip_frac=ops.masked_mean(clipped_bt, m),
            cov_clip_frac=ops.masked_mean(chosen.astype(jnp.float32), m),
            ratio_mean=ops.masked_mean(sg_ratio, m),
            ratio_max=ops.masked_max(sg_ratio, m),
        )

    return stateless(fn)


def kl_cov_policy_gradient(*, kl_cov_ratio: float = 2e-4, kl_coef: float = 0.1) -> Transform:
    """KL-Cov's per-token loss, term ``"pg"`` (objective transform).

        L_t = −A_t ρ_t + β · |log π_θ(y_t) − log π_old(y_t)| · 1[t ∈ I]

    I: the ``kl_cov_ratio`` · (number of valid tokens) valid tokens (at least 1) with the largest
    covariance (ties: the earlier token). No ratio clip: the KL term replaces it, as verl's
    ``kl_cov`` (its ``pg_losses1 = −A·ρ``). β = ``kl_coef`` (verl's ``ppo_kl_coef``: 0.1 in its
    actor config; its loss function falls back to 1.0 when the field is unset). At ρ = 1 the KL
    term is 0 with gradient β·sign(0) = 0 (``ops.kl_abs``), so the on-policy gradient is
    REINFORCE's; the
    penalty acts once π_θ moves away from π_old (several minibatches or epochs per batch).

    Logs ``kl_cov_frac`` (valid tokens in I), ``kl_abs_mean`` (mean |log ρ| over valid tokens,
    verl's ``ppo_kl`` for this loss), ``ratio_mean`` and ``ratio_max``.
    """
    _check_fraction("kl_cov_ratio", kl_cov_ratio, "kl_cov_policy_gradient")
    if not kl_coef >= 0:
        raise ValueError(f"kl_cov_policy_gradient: kl_coef={kl_coef} must be >= 0")

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "adv_bt", by="kl_cov_policy_gradient")
        m, adv = batch.mask_bt, batch.adv_bt
        old = old_logp(batch)
        ratio = jnp.exp(ops.log_ratio(batch.logp_bt, old))
        cov = token_covariance(batch.logp_bt, adv, m)
        valid = m > 0
        chosen = valid & _lowest(jnp.where(valid, -cov, jnp.inf), _budget(kl_cov_ratio, m))
        kl_bt = ops.kl_abs(batch.logp_bt, old)  # |log ρ|, gradient sign(log ρ) (0 at ρ = 1)
        sg_ratio = jax.lax.stop_gradient(ratio)
        return batch.add_term("pg", -adv * ratio + kl_coef * kl_bt * chosen).add_metrics(
            kl_cov_frac=ops.masked_mean(chosen.astype(jnp.float32), m),
            kl_abs_mean=ops.masked_mean(jax.lax.stop_gradient(kl_bt), m),
            ratio_mean=ops.masked_mean(sg_ratio, m),
            ratio_max=ops.masked_max(sg_ratio, m),
        )

    return stateless(fn)


def clip_cov(
    *,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    clip_cov_ratio: float = 2e-4,
    clip_cov_lb: float = 1.0,
    clip_cov_ub: float = 5.0,
    **options,
) -> Algorithm:
    """Clip-Cov (arXiv 2505.22617): GRPO's advantage and PPO's clip, with a random few
    high-covariance tokens removed from the loss.

        A_i = (r_i − mean_g r) / (std_g r + 1e-6)                           (GRPO advantage)
        L   = token_mean[ max(−A ρ, −A clip(ρ, 1−ε, 1+ε)) · (1 − 1[t ∈ I]) ]

    (I: see ``clip_cov_policy_gradient``). Defaults are verl's actor config: ε = 0.2,
    ``clip_cov_ratio`` = 2e-4, (lb, ub) = (1, 5), token-mean; no KL. The draw uses the objective's
    ``rng`` extra (one key per minibatch update).

    Other keywords: see ``pg_algorithm`` (lr 1e-6, β = 0, ``token_mean``, one update per batch).
    """
    check_options("clip_cov", options)
    return pg_algorithm(
        [advantages.group_advantage(scale="std")],
        clip_cov_policy_gradient(eps_low=eps_low, eps_high=eps_high, clip_cov_ratio=clip_cov_ratio,
                                 clip_cov_lb=clip_cov_lb, clip_cov_ub=clip_cov_ub),
        **options,
    )


def kl_cov(*, kl_cov_ratio: float = 2e-4, ppo_kl_coef: float = 0.1, **options) -> Algorithm:
    """KL-Cov (arXiv 2505.22617): GRPO's advantage, the unclipped surrogate, and a KL penalty to
    π_old on the highest-covariance tokens.

        A_i = (r_i − mean_g r) / (std_g r + 1e-6)                           (GRPO advantage)
        L   = token_mean[ −A ρ + β |log π_θ − log π_old| · 1[t ∈ top-k Cov] ]

    (see ``kl_cov_policy_gradient``). Defaults are verl's actor config: k = ``kl_cov_ratio`` =
    2e-4 of the valid tokens, β = ``ppo_kl_coef`` = 0.1, token-mean; no KL to the reference
    (``kl_coef`` is that one, 0 by default).

    Other keywords: see ``pg_algorithm`` (lr 1e-6, β_ref = 0, ``token_mean``, one update per
    batch).
    """
    check_options("kl_cov", options)
    return pg_algorithm(
        [advantages.group_advantage(scale="std")],
        kl_cov_policy_gradient(kl_cov_ratio=kl_cov_ratio, kl_coef=ppo_kl_coef),
        **options,
    )

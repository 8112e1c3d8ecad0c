"""CISPO: clipped importance-sampling-weight policy optimization."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import advantages, ops
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.core import Algorithm, Batch, Transform, stateless
from polrl.objectives import old_logp


def clipped_is_weight_policy_gradient(*, eps_low: float | None = None, eps_high: float = 0.2) -> Transform:
    """CISPO's per-token loss, term ``"pg"`` (objective transform).

        ρ_t = π_θ(y_t) / π_old(y_t),   ŵ_t = sg(clip(ρ_t, 1 − ε_low, 1 + ε_high))
        L_t = −ŵ_t · A_t · log π_θ(y_t)

    Unlike PPO's clip, which zeroes the gradient of clipped tokens, every token keeps its
    REINFORCE gradient −A_t ∇log π, only its importance weight is truncated (and stop-gradient).
    ``eps_low=None`` puts no lower bound on the weight (the paper sets ε_low large). At ρ = 1 the
    gradient is REINFORCE's. Logs ``clip_frac`` (valid tokens whose weight was truncated),
    ``ratio_mean`` and ``ratio_max``.
    """

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "adv_bt", by="clipped_is_weight_policy_gradient")
        m = batch.mask_bt
        ratio = jax.lax.stop_gradient(jnp.exp(ops.log_ratio(batch.logp_bt, old_logp(batch))))
        low = 0.0 if eps_low is None else 1.0 - eps_low
        weight = jnp.clip(ratio, low, 1.0 + eps_high)
        clipped = (weight != ratio).astype(jnp.float32)
        return batch.add_term("pg", -weight * batch.adv_bt * batch.logp_bt).add_metrics(
            clip_frac=ops.masked_mean(clipped, m),
            ratio_mean=ops.masked_mean(ratio, m),
            ratio_max=ops.masked_max(ratio, m),
        )

    return stateless(fn)


def cispo(*, eps_low: float | None = None, eps_high: float = 0.2, **options) -> Algorithm:
    """CISPO (MiniMax-M1, arXiv 2506.13585): clip the importance weight, not the update.

        A_i   = (R_i − mean_g R) / (std_g R + 1e-6)                         (group-relative)
        J     = 1/Σ_i |o_i| Σ_i Σ_t sg(clip(ρ_i,t, 1−ε_low, 1+ε_high)) · A_i · log π_θ(o_i,t)

    i.e. ``token_mean`` aggregation of ``clipped_is_weight_policy_gradient``, no KL. The weight
    only differs from 1 when a rollout batch is reused (several minibatches / epochs, the
    setting CISPO is built for) or with a stale π_old.

    Checked: the paper and ms-swift's CISPO page give the loss −sg(min(ρ, ε_max))·A·log π
    with no lower bound (ε_low^IS "set to a large value") and a token-level normalizer; verl's
    CISPO example sets ``clip_ratio_low=10`` (unbounded below) and ``clip_ratio_high=0.2``.
    INFERRED: ε_high = 0.2 (verl's example; the paper tunes ε_high and its value was not found).

    Other keywords: see ``pg_algorithm`` (its defaults are CISPO's: lr 1e-6, β = 0,
    ``token_mean``, one update per batch).
    """
    check_options("cispo", options)
    return pg_algorithm(
        [advantages.group_advantage(scale="std")],
        clipped_is_weight_policy_gradient(eps_low=eps_low, eps_high=eps_high),
        **options,
    )

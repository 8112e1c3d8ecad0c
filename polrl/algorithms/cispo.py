"""CISPO: clipped importance-sampling-weight policy optimization."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import advantages, ops
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.core import Algorithm, Batch, Transform, stateless
from polrl.objectives import old_logp


def clipped_is_weight_policy_gradient(
    *,
    eps_low: float | None = None,
    eps_high: float = 0.2,
    mask_eps_low: float | None = None,
    mask_eps_high: float | None = None,
) -> Transform:
    """CISPO's per-token loss, term ``"pg"`` (objective transform).

        ρ_t = π_θ(y_t) / π_old(y_t),   ŵ_t = sg(clip(ρ_t, 1 − ε_low, 1 + ε_high))
        L_t = −ŵ_t · A_t · log π_θ(y_t) · M_t

    Unlike PPO's clip, which zeroes the gradient of clipped tokens, every token keeps its
    REINFORCE gradient −A_t ∇log π, only its importance weight is truncated (and stop-gradient).
    ``eps_low=None`` puts no lower bound on the weight (the paper sets ε_low large). At ρ = 1 the
    gradient is REINFORCE's.

    The token mask M_t is the paper's unified formulation (MiniMax-M1, arXiv 2506.13585, §3.1):

        M_t = 0  if A_t > 0 and ρ_t > 1 + ε_high^M,   or  A_t < 0 and ρ_t < 1 − ε_low^M
        M_t = 1  otherwise

    i.e. the tokens whose gradient PPO's clip would zero (with ε^M = PPO's ε and no weight
    truncation, the gradient is exactly PPO's, −ρ_t A_t ∇log π_t inside the trust region and 0
    outside). ``mask_eps_low`` / ``mask_eps_high`` are ε_low^M / ε_high^M; both None (the default)
    is plain CISPO (M = 1), one None leaves that side unmasked. A masked token contributes neither
    value nor gradient but still counts in the aggregation's denominator.
    INFERRED: the weight of the unified formulation is the truncated ŵ (the mask and the
    truncation are independent hyper-parameters); verl's CISPO has no mask.

    Logs ``clip_frac`` (valid tokens whose weight was truncated), ``ratio_mean`` and
    ``ratio_max``, and ``mask_frac`` (valid tokens with M_t = 0) when a mask bound is set.
    """
    for name, eps in (("eps_high", eps_high), ("eps_low", eps_low), ("mask_eps_low", mask_eps_low),
                      ("mask_eps_high", mask_eps_high)):
        if eps is not None and not eps >= 0:
            raise ValueError(f"clipped_is_weight_policy_gradient: {name}={eps} must be >= 0")
    masked = mask_eps_low is not None or mask_eps_high is not None

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "adv_bt", by="clipped_is_weight_policy_gradient")
        m, adv = batch.mask_bt, batch.adv_bt
        ratio = jax.lax.stop_gradient(jnp.exp(ops.log_ratio(batch.logp_bt, old_logp(batch))))
        low = 0.0 if eps_low is None else 1.0 - eps_low
        weight = jnp.clip(ratio, low, 1.0 + eps_high)
        clipped = (weight != ratio).astype(jnp.float32)
        loss_bt = -weight * adv * batch.logp_bt
        metrics = dict(
            clip_frac=ops.masked_mean(clipped, m),
            ratio_mean=ops.masked_mean(ratio, m),
            ratio_max=ops.masked_max(ratio, m),
        )
        if masked:
            out = jnp.zeros(ratio.shape, bool)
            if mask_eps_high is not None:
                out = out | ((adv > 0) & (ratio > 1.0 + mask_eps_high))
            if mask_eps_low is not None:
                out = out | ((adv < 0) & (ratio < 1.0 - mask_eps_low))
            loss_bt = jnp.where(out, 0.0, loss_bt)
            metrics["mask_frac"] = ops.masked_mean(out.astype(jnp.float32), m)
        return batch.add_term("pg", loss_bt).add_metrics(**metrics)

    return stateless(fn)


def cispo(
    *,
    eps_low: float | None = None,
    eps_high: float = 0.2,
    mask_eps_low: float | None = None,
    mask_eps_high: float | None = None,
    **options,
) -> Algorithm:
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
    ``mask_eps_low`` / ``mask_eps_high``: the paper's unified formulation with PPO's token mask
    (off by default; see ``clipped_is_weight_policy_gradient``), e.g. 0.2 / 0.28.

    Other keywords: see ``pg_algorithm`` (its defaults are CISPO's: lr 1e-6, β = 0,
    ``token_mean``, one update per batch).
    """
    check_options("cispo", options)
    return pg_algorithm(
        [advantages.group_advantage(scale="std")],
        clipped_is_weight_policy_gradient(
            eps_low=eps_low, eps_high=eps_high, mask_eps_low=mask_eps_low, mask_eps_high=mask_eps_high
        ),
        **options,
    )

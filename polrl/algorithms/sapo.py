"""SAPO: soft adaptive policy optimization (a smooth gate instead of a hard clip)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import advantages, ops
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.core import Algorithm, Batch, Transform, stateless
from polrl.objectives import old_logp


def soft_gated_policy_gradient(*, tau_pos: float = 1.0, tau_neg: float = 1.05) -> Transform:
    """SAPO's soft-gated surrogate per token, term ``"pg"`` (objective transform).

        ρ_t = π_θ(y_t) / π_old(y_t),   τ_t = τ_pos if A_t > 0 else τ_neg
        f(ρ) = (4/τ_t) · σ(τ_t (ρ − 1)),   L_t = −f(ρ_t) · A_t

    The gradient flows THROUGH the gate (as verl's ``compute_policy_loss_sapo``, not Trinity's
    detached gate): ∇L_t = −w_t ρ_t A_t ∇log π_θ(y_t) with w_t = 4 p_t (1 − p_t),
    p_t = σ(τ_t(ρ_t − 1)), so w = 1 at ρ = 1 (REINFORCE's gradient, on-policy) and it decays
    smoothly as ρ leaves 1, faster for negative advantages (τ_neg > τ_pos). Logs
    ``gate_weight_mean`` (mean w_t), ``gate_frac`` (valid tokens with w_t < ½: the gate has more
    than halved their gradient, SAPO's soft analogue of ``clip_frac``) and ``ratio_mean``.
    """
    if tau_pos <= 0 or tau_neg <= 0:
        raise ValueError(f"soft_gated_policy_gradient: temperatures must be > 0, got τ_pos={tau_pos}, τ_neg={tau_neg}")

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "adv_bt", by="soft_gated_policy_gradient")
        m, adv = batch.mask_bt, batch.adv_bt
        ratio = jnp.exp(ops.log_ratio(batch.logp_bt, old_logp(batch)))
        tau = jnp.where(adv > 0, tau_pos, tau_neg)
        p = jax.nn.sigmoid(tau * (ratio - 1.0))
        weight = jax.lax.stop_gradient(4.0 * p * (1.0 - p))
        return batch.add_term("pg", -(4.0 / tau) * p * adv).add_metrics(
            gate_weight_mean=ops.masked_mean(weight, m),
            gate_frac=ops.masked_mean((weight < 0.5).astype(jnp.float32), m),
            ratio_mean=ops.masked_mean(jax.lax.stop_gradient(ratio), m),
        )

    return stateless(fn)


def sapo(
    *, tau_pos: float = 1.0, tau_neg: float = 1.05, aggregation: str = "seq_mean_token_mean", **options
) -> Algorithm:
    """SAPO (Qwen, arXiv 2511.20347): GRPO with a soft, sign-dependent gate.

        A_i = (r_i − mean_g r) / (std_g r + 1e-6)                           (GRPO advantage)
        J   = 1/G Σ_i 1/|y_i| Σ_t (4/τ_i,t) σ(τ_i,t (ρ_i,t − 1)) · A_i       (maximized)

    τ_pos = 1.0, τ_neg = 1.05 and ``seq_mean_token_mean`` (verl hard-codes it), as in verl's
    port; no KL by default. The gate only matters when a rollout batch
    is reused (several minibatches / epochs) or π_old is stale; at ρ = 1 the gradient is exactly
    REINFORCE's.

    Other keywords: see ``pg_algorithm`` (lr 1e-6, β = 0, one update per batch).
    """
    check_options("sapo", options)
    return pg_algorithm(
        [advantages.group_advantage(scale="std")],
        soft_gated_policy_gradient(tau_pos=tau_pos, tau_neg=tau_neg),
        aggregation=aggregation, **options,
    )

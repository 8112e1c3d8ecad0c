"""GMPO: geometric-mean policy optimization (the geometric mean of the token ratios per sequence)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import advantages, ops
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.core import Algorithm, Batch, Transform, stateless
from polrl.objectives import old_logp


def geometric_mean_policy_gradient(*, eps_low: float = 0.4, eps_high: float = 0.4) -> Transform:
    """GMPO's sequence loss, copied onto each valid token, term ``"pg"`` (objective transform).

        ℓ_t   = log π_θ(y_t) − log π_old(y_t)                                (clamped to ±20)
        ℓ̂_t   = sgn(A_t) · min(sgn(A_t) ℓ_t, sgn(A_t) clip(ℓ_t, −ε_low, ε_high))
        r_i   = exp( Σ_t m_t ℓ̂_t / Σ_t m_t )           (geometric mean of the clipped token ratios)
        Ā_i   = Σ_t m_t A_t / Σ_t m_t
        L_i   = −Ā_i · r_i

    The clip acts per token in log space (a token ratio range [e^−ε_low, e^ε_high]) and, as PPO's,
    only on the side that would push further: for A > 0 a token's log-ratio is capped above at
    ε_high, for A < 0 floored at −ε_low, and a clipped token passes no gradient. With one token
    per sequence this is PPO's clipped surrogate with the range [e^−ε_low, e^ε_high]. At ρ = 1
    the gradient of the sequence loss is −Ā_i/|y_i| · ∇log π_θ(y_t) per token (REINFORCE on the
    length-normalised log-likelihood). The per-token copy must be reduced with
    ``seq_mean_token_mean`` to give the mean over sequences.

    Logs ``clip_frac`` (valid tokens whose log-ratio was clipped), ``seq_ratio_mean`` and
    ``seq_ratio_max`` (r_i over sequences with a valid token).
    """
    if not (eps_low >= 0 and eps_high >= 0):
        raise ValueError(f"geometric_mean_policy_gradient: eps_low={eps_low}, eps_high={eps_high} must be >= 0")

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "adv_bt", by="geometric_mean_policy_gradient")
        m, adv = batch.mask_bt, batch.adv_bt
        log_ratio = ops.log_ratio(batch.logp_bt, old_logp(batch))
        sign = jnp.sign(adv)
        bounded = jnp.clip(log_ratio, -eps_low, eps_high)
        clipped_log = sign * jnp.minimum(sign * log_ratio, sign * bounded)
        log_r_b = ops.masked_mean(clipped_log, m, axis=1)
        adv_b = ops.masked_mean(adv, m, axis=1)
        loss_b = -adv_b * jnp.exp(log_r_b)
        picked = sign * bounded < sign * log_ratio  # the bound is the smaller branch
        r_b = jnp.exp(jax.lax.stop_gradient(log_r_b))
        rows_b = jnp.any(m != 0, axis=1)
        return batch.add_term("pg", jnp.broadcast_to(loss_b[:, None], m.shape)).add_metrics(
            clip_frac=ops.masked_mean(jax.lax.stop_gradient(picked).astype(jnp.float32), m),
            seq_ratio_mean=ops.masked_mean(r_b, rows_b),
            seq_ratio_max=ops.masked_max(r_b, rows_b),
        )

    return stateless(fn)


def gmpo(
    *,
    eps_low: float = 0.4,
    eps_high: float = 0.4,
    aggregation: str = "seq_mean_token_mean",
    **options,
) -> Algorithm:
    """GMPO (Zhao et al. 2025, "Geometric-Mean Policy Optimization", arXiv 2507.20673).

        A_i = (r_i − mean_g r) / (std_g r + 1e-6)                           (GRPO advantage)
        L   = 1/G Σ_i −A_i · Π_t clip'(ρ_i,t)^(1/|y_i|)

    where clip' is the sign-aware token clip in log space of ``geometric_mean_policy_gradient``
    with the range (e^−0.4, e^0.4): ε_low = ε_high = 0.4, as verl's GMPO example
    (``clip_ratio_low = clip_ratio_high = 0.4`` with its ``geo_mean`` loss). Maximizing the
    geometric mean instead of GRPO's arithmetic mean damps tokens with outlying ratios. No KL
    (the example's ``use_kl_loss=False``); ``seq_mean_token_mean`` is the mean over sequences
    (verl's ``geo_mean`` ignores ``loss_agg_mode`` and averages its sequence losses). The clip
    acts only when a rollout batch is reused (``num_minibatches`` / ``num_epochs`` > 1).
    Checked against verl's ``compute_policy_loss_geo_mean`` and its GMPO example.

    Other keywords: see ``pg_algorithm`` (lr 1e-6, β = 0, one update per batch).
    """
    check_options("gmpo", options)
    return pg_algorithm(
        [advantages.group_advantage(scale="std")],
        geometric_mean_policy_gradient(eps_low=eps_low, eps_high=eps_high),
        aggregation=aggregation, **options,
    )

"""GSPO: group sequence policy optimization (a sequence-level importance ratio)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import advantages, ops
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.core import Algorithm, Batch, Transform, stateless
from polrl.objectives import old_logp


def sequence_clipped_policy_gradient(
    *, eps_low: float = 3e-4, eps_high: float | None = 4e-4, token_level: bool = False
) -> Transform:
    """PPO's clipped surrogate on GSPO's sequence ratio, term ``"pg"`` (objective transform).

        log s_i = 1/|y_i| Σ_t (log π_θ(y_i,t) − log π_old(y_i,t))      (length-normalised)
        sequence form (``token_level=False``):  r_i,t = s_i           (differentiable as a whole)
        GSPO-token   (``token_level=True``):   r_i,t = sg[s_i] · π_θ(y_i,t) / sg[π_θ(y_i,t)]
        L_i,t = max(−A_i,t r_i,t, −A_i,t clip(r_i,t, 1−ε_low, 1+ε_high))

    Both forms have the same value; their gradients agree whenever A is constant within a
    sequence (−A_i s_i ∇log π(y_i,t) per token), and GSPO-token lets A vary per token. Per-token
    log-ratios are clamped to ±20 before the mean (polrl's log-ratio convention). Logs
    ``clip_frac`` (valid tokens whose ratio is clipped), ``seq_ratio_mean`` / ``seq_ratio_max``
    over sequences with a valid token.
    """

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "adv_bt", by="sequence_clipped_policy_gradient")
        m = batch.mask_bt
        log_s_b = ops.masked_mean(ops.log_ratio(batch.logp_bt, old_logp(batch)), m, axis=1)
        if token_level:
            sg = jax.lax.stop_gradient
            log_r_bt = batch.logp_bt - sg(batch.logp_bt) + sg(log_s_b)[:, None]
        else:
            log_r_bt = jnp.broadcast_to(log_s_b[:, None], m.shape)
        loss_bt, clipped_bt = ops.clipped_surrogate(jnp.exp(log_r_bt), batch.adv_bt, eps_low=eps_low, eps_high=eps_high)
        s_b = jnp.exp(jax.lax.stop_gradient(log_s_b))
        rows_b = jnp.any(m != 0, axis=1)
        return batch.add_term("pg", loss_bt).add_metrics(
            clip_frac=ops.masked_mean(clipped_bt, m),
            seq_ratio_mean=ops.masked_mean(s_b, rows_b),
            seq_ratio_max=ops.masked_max(s_b, rows_b),
        )

    return stateless(fn)


def gspo(
    *,
    eps_low: float = 3e-4,
    eps_high: float = 4e-4,
    token_level: bool = False,
    aggregation: str = "seq_mean_token_mean",
    **options,
) -> Algorithm:
    """GSPO (Zheng et al. 2025, arXiv 2507.18071): clip one importance ratio per SEQUENCE.

        A_i = (r_i − mean_g r) / (std_g r + 1e-6)                       (GRPO advantage)
        s_i = exp(1/|y_i| Σ_t log(π_θ(y_i,t) / π_old(y_i,t)))            (geometric-mean ratio)
        L   = 1/G Σ_i max(−A_i s_i, −A_i clip(s_i, 1−ε_low, 1+ε_high))

    (``seq_mean_token_mean`` of the per-token copy of the sequence loss is exactly this mean over
    sequences). ``token_level=True`` is GSPO-token (same values, per-token gradient path, see
    ``sequence_clipped_policy_gradient``). Defaults from the paper:
    ε_low = 3e-4, ε_high = 4e-4 (the ratio is a geometric mean, so its range is tiny), no KL.
    Checked: a review that verified the arXiv PDF quotes "the clipping
    ranges in Equation (5) to 3e-4 and 4e-4". The clip only acts when a rollout batch is reused
    (``num_minibatches`` / ``num_epochs`` > 1); with one update per batch s_i = 1 and the loss is
    the REINFORCE gradient of the length-normalised sequence log-likelihood.

    Other keywords: see ``pg_algorithm`` (lr 1e-6, β = 0, one update per batch).
    """
    check_options("gspo", options)
    return pg_algorithm(
        [advantages.group_advantage(scale="std")],
        sequence_clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high, token_level=token_level),
        aggregation=aggregation, **options,
    )

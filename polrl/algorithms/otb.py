"""OTB: the optimal token baseline, a per-position baseline weighted by the realized gradient energy."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import objectives, ops
from polrl.algorithms.policy_gradient import REWARD_SIDE_OPTIONS, check_options, pg_algorithm
from polrl.core import Algorithm, Batch, Transform, stateless


def sum_squared_probs(logits_btv):
    """Σ_v π(v)² per position = exp(logsumexp(2z) − 2·logsumexp(z)), [B, T] (stable in z)."""
    z = logits_btv.astype(jnp.promote_types(logits_btv.dtype, jnp.float32))
    return jnp.exp(jax.nn.logsumexp(2.0 * z, axis=-1) - 2.0 * jax.nn.logsumexp(z, axis=-1))


def token_baseline_advantage(
    reward_b, group_b, mask_bt, logp_bt, sum_sq_bt, *, zero_tail: bool = False, eps: float = 1e-8
):
    """OTB's advantage and its per-token energy, ``(adv_bt, energy_bt)`` (pure function).

        w_t = 1 − 2 π(y_t) + Σ_v π(v)²     (‖∇_z log π(y_t)‖² of the logits z: the logit-gradient proxy)
        W_t = Σ_{s ≤ t} m_s w_s             (realized energy of the prefix)
        G_t = r                              (reward-to-go of a sequence reward paid at the end)
        B_t = Σ_{i∈g} G_i,t W_i,t m_i,t / (Σ_{i∈g} W_i,t m_i,t + ε)
        A_t = (G_t − B_t) · m_t

    Groups of one get 0. ``zero_tail``: where a group's single longest row runs past the
    second-longest, B = 0 on that tail (there B_t would equal the row's own G_t, A_t ≈ 0).
    """
    n, t = mask_bt.shape
    energy_bt = 1.0 - 2.0 * jnp.exp(logp_bt) + sum_sq_bt
    w_bt = jnp.cumsum(energy_bt * mask_bt, axis=1)
    g_bt = jnp.broadcast_to(reward_b[:, None], (n, t))
    num_gt = jax.ops.segment_sum(g_bt * w_bt * mask_bt, group_b, num_segments=n)
    den_gt = jax.ops.segment_sum(w_bt * mask_bt, group_b, num_segments=n)
    base_bt = (num_gt / (den_gt + eps))[group_b]
    count_b = jax.ops.segment_sum(jnp.ones_like(reward_b), group_b, num_segments=n)[group_b]
    if zero_tail:
        length_b = jnp.sum(mask_bt > 0, axis=1)
        longest_b = jax.ops.segment_max(length_b, group_b, num_segments=n)[group_b]
        n_longest_b = jax.ops.segment_sum((length_b == longest_b).astype(jnp.int32), group_b, num_segments=n)[group_b]
        second_b = jax.ops.segment_max(jnp.where(length_b == longest_b, 0, length_b), group_b, num_segments=n)[group_b]
        second_b = jnp.where(n_longest_b > 1, longest_b, second_b)
        tail_bt = (length_b == longest_b)[:, None] & (n_longest_b == 1)[:, None] & (jnp.arange(t)[None, :] >= second_b[:, None])
        base_bt = jnp.where(tail_bt, 0.0, base_bt)
    adv_bt = jnp.where((count_b > 1)[:, None], (g_bt - base_bt) * mask_bt, 0.0)
    return adv_bt, energy_bt


def optimal_token_baseline_advantage(*, zero_tail: bool = False, eps: float = 1e-8) -> Transform:
    """OTB's advantage, computed at the START of the objective (objective transform, need
    ``"logits"``); it overwrites ``adv_bt`` for the loss terms that follow.

    See ``token_baseline_advantage`` for the formula. π(y_t) = exp(log π_old(y_t)) and Σ_v π(v)² come
    from the scoring forward, both stop-gradient: Σπ² needs the full next-token distribution,
    which the trainer materializes only inside the update (``logits_btv``), so this cannot be a
    prepare transform. With one update per batch the scoring parameters ARE π_old's, so the
    baseline is exactly the rollout-time one; with several minibatches or epochs Σπ² is taken at
    the current parameters. Logs ``otb_energy_mean`` (mean w_t over valid tokens) and
    ``otb_adv_abs_mean`` (mean |A_t|).
    """

    def fn(batch: Batch) -> Batch:
        batch.require("logits_btv", "logp_bt", "reward_b", "group_b",
                      by="optimal_token_baseline_advantage (declare the need 'logits')")
        sg = jax.lax.stop_gradient
        m = batch.mask_bt
        adv_bt, energy_bt = token_baseline_advantage(
            batch.reward_b, batch.group_b, m, sg(objectives.old_logp(batch)), sg(sum_squared_probs(batch.logits_btv)),
            zero_tail=zero_tail, eps=eps,
        )
        return batch.replace(adv_bt=adv_bt).add_metrics(
            otb_energy_mean=ops.masked_mean(energy_bt, m), otb_adv_abs_mean=ops.masked_mean(jnp.abs(adv_bt), m))

    return stateless(fn, needs=("logits",))


def otb(*, eps_low: float = 0.2, eps_high: float | None = None, zero_tail: bool = False, **options) -> Algorithm:
    """Optimal Token Baseline (verl's ``optimal_token_baseline`` advantage estimator).

        B_t = Σ_{i∈g} G_i,t W_i,t / Σ_{i∈g} W_i,t,   W_t = Σ_{s≤t} (1 − 2π_s + Σπ²_s)
        A_t = G_t − B_t
        L   = token_mean[ max(−A ρ, −A clip(ρ, 1−ε, 1+ε)) ]

    The variance-optimal constant baseline of a score-function gradient is
    b* = E[R ‖∇log π(o)‖²] / E[‖∇log π(o)‖²]; OTB applies it per position, with the squared
    gradient norm of the prefix replaced by its logit-gradient proxy W_t (the squared norm of
    ∇_z log π(y_s) wrt the logits, summed over the prefix; no per-token backward pass). This is
    what verl implements; the true per-token parameter-gradient norms are not computed (neither
    by verl). No paper: verl's documentation points to the method's blog post ("Optimal Token
    Baseline"). Defaults from verl's OTB example: PPO's clipped surrogate with ε = 0.2 (its
    default loss), token-mean, no KL, no entropy bonus, one update per batch
    (``ppo_mini_batch_size`` = ``train_batch_size``), ``handle_zero_tail=False``.

    The baseline is computed inside the objective from the scoring forward's logits (need
    ``"logits"``, a [B, T, V] array in the update; see ``optimal_token_baseline_advantage``), so
    the prepare step is empty and the prepare-side options are not taken. verl's rescaling of
    w_t by the squared rollout-correction weights is not carried (polrl's ``correction`` acts on
    the prepare side).

    Other keywords: see ``pg_algorithm`` (lr 1e-6, β = 0, ``token_mean``, one update per batch),
    all but the prepare-side ``kl_in``, ``kl_target``, ``correction`` and ``correction_threshold``.
    """
    check_options("otb", options, without=REWARD_SIDE_OPTIONS)
    return pg_algorithm(
        [], optimal_token_baseline_advantage(zero_tail=zero_tail),
        objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high), **options,
    )

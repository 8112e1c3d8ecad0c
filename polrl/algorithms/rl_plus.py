"""RL-PLUS: multiple importance sampling on expert rows, exploration-based advantage
(Dong et al. 2025, YihongDong/RL-PLUS, arXiv 2508.00222)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import objectives, ops
from polrl.algorithms.policy_gradient import REWARD_SIDE_OPTIONS, check_options, pg_algorithm
from polrl.collectors import with_expert_rows
from polrl.core import EXPERT, Algorithm, Batch, Transform, stateless


def _policy_rows(batch: Batch) -> jax.Array:
    """bool [B]: rows the policy sampled (not ``EXPERT``); all rows without ``source_b``."""
    if batch.source_b is None:
        return jnp.ones((batch.batch_size,), bool)
    return batch.source_b != EXPERT


def policy_baseline_advantage(*, scale: str = "none", ddof: int = 1, eps: float = 1e-6) -> Transform:
    """Group-relative advantage of EVERY row against the policy's own rows of its group:

        A_i = r_i − mean_{j ∈ g, policy} r_j                  (scale="none", RL-PLUS)
        A_i = (r_i − mean_{policy} r) / (std_{policy} r + ε)   (scale="std"; std 0 → 1)

    Expert rows (``source_b == EXPERT``) get an advantage too — their reward against what the
    policy achieved on the prompt — but do not enter the statistics (RL-PLUS's
    ``compute_grpo_outcome_advantage_split``, ``grpo_use_std=False`` in its script). With one
    policy row the mean is that row's reward (the reference code uses 0 there); groups without
    a policy row get A = 0.
    """
    if scale not in ops.GROUP_SCALES:
        raise ValueError(f"policy_baseline_advantage: scale={scale!r}; use one of {ops.GROUP_SCALES}")

    def fn(batch: Batch) -> Batch:
        batch.require("reward_b", "group_b", by="policy_baseline_advantage")
        n, group_b, r = batch.batch_size, batch.group_b, batch.reward_b
        policy_b = _policy_rows(batch)
        ids = jnp.where(policy_b, group_b, group_b + n)  # expert rows: groups of their own
        mean_b, std_b, _ = ops.group_stats(r, ids, 2 * n, ddof=ddof)

        def of_policy_rows(x_b):  # the value shared by the group's policy rows, for every row
            x_g = jax.ops.segment_max(jnp.where(policy_b, x_b, -jnp.inf), group_b, num_segments=n)
            return jnp.where(jnp.isfinite(x_g), x_g, jnp.nan)[group_b]

        mean_b, std_b = of_policy_rows(mean_b), of_policy_rows(std_b)
        adv_b = r - mean_b
        if scale == "std":
            adv_b = adv_b / (jnp.where(std_b > 0, std_b, 1.0) + eps)
        adv_b = jnp.where(jnp.isnan(mean_b), 0.0, adv_b)
        return batch.replace(adv_bt=adv_b[:, None] * batch.mask_bt)

    return stateless(fn)


def mixed_policy_loss(*, eps_low: float | None = None, eps_high: float | None = None, exploration_power: float = 0.5) -> Transform:
    """RL-PLUS's per-token loss, term ``"pg"``: importance-weighted PG on the policy's rows,
    multiple importance sampling with an exploration-based advantage on the expert rows.

        policy rows:  L_t = −A ρ_t,  ρ_t = π_θ / π_old            (clipped as PPO when ε_low is set)
        expert rows:  L_t = −r_MIS,t · A · (1 − sg(π_θ,t))^γ,
                      r_MIS = π_θ / (½ π_old + ½ ω),  ω = (π_old + 1) / 2

    ω is RL-PLUS's proxy for the unknown expert policy; the balance heuristic mixes it with
    π_old, so r_MIS = 4 π_θ / (3 π_old + 1) ≤ 4 π_θ never explodes. (1 − π_θ)^γ (γ = 0.5) up-weights
    correct expert tokens the model finds improbable. π_old is the recomputed ``old_logp_bt``
    (``stop_gradient(logp)`` with one update per batch). Logs ``off_ratio_mean`` (r_MIS over
    expert tokens), ``off_prob_mean`` (π_θ on expert tokens) and ``on_ratio_mean``.
    Verified against ``YihongDong/RL-PLUS : rl_plus/verl/verl/recipe/rlplus_core_alg.py::
    compute_token_on_off_policy_loss`` (``off_policy_strategy="RL-PLUS"``); its released script sets ``loss_remove_clip=True`` (no clip, the default here).
    """

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "adv_bt", by="mixed_policy_loss")
        logp, old, adv, m = batch.logp_bt, objectives.old_logp(batch), batch.adv_bt, batch.mask_bt
        ratio = jnp.exp(ops.log_ratio(logp, old))
        if eps_low is None:
            on_bt = -adv * ratio
        else:
            on_bt, _ = ops.clipped_surrogate(ratio, adv, eps_low=eps_low, eps_high=eps_high)
        p, p_old = jnp.exp(logp), jnp.exp(old)
        r_mis = p / (0.5 * p_old + 0.5 * (p_old + 1.0) / 2.0)
        explore = (1.0 - jax.lax.stop_gradient(p)) ** exploration_power
        off_bt = -r_mis * adv * explore
        expert_b = ~_policy_rows(batch)
        loss_bt = jnp.where(expert_b[:, None], off_bt, on_bt)
        sg = jax.lax.stop_gradient
        off_m, on_m = m * expert_b[:, None], m * (~expert_b)[:, None]
        return batch.add_term("pg", loss_bt).add_metrics(
            off_ratio_mean=ops.masked_mean(sg(r_mis), off_m),
            off_prob_mean=ops.masked_mean(sg(p), off_m),
            on_ratio_mean=ops.masked_mean(sg(ratio), on_m),
        )

    return stateless(fn)


def rl_plus(
    *,
    expert_per_group: int = 1,
    scale: str = "none",
    eps_low: float | None = None,
    eps_high: float | None = None,
    exploration_power: float = 0.5,
    entropy_coef: float = 0.001,
    aggregation: str = "seq_mean_token_sum_norm",
    max_len: int | None = None,
    **options,
) -> Algorithm:
    """RL-PLUS (Dong et al. 2025, arXiv 2508.00222): GRPO-style groups of the policy's samples
    followed by ``expert_per_group`` rows of the prompt's labelled answer
    (``polrl.collectors.with_expert_rows``, ``source_b = EXPERT``), trained jointly:

        A_i = r_i − mean_{policy rows of the group} r                      (no std)
        L   = agg[ −A ρ_t  (policy rows);   −r_MIS,t A (1 − sg π_θ,t)^0.5  (expert rows) ] − c_H H

    (see ``policy_baseline_advantage`` and ``mixed_policy_loss``). Defaults from the released
    ``train_RL-PLUS.sh``: one expert row in groups of n = 8, no clip, no KL and no reference,
    entropy bonus 0.001, lr 1e-6, and the token-sum loss normalised by the constant generation
    budget (``seq_mean_token_sum_norm``; pass ``max_len`` = the response budget. The reference
    divides the micro-batch's token sum by T_max without averaging over sequences — a constant
    factor).

    Other keywords: see ``pg_algorithm`` (lr 1e-6, one update per batch), all but the KL ones
    (``kl_coef``, ``kl_estimator``, ``kl_in``, ``kl_target``: RL-PLUS has no reference) and
    ``correction`` / ``correction_threshold``.
    """
    check_options("rl_plus", options, without=REWARD_SIDE_OPTIONS + ("kl_coef", "kl_estimator"))
    if aggregation == "seq_mean_token_sum_norm" and max_len is None:
        raise ValueError(
            "rl_plus: aggregation='seq_mean_token_sum_norm' (the paper's) needs max_len, the "
            "constant normalizer: pass the response budget (rollout.max_new_tokens), or pick "
            "another aggregation"
        )
    return pg_algorithm(
        [policy_baseline_advantage(scale=scale)],
        mixed_policy_loss(eps_low=eps_low, eps_high=eps_high, exploration_power=exploration_power),
        entropy_coef=entropy_coef, aggregation=aggregation, max_len=max_len,
        collector=with_expert_rows(expert_per_group), **options,
    )

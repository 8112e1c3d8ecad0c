"""OPO: exact on-policy RL with the length-weighted optimal reward baseline."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import objectives, ops
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.core import Algorithm, Batch, Transform, stateless


def length_weighted_baseline_advantage() -> Transform:
    """OPO's advantage (prepare transform), broadcast over the response tokens.

        b_g = Σ_{j∈g} |o_j| r_j / Σ_{j∈g} |o_j|,      A_i = r_i − b_g

    |o_j| = the row's number of valid response tokens (Σ_t mask_bt). No std normalization.
    This is the variance-optimal baseline b* = E[‖∇log π(o)‖² r] / E[‖∇log π(o)‖²] when
    ‖∇log π(o)‖² is proportional to the length |o|. Groups of one get advantage 0 (polrl's
    convention; verl uses b = 0 there, i.e. A = r); a group without valid tokens has b = 0.
    INFERRED: that proportionality as the paper's justification; the formula itself is checked
    against verl's ``compute_opo_outcome_advantage``.
    """

    def fn(batch: Batch) -> Batch:
        batch.require("reward_b", "group_b", by="length_weighted_baseline_advantage")
        r, g, n = batch.reward_b, batch.group_b, batch.batch_size
        length_b = jnp.sum(batch.mask_bt, axis=1)
        num_g = jax.ops.segment_sum(length_b * r, g, num_segments=n)
        den_g = jax.ops.segment_sum(length_b, g, num_segments=n)
        count_b = jax.ops.segment_sum(jnp.ones_like(r), g, num_segments=n)[g]
        base_b = ops.safe_div(num_g, den_g)[g]
        adv_b = jnp.where(count_b > 1, r - base_b, 0.0)
        return batch.replace(adv_bt=adv_b[:, None] * batch.mask_bt)

    return stateless(fn)


def opo(*, num_epochs: int = 1, num_minibatches: int = 1, **options) -> Algorithm:
    """OPO (Hao et al. 2025, "On-Policy RL with Optimal Reward Baseline", arXiv 2505.23585).

        A_i = r_i − Σ_j |o_j| r_j / Σ_j |o_j|                       (``length_weighted_baseline_advantage``)
        L   = 1/Σ_i |o_i| Σ_i Σ_t −A_i ρ_i,t,    ρ = 1               (exact on-policy: REINFORCE)

    Exact on-policy training: every rollout batch is used for ONE gradient step (verl's OPO
    recipe sets ``ppo_mini_batch_size`` = ``train_batch_size``), so π_old = π_θ and the gradient is
    −A ∇log π_θ; ``num_epochs`` / ``num_minibatches`` other than 1 are refused. The loss is PPO's
    clipped surrogate (verl's default loss, ε = 0.2), inactive at ρ = 1 (it logs ``ratio_mean``
    = 1 as a check). No KL, no entropy bonus (the recipe), ``token_mean``, lr 1e-6. Checked
    against verl's ``compute_opo_outcome_advantage`` and its OPO documentation.

    Other keywords: see ``pg_algorithm`` (lr 1e-6, β = 0, ``token_mean``).
    """
    for name, value in (("num_epochs", num_epochs), ("num_minibatches", num_minibatches)):
        if value != 1:
            raise ValueError(f"opo is exact on-policy (one gradient step per rollout batch): {name}={value} must be 1")
    check_options("opo", options)
    return pg_algorithm(
        [length_weighted_baseline_advantage()], objectives.clipped_policy_gradient(eps_low=0.2), **options
    )

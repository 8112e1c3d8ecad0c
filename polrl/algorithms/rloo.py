"""RLOO: REINFORCE with a leave-one-out baseline."""
from __future__ import annotations

from polrl import objectives, ops
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.core import Algorithm, Batch, Transform, stateless


def leave_one_out_advantage() -> Transform:
    """A_i = r_i − (Σ_{j∈g} r_j − r_i)/(n_g − 1), broadcast over tokens (prepare transform).

    The baseline is the mean reward of the OTHER rows of the group (``ops.leave_one_out_baseline``),
    so it is independent of the row's own sample and the estimate is unbiased (Kool et al. 2019).
    For groups of equal size G it equals G/(G−1) · (r_i − mean_g r), the Dr.GRPO advantage
    rescaled. A group of one has no other row: its advantage is 0 (a documented polrl choice).
    """

    def fn(batch: Batch) -> Batch:
        batch.require("reward_b", "group_b", by="leave_one_out_advantage")
        base_b = ops.leave_one_out_baseline(batch.reward_b, batch.group_b, batch.batch_size)
        return batch.replace(adv_bt=(batch.reward_b - base_b)[:, None] * batch.mask_bt)

    return stateless(fn)


def rloo(
    *,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    kl_estimator: str = "k1",
    kl_in: str = "reward",
    aggregation: str = "seq_mean_token_sum",
    **options,
) -> Algorithm:
    """REINFORCE Leave-One-Out (Ahmadian et al. 2024, arXiv 2402.14740; Kool et al. 2019).

    For G samples of a prompt with rewards r_i:

        A_i = r_i − 1/(G−1) Σ_{j≠i} r_j
        L   = agg[ max(−A_i ρ_i,t, −A_i clip(ρ_i,t, 1−ε, 1+ε)) ]

    With one update per batch ρ = 1 and the loss is REINFORCE's −A_i Σ_t log π (the clip only
    acts with several updates per batch). Defaults: ``seq_mean_token_sum`` (the paper models
    the whole completion as one action, so its log-prob is the SUM over tokens), ε = 0.2, and the
    KL placed in the reward (r − β log π/π_ref, k1, as the paper's RLHF objective) with β = 0 by
    default (RLVR; set ``kl_coef`` for RLHF).

    Other keywords: see ``pg_algorithm`` (lr 1e-6, β = 0, one update per batch).
    """
    check_options("rloo", options)
    return pg_algorithm(
        [leave_one_out_advantage()], objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high),
        kl_estimator=kl_estimator, kl_in=kl_in, aggregation=aggregation, **options,
    )

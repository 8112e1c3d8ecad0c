"""GRPO with a pass@k advantage: only each group's best sample is reinforced."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import objectives, ops
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.core import Algorithm, Batch, Transform, stateless


def passk_advantage(*, scale: str = "std", ddof: int = 1, eps: float = 1e-6) -> Transform:
    """The leave-one-out advantage of the group's best reward (prepare transform).

    For a group of n samples scored by the maximum reward max_j r_j (pass@n for 0/1 rewards),
    the leave-one-out advantage of sample i is max_j r_j − max_{j≠i} r_j: zero for every sample
    but the best one, which gets the gap to the second best,

        A_i* = (r_(1) − r_(2)) / (std_g r + ε)     (i* = the group's argmax, the first on a tie)
        A_i  = 0                                   (every other row)

    r_(1) ≥ r_(2): the two largest rewards of the group; ``scale="none"`` drops the division
    (verl's ``norm_adv_by_std_in_grpo=False``), the std is unbiased (``ddof=1``) as verl's.
    On a tie for the maximum the gap is 0, so every row gets 0. Groups of one get 0 (verl
    refuses them). Logs ``passk_adv_frac``, the fraction of rows with a non-zero advantage.
    """
    if scale not in ops.GROUP_SCALES:
        raise ValueError(f"passk_advantage: scale={scale!r} is not one of {list(ops.GROUP_SCALES)}")

    def fn(batch: Batch) -> Batch:
        batch.require("reward_b", "group_b", by="passk_advantage")
        r, g, n = batch.reward_b, batch.group_b, batch.batch_size
        idx = jnp.arange(n)
        max_b = jax.ops.segment_max(r, g, num_segments=n)[g]
        best_g = jax.ops.segment_min(jnp.where(r == max_b, idx, n), g, num_segments=n)
        is_best = idx == best_g[g]
        second_b = jax.ops.segment_max(jnp.where(is_best, -jnp.inf, r), g, num_segments=n)[g]
        _, std_b, count_b = ops.group_stats(r, g, n, ddof=ddof)
        gap_b = jnp.where(count_b > 1, max_b - second_b, 0.0)
        if scale == "std":
            gap_b = gap_b / (std_b + eps)
        adv_b = jnp.where(is_best & (count_b > 1), gap_b, 0.0)
        return batch.replace(adv_bt=adv_b[:, None] * batch.mask_bt).add_metrics(
            passk_adv_frac=jnp.mean((adv_b != 0).astype(jnp.float32)))

    return stateless(fn)


def passk_grpo(
    *,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    kl_coef: float = 0.04,
    scale: str = "std",
    aggregation: str = "seq_mean_token_mean",
    **options,
) -> Algorithm:
    """GRPO trained for pass@k with k = the group size (verl's ``grpo_passk`` advantage).

        A_i = (max_g r − second max_g r) / (std_g r + 1e-6)  for the group's best row, else 0
        L   = agg[ max(−A ρ, −A clip(ρ, 1−ε, 1+ε)) + β k3 ]

    The advantage is the leave-one-out gradient estimate of the k-sample objective
    E[max_{i≤k} r_i] with k = n (Tang et al. 2025, "Optimizing Language Models for Inference Time
    Objectives using Reinforcement Learning", arXiv 2503.19595, the paper verl cites). It is a
    separate noun rather than a ``grpo`` keyword because only the advantage changes: every other
    default is ``grpo``'s (ε = 0.2, β = 0.04 with k3, ``seq_mean_token_mean``, lr 1e-6). Checked
    against verl's ``compute_grpo_passk_outcome_advantage``. Not this: the
    analytical pass@k advantages for k < n of "Pass@k Training for Adaptively Balancing
    Exploration and Exploitation" (arXiv 2508.10751) or PKPO (arXiv 2505.15201).

    Other keywords: see ``pg_algorithm`` (lr 1e-6, k3, ``kl_in="loss"``, no entropy bonus, no
    correction, one update per batch).
    """
    check_options("passk_grpo", options)
    return pg_algorithm(
        [passk_advantage(scale=scale)], objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high),
        kl_coef=kl_coef, aggregation=aggregation, **options,
    )

"""ReMax: REINFORCE with the greedy response's reward as the baseline."""
from __future__ import annotations

from polrl import objectives
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.collectors import with_greedy_baseline
from polrl.collectors.greedy_baseline import FIELD
from polrl.core import Algorithm, Batch, Transform, stateless


def greedy_baseline_advantage() -> Transform:
    """A_i = r_i − r(ȳ), ȳ the greedy response to the row's prompt, broadcast over tokens.

    r(ȳ) is ``batch.aux["greedy_reward_b"]``: one greedy, temperature-0 rollout per prompt,
    scored by the same verifier (the collector wrapper ``polrl.collectors.with_greedy_baseline``).
    """

    def fn(batch: Batch) -> Batch:
        batch.require("reward_b", by="greedy_baseline_advantage")
        batch.require_aux(FIELD, by="greedy_baseline_advantage", provider="polrl.collectors.with_greedy_baseline()")
        return batch.replace(adv_bt=(batch.reward_b - batch.aux[FIELD])[:, None] * batch.mask_bt)

    return stateless(fn)


def remax(
    *,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    kl_estimator: str = "k1",
    kl_in: str = "reward",
    aggregation: str = "seq_mean_token_sum",
    **options,
) -> Algorithm:
    """ReMax (Li et al. 2023, arXiv 2310.10505): REINFORCE with a greedy-decoding baseline.

        A_i = r(x, y_i) − r(x, ȳ),   ȳ = argmax decoding of π_θ for prompt x
        L   = agg[ max(−A_i ρ_i,t, −A_i clip(ρ_i,t, 1−ε, 1+ε)) ]

    The baseline costs one extra greedy rollout per prompt, not a value network; ReMax's
    collector wrapper (``polrl.collectors.with_greedy_baseline``) adds it to the batch as
    ``aux["greedy_reward_b"]`` (a task with a device reward). With one update per batch ρ = 1 and the loss is the paper's REINFORCE
    gradient Σ_t ∇log π(y_t) · A_i, i.e. ``seq_mean_token_sum`` (the default). The paper samples
    one response per prompt; here every one of the group's G samples is baselined by the same
    greedy reward. The KL sits in the reward (RLHF form, k1) with β = 0 by default.

    Other keywords: see ``pg_algorithm`` (lr 1e-6, β = 0, one update per batch).
    """
    check_options("remax", options)
    return pg_algorithm(
        [greedy_baseline_advantage()], objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high),
        kl_estimator=kl_estimator, kl_in=kl_in, aggregation=aggregation, collector=with_greedy_baseline(),
        **options,
    )

"""polrl.ops: pure array kernels of policy optimization (returns, advantages, KL, losses).

Every function is a pure, jittable function of arrays with its shapes asserted at entry.
Suffixes give shapes: ``_b`` per sequence [B], ``_bt`` per token [B, T], ``_btv`` per token per
vocabulary entry [B, T, V]; ``mask_bt`` is 1 on loss-bearing tokens, rows are right-padded.
"""
from polrl.ops.aggregation import AGGREGATION_MODES, aggregate
from polrl.ops.edit_distance import edit_distance, pairwise_edit_distance
from polrl.ops.distributions import entropy_from_logits, log_softmax_at, mean_log_prob_from_logits, token_logp_and_entropy
from polrl.ops.group import (
    GROUP_SCALES,
    group_advantages,
    group_stats,
    leave_one_out_baseline,
    zero_variance_groups,
)
from polrl.ops.kl import KL_ESTIMATORS, kl_abs, kl_k1, kl_k2, kl_k3
from polrl.ops.returns import discounted_returns, gae, gae_bt
from polrl.ops.stats import (
    masked_max,
    masked_mean,
    masked_min,
    masked_sum,
    masked_var,
    masked_whiten,
    safe_div,
)
from polrl.ops.surrogates import clipped_surrogate, log_ratio
from polrl.ops.vocabulary import MIN_P_MODES, min_p_log_prob

__all__ = (
    "AGGREGATION_MODES",
    "GROUP_SCALES",
    "KL_ESTIMATORS",
    "MIN_P_MODES",
    "aggregate",
    "clipped_surrogate",
    "discounted_returns",
    "edit_distance",
    "entropy_from_logits",
    "gae",
    "gae_bt",
    "group_advantages",
    "group_stats",
    "kl_abs",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "leave_one_out_baseline",
    "log_ratio",
    "log_softmax_at",
    "masked_max",
    "masked_mean",
    "masked_min",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "mean_log_prob_from_logits",
    "min_p_log_prob",
    "pairwise_edit_distance",
    "safe_div",
    "token_logp_and_entropy",
    "zero_variance_groups",
)

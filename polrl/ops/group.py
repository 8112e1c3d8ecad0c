"""Group-relative baselines over rows that share a prompt (GRPO, Dr.GRPO, RLOO, DAPO).

Rows are tagged by ``group_b``, int ids in [0, num_groups) (``num_groups`` is static; ids need
not be sorted or contiguous, empty groups are fine, ids outside the range are a caller bug).
Per-group reductions use ``jax.ops.segment_sum`` and are broadcast back to the rows.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from polrl.ops.stats import safe_div

Array = jax.Array

GROUP_SCALES = ("std", "none")


def _check(reward_b: Array, group_b: Array) -> None:
    chex.assert_rank([reward_b, group_b], 1)
    chex.assert_equal_shape([reward_b, group_b])
    chex.assert_type([reward_b, group_b], [float, int])


def _group_sum(x_b: Array, group_b: Array, num_groups: int) -> Array:
    """Σ over each row's group, broadcast back to the rows."""
    return jax.ops.segment_sum(x_b, group_b, num_segments=num_groups)[group_b]


def group_stats(reward_b: Array, group_b: Array, num_groups: int, ddof: int = 1):
    """Mean, standard deviation and size of each row's group, per row.

        mean_g = Σ_{i∈g} r_i / n_g,   std_g = √( Σ_{i∈g} (r_i − mean_g)² / (n_g − ddof) )

    ``ddof=1`` is the unbiased std used by verl / Trinity GRPO (``torch.std``); ``ddof=0`` the
    population std. Where n_g ≤ ddof (a group of one with ddof=1) the std is 0, not NaN; its
    gradient is NaN-free too.

    Returns:
      (mean_b, std_b, count_b), each [B] in the reward dtype.
    """
    _check(reward_b, group_b)
    count_b = _group_sum(jnp.ones_like(reward_b), group_b, num_groups)
    mean_b = _group_sum(reward_b, group_b, num_groups) / count_b
    sq_b = _group_sum(jnp.square(reward_b - mean_b), group_b, num_groups)
    var_b = safe_div(sq_b, jnp.maximum(count_b - ddof, 0))
    positive = var_b > 0
    std_b = jnp.where(positive, jnp.sqrt(jnp.where(positive, var_b, 1)), 0)
    return mean_b, std_b, count_b


def zero_variance_groups(reward_b: Array, group_b: Array, num_groups: int) -> Array:
    """bool [B]: the row's group has all rewards equal (groups of one included).

    Such groups give no group-relative signal; DAPO's dynamic sampling filters them out
    (Yu et al. 2025). Exact equality, max_g = min_g, no tolerance.
    """
    _check(reward_b, group_b)
    max_b = jax.ops.segment_max(reward_b, group_b, num_segments=num_groups)[group_b]
    min_b = jax.ops.segment_min(reward_b, group_b, num_segments=num_groups)[group_b]
    return max_b == min_b


def group_advantages(
    reward_b: Array,
    group_b: Array,
    num_groups: int,
    *,
    scale: str = "std",
    ddof: int = 1,
    eps: float = 1e-6,
) -> Array:
    """Group-relative advantages.

        A_i = (r_i − mean_g) / (std_g + ε)   scale="std":  GRPO (Shao et al. 2024, DeepSeekMath)
        A_i =  r_i − mean_g                  scale="none": Dr.GRPO (Liu et al. 2025)

    Conventions: std is unbiased (``ddof=1``) and ε = 1e-6, both as verl / Trinity GRPO;
    ``ddof=0`` gives the population std. Rows of a group whose rewards are all equal (groups of
    one included) get exactly 0, not the float noise of r − mean_g divided by ε.

    Args:
      reward_b: sequence rewards [B].
      group_b: int group ids [B] in [0, num_groups).
      num_groups: static number of group ids.
      scale: "std" or "none".
      ddof: delta degrees of freedom of the std.
      eps: added to the std.

    Returns:
      A [B].
    """
    if scale not in GROUP_SCALES:
        raise ValueError(f"Unknown scale {scale!r}; expected one of {GROUP_SCALES}.")
    mean_b, std_b, _ = group_stats(reward_b, group_b, num_groups, ddof=ddof)
    adv_b = reward_b - mean_b
    if scale == "std":
        adv_b = adv_b / (std_b + eps)
    return jnp.where(zero_variance_groups(reward_b, group_b, num_groups), 0, adv_b)


def leave_one_out_baseline(reward_b: Array, group_b: Array, num_groups: int) -> Array:
    """RLOO baseline: the mean reward of the other members of the row's group.

        b_i = (Σ_{j∈g} r_j − r_i) / (n_g − 1)

    (Kool et al. 2019; Ahmadian et al. 2024). A group of one has no other member; its baseline is
    its own reward, so its advantage r_i − b_i is 0. For groups of equal size G,
    r_i − b_i = G / (G − 1) · (r_i − mean_g), the Dr.GRPO advantage rescaled.

    Returns:
      b [B].
    """
    _check(reward_b, group_b)
    count_b = _group_sum(jnp.ones_like(reward_b), group_b, num_groups)
    others_b = _group_sum(reward_b, group_b, num_groups) - reward_b
    return jnp.where(count_b > 1, safe_div(others_b, count_b - 1), reward_b)

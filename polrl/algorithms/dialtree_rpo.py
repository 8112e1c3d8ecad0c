"""DialTree-RPO: group-relative advantages over a dialogue tree's leaves, and the adaptive format mask.

"Tree-based Dialogue Reinforced Policy Optimization for Red-Teaming Attacks" (Guo et al. 2025,
arXiv 2510.02286). The rollout is a tree of dialogues per goal (``polrl.collectors.dialogue_tree``:
rows are its leaves, with empty rows where a slot held none, ``aux["dialogue_leaf_b"]`` = 0).
For the leaves i of one goal with rewards R_i (1: the target was made to produce the goal):

    A_i     = (R_i − mean_leaves R) / (std_leaves R + ε)       (GRPO over the goal's dialogues)
    M_i,t   = 1 − 𝟙[y_i,t ∈ V_fmt ∧ A_i < 0]                    (adaptive mask)
    L       = agg[ M_i,t · ( max(−A_i ρ_i,t, −A_i clip(ρ_i,t, 1 ± ε)) + β k3_i,t ) ]

over the attacker's tokens only (the target's replies are masked by the collector). The
adaptive mask keeps the format tokens V_fmt (``format_tokens``: the ids of the characters that
make an attacker turn well-formed) out of the penalty of a negative-advantage dialogue, so
pushing a failed attack down does not push its correct format down with it; dialogues with
A ≥ 0 train their format tokens as usual. Empty rows take no part in the statistics and get
A = 0. The std is unbiased and a goal whose leaves all score the same gets A = 0 (the GRPO
conventions of ``polrl.ops.group_advantages``).

INFERRED: a shared prefix (a turn several leaves descend from) is trained once per leaf, with
each leaf's advantage (the paper computes the advantage per trajectory of the tree); the mask
also removes the masked tokens from the aggregation's token counts and from the KL term; β and ε
default to GRPO's (0.04, 0.2).
"""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp

from polrl import objectives, ops
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.collectors.dialogue_tree import LEAF_FIELD
from polrl.core import Algorithm, Batch, Transform, stateless

PROVIDER = 'the dialogue_tree collector: set config.collector = "dialogue_tree"'


def leaf_group_advantages(reward_b, group_b, leaf_b, *, scale: str = "std", ddof: int = 1, eps: float = 1e-6):
    """GRPO's advantage over the leaves (``leaf_b`` > 0) of each group; rows that are not leaves
    form groups of their own with reward 0, so their advantage is exactly 0. [B]."""
    n = reward_b.shape[0]
    is_leaf = leaf_b > 0
    groups = jnp.where(is_leaf, group_b, group_b + n)
    adv = ops.group_advantages(jnp.where(is_leaf, reward_b, 0.0), groups, 2 * n, scale=scale, ddof=ddof, eps=eps)
    return jnp.where(is_leaf, adv, 0.0)


def leaf_group_advantage(*, scale: str = "std", ddof: int = 1, eps: float = 1e-6) -> Transform:
    """``leaf_group_advantages`` broadcast over the row's tokens (prepare)."""

    def fn(batch: Batch) -> Batch:
        batch.require("reward_b", "group_b", by="leaf_group_advantage")
        batch.require_aux(LEAF_FIELD, by="leaf_group_advantage", provider=PROVIDER)
        adv_b = leaf_group_advantages(batch.reward_b, batch.group_b, batch.aux[LEAF_FIELD], scale=scale, ddof=ddof,
                                      eps=eps)
        return batch.replace(adv_bt=adv_b[:, None] * batch.mask_bt)

    return stateless(fn)


def format_token_mask(response_bt, adv_bt, format_tokens: Sequence[int]):
    """M_t = 1 − 𝟙[y_t ∈ V_fmt ∧ A_t < 0] (float32 [B, T])."""
    if not format_tokens:
        return jnp.ones(response_bt.shape, jnp.float32)
    is_format = jnp.isin(response_bt, jnp.asarray(tuple(format_tokens), response_bt.dtype))
    return 1.0 - (is_format & (adv_bt < 0)).astype(jnp.float32)


def adaptive_format_mask(format_tokens: Sequence[int]) -> Transform:
    """``mask_bt`` ← ``mask_bt`` · M (``format_token_mask``), after the advantage (prepare); logs
    ``format_masked_frac``, the fraction of trained tokens it removes."""

    def fn(batch: Batch) -> Batch:
        batch.require("adv_bt", by="adaptive_format_mask")
        keep = format_token_mask(batch.response_bt, batch.adv_bt, format_tokens)
        mask = batch.mask_bt * keep
        removed = (batch.mask_bt - mask).sum() / jnp.maximum(batch.mask_bt.sum(), 1.0)
        return batch.replace(mask_bt=mask, adv_bt=batch.adv_bt * keep).add_metrics(format_masked_frac=removed)

    return stateless(fn)


def dialtree_rpo(
    *,
    format_tokens: Sequence[int] = (),
    eps_low: float = 0.2,
    eps_high: float | None = None,
    kl_coef: float = 0.04,
    scale: str = "std",
    ddof: int = 1,
    aggregation: str = "seq_mean_token_mean",
    **options,
) -> Algorithm:
    """DialTree-RPO's loss (module docstring) on the leaves of ``dialogue_tree`` rollouts.

    ``format_tokens``: the token ids of V_fmt (``()``: no mask, GRPO over the tree's leaves).
    Other keywords: GRPO's (``polrl.algorithms.grpo``) and ``pg_algorithm``'s.
    """
    check_options("dialtree_rpo", options)
    bad = [t for t in format_tokens if isinstance(t, bool) or not isinstance(t, int) or t < 0]
    if bad:
        raise ValueError(f"dialtree_rpo: algorithm_kwargs.format_tokens has {bad}; give token ids (ints >= 0), e.g. "
                         f"tokenizer.encode('+=')")
    return pg_algorithm(
        [leaf_group_advantage(scale=scale, ddof=ddof), adaptive_format_mask(tuple(format_tokens))],
        objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high),
        kl_coef=kl_coef, aggregation=aggregation, **options,
    )

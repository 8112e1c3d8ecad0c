"""Reward-augmented preference pairs ("Reward-Augmented Data Enhances Direct Preference Alignment of
LLMs", Zhang et al., arXiv 2410.08067).

DPO on (x, y_w, y_l) pushes the rejected response down even when it is good, and treats a pair
of two high-quality responses as one high and one low. The paper conditions the policy on the
quality it should reach: each pair with rewards r_w > r_l becomes two goal-conditioned pairs,

    (x ⊕ g(r_w):  y_w ≻ y_l)        (x ⊕ g(r_l):  y_l ≻ y_w),

a dataset twice the size, trained with the unchanged DPO loss; at inference the prompt carries the
highest goal. Here g(r) is the text of reward level ℓ(r) = round(r · (L − 1)) clipped to
[0, L − 1], for L goal texts of equal token length (``goals``; rewards in [0, 1]), placed before
the left-padded prompt (goal, padding, prompt): the position the answer starts from is the one the
model was fine-tuned on, and the goal is context it learns to read. Under the goal r_l the former rejected response is the better fit (INFERRED: the
paper states a twofold, goal-conditioned relabelling on the quality scores; the swap under the
lower goal is this reading of it). A pair whose rewards tie stays a tie (reward 0.5 on both rows,
which every pair loss ignores); two rewards on one level give two opposite pairs under the same
goal, which cancel.

Rows: pair k of the inner collector (rows 2k, 2k + 1, ``group_size`` 2) becomes groups 2k (goal
r_w) and 2k + 1 (goal r_l), each the two responses in their original order; ``reward_b`` is the
relabelled preference (1 chosen, 0 rejected); ``aux["goal_reward_b"]`` the goal's reward and
``aux["pair_reward_b"]`` the row's original reward.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from polrl.collectors.context import Context
from polrl.core import Batch, Collector

GOAL, ORIGINAL = "goal_reward_b", "pair_reward_b"
PER_ROW = ("response_bt", "mask_bt", "behavior_logp_bt", "old_value_bt", "source_b", "version_b")


def goal_level(reward_b: jax.Array, levels: int) -> jax.Array:
    """int32 ℓ(r) = clip(round(r · (L − 1)), 0, L − 1) (module docstring)."""
    return jnp.clip(jnp.round(reward_b * (levels - 1)), 0, levels - 1).astype(jnp.int32)


def reward_goal_pairs(batch: Batch, goal_ids) -> Batch:
    """The goal-conditioned pairs of ``batch`` (pairs as consecutive rows; module docstring);
    ``goal_ids``: int [L, K], the token ids of the L goal texts. Pure and jittable."""
    goal_ids = jnp.asarray(goal_ids, jnp.int32)
    levels, k = goal_ids.shape
    reward = batch.reward_b.astype(jnp.float32).reshape(-1, 2)
    n = reward.shape[0]
    high, low = reward.max(axis=1), reward.min(axis=1)
    goal = jnp.stack([high, high, low, low], axis=1).reshape(-1)              # [4N]: goal of each new row
    rows = (2 * jnp.arange(n)[:, None] + jnp.array([0, 1, 0, 1])).reshape(-1)  # source row of each new row
    original = batch.reward_b.astype(jnp.float32)[rows]
    tie = jnp.repeat(high == low, 4)
    preference = jnp.where(tie, 0.5, (original == goal).astype(jnp.float32))
    goal_tokens = goal_ids[goal_level(goal, levels)]
    take = lambda x: None if x is None else x[rows]
    return Batch(
        prompt_bp=jnp.concatenate([goal_tokens.astype(batch.prompt_bp.dtype), batch.prompt_bp[rows]], axis=1),
        prompt_valid_bp=jnp.concatenate([jnp.ones((4 * n, k), bool), batch.prompt_valid_bp[rows]], axis=1),
        reward_b=preference,
        group_b=jnp.arange(4 * n, dtype=jnp.int32) // 2,
        aux={**{name: v[rows] for name, v in batch.aux.items()}, GOAL: goal, ORIGINAL: original},
        group_size=2,
        **{name: take(getattr(batch, name)) for name in PER_ROW},
    )


def with_reward_goals(goals: Sequence[str] = ("[0]", "[1]")):
    """``(collector, context) -> collector`` whose pairs are relabelled into goal-conditioned pairs
    (``reward_goal_pairs``) — RA-DPO's data, trained by any pair noun (the ``ra_dpo`` noun is DPO
    with this wrapper). ``goals``: L >= 2 texts of one token length, level 0 (reward 0) … level
    L − 1 (reward 1); evaluate with the highest before every prompt (``eval.prompt_prefix``). The inner
    collector must return pairs (``group_size`` 2, e.g. ``preference_pairs``). Metric:
    ``goal_untied_pairs``, the fraction of pairs whose rewards differ."""
    goals = tuple(goals)
    if len(goals) < 2 or not all(isinstance(g, str) and g for g in goals):
        raise ValueError(f"with_reward_goals: goals={goals!r} must be at least two non-empty texts (level 0 … L−1)")

    def wrap(inner: Collector, ctx: Context) -> Collector:
        ids = [list(ctx.task.tokenizer.encode(g)) for g in goals]
        if len({len(i) for i in ids}) != 1:
            raise ValueError(f"with_reward_goals: goals={goals!r} encode to {[len(i) for i in ids]} tokens; give every "
                             f"goal the same token length")
        goal_ids = jnp.asarray(ids, jnp.int32)

        def check(batch: Batch) -> None:
            if batch.group_size != 2 or batch.reward_b is None:
                raise ValueError(f"with_reward_goals: the inner collector returns groups of {batch.group_size} rows; it "
                                 f"must return scored pairs (group_size 2, e.g. collector='preference_pairs')")

        def collect(cstate, state, data, rng):
            batch, cstate, metrics = inner.collect(cstate, state, data, rng)
            check(batch)
            pairs = batch.reward_b.reshape(-1, 2)
            untied = (pairs[:, 0] != pairs[:, 1]).astype(jnp.float32).mean()
            return reward_goal_pairs(batch, goal_ids), cstate, {**metrics, "goal_untied_pairs": untied}

        def example(prompts):
            batch = inner.example(prompts)
            check(batch)
            return jax.eval_shape(lambda b: reward_goal_pairs(b, goal_ids), batch)

        return inner._replace(collect=collect, example=example)

    return wrap

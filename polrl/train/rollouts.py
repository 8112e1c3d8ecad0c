"""Batch builders: turn prompts (and the policy) into a ``Batch`` for an algorithm.

* ``demonstration_batch`` — prompts with their labelled answers as responses (SFT).
* ``group_rollout``       — G samples per prompt from the policy, scored by the verifier
  (GRPO, PPO and every group-relative method).
* ``preference_pairs``    — from a group rollout, the best and the worst sample of each prompt
  as a pair of rows (DPO from the model's own samples, ranked by the verifier).

All are pure and jittable; the reward function is a jittable
``(response_bt, mask_bt, answer_ba, answer_valid_ba) -> reward_b``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl.core import Batch
from polrl.rollout import SamplingConfig, sample


def demonstration_batch(data: dict, *, pad_id: int) -> Batch:
    """Prompt ++ answer, with the answer (incl. EOS) as the supervised response."""
    valid = data["answer_valid_ba"]
    return Batch(
        prompt_bp=data["prompt_bp"],
        prompt_valid_bp=data["prompt_valid_bp"],
        response_bt=jnp.where(valid, data["answer_ba"], pad_id),
        mask_bt=valid.astype(jnp.float32),
    )


def group_rollout(params, data: dict, rng, *, graphdef, sampling: SamplingConfig, group_size: int, reward_fn) -> Batch:
    """Samples ``group_size`` responses per prompt and scores them; group id = prompt index.

    With ``reward_fn=None`` the rewards are left for the host (``reward_b`` is ``None``).
    """
    rep = lambda x: jnp.repeat(x, group_size, axis=0)
    prompt_bp, valid_bp = rep(data["prompt_bp"]), rep(data["prompt_valid_bp"])
    out = sample(graphdef, params, prompt_bp, valid_bp, rng, sampling)
    reward_b = None
    if reward_fn is not None:
        answers = rep(data["answer_ba"]), rep(data["answer_valid_ba"])
        reward_b = reward_fn(out.response_bt, out.mask_bt, *answers).astype(jnp.float32)
    n = prompt_bp.shape[0]
    return Batch(
        prompt_bp=prompt_bp,
        prompt_valid_bp=valid_bp,
        response_bt=out.response_bt,
        mask_bt=out.mask_bt,
        reward_b=reward_b,
        group_b=jnp.arange(n, dtype=jnp.int32) // group_size,
        behavior_logp_bt=out.logp_bt,
        group_size=group_size,
    )


def preference_pairs(batch: Batch, *, group_size: int) -> Batch:
    """Rows ``[best_0, worst_0, best_1, worst_1, …]`` of each group, as groups of two.

    Best/worst are the first arg-max/arg-min of ``reward_b`` within the group; a group whose
    rewards are all equal yields a tie, which the preference loss ignores.
    """
    r = batch.reward_b.reshape(-1, group_size)
    base = jnp.arange(r.shape[0]) * group_size
    rows = jnp.stack([base + jnp.argmax(r, axis=1), base + jnp.argmin(r, axis=1)], axis=1).reshape(-1)
    pairs = jax.tree.map(lambda x: x[rows], batch.replace(group_b=None))
    return pairs.replace(group_b=jnp.arange(rows.shape[0], dtype=jnp.int32) // 2, group_size=2)


def rollout_metrics(batch: Batch) -> dict:
    """Reward, accuracy (reward ≥ 1), length and token counts of a rollout batch."""
    length_b = batch.mask_bt.sum(-1)
    return {
        "reward_mean": batch.reward_b.mean(),
        "accuracy": (batch.reward_b >= 1.0).mean(),
        "response_length": length_b.mean(),
        "response_tokens": length_b.sum(),
        "reward_finite": jnp.isfinite(batch.reward_b).all(),
    }

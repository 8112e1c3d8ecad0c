"""Batch builders: turn prompts (and the policy) into a ``Batch`` for an algorithm.

* ``demonstration_batch`` — prompts with their labelled answers as responses (SFT).
* ``group_rollout``       — G rows per prompt: policy samples (and, on request, expert rows),
  scored by the verifier (GRPO, PPO and every group-relative method).
* ``keep_informative_groups`` — DAPO's dynamic sampling on an oversampled rollout.
* ``preference_pairs``    — from a group rollout, the best and the worst sample of each prompt
  as a pair of rows (DPO from the model's own samples, ranked by the verifier).

All are pure and jittable; the reward function is a jittable
``(response_bt, mask_bt, answer_ba, answer_valid_ba) -> reward_b``.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from polrl import ops
from polrl.core import EXPERT, Batch
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


def group_rollout(
    params, data: dict, rng, *, graphdef, sampling: SamplingConfig, group_size: int, reward_fn,
    expert_per_group: int = 0, version=0, greedy_baseline: bool = False,
) -> Batch:
    """Samples responses for every prompt and scores them; group id = prompt index.

    Each group has ``group_size`` rows: ``group_size − expert_per_group`` policy samples
    (``source_b = ON_POLICY``, ``behavior_logp_bt`` = the sampler's log-probs) followed by
    ``expert_per_group`` copies of the prompt's labelled answer (``source_b = EXPERT``,
    ``behavior_logp_bt = 0``: the expert's policy is unknown). ``version_b`` stamps every row
    with ``version`` (the policy's step). ``greedy_baseline`` adds ``baseline_b``: the reward of one
    greedy (temperature 0) response per prompt, shared by the group (ReMax).

    With ``reward_fn=None`` the rewards are left for the host (``reward_b`` is ``None``); expert
    rows and greedy baselines need a device reward.
    """
    num_prompts, k = data["prompt_bp"].shape[0], expert_per_group
    samples = group_size - k
    if not 0 <= k < group_size:
        raise ValueError(f"expert_per_group={k} must be in [0, group_size={group_size})")
    if reward_fn is None and (k or greedy_baseline):
        raise ValueError("expert rows and greedy baselines need a task with a device reward")
    rep = lambda x, r: jnp.repeat(x, r, axis=0)
    out = sample(graphdef, params, rep(data["prompt_bp"], samples), rep(data["prompt_valid_bp"], samples), rng, sampling)
    response_bt, mask_bt, logp_bt = out.response_bt, out.mask_bt, out.logp_bt
    source_b = jnp.zeros((num_prompts * samples,), jnp.int32)
    if k:
        expert = demonstration_batch(data, pad_id=sampling.pad_id)
        width = response_bt.shape[1] - expert.response_bt.shape[1]
        exp_resp = jnp.pad(expert.response_bt, ((0, 0), (0, width)), constant_values=sampling.pad_id)
        exp_mask = jnp.pad(expert.mask_bt, ((0, 0), (0, width)))

        def interleave(policy_x, expert_x):
            """[P·S, …] policy rows and [P, …] expert rows → [P·G, …], experts last in each group."""
            policy_x = policy_x.reshape(num_prompts, samples, *policy_x.shape[1:])
            expert_x = jnp.broadcast_to(expert_x[:, None], (num_prompts, k, *expert_x.shape[1:]))
            return jnp.concatenate([policy_x, expert_x.astype(policy_x.dtype)], axis=1).reshape(-1, *policy_x.shape[2:])

        response_bt = interleave(response_bt, exp_resp)
        mask_bt = interleave(mask_bt, exp_mask)
        logp_bt = interleave(logp_bt, jnp.zeros_like(exp_mask))
        source_b = interleave(source_b, jnp.full((num_prompts,), EXPERT, jnp.int32))
    n = num_prompts * group_size
    prompt_bp, valid_bp = rep(data["prompt_bp"], group_size), rep(data["prompt_valid_bp"], group_size)
    reward_b = baseline_b = None
    if reward_fn is not None:
        answers = rep(data["answer_ba"], group_size), rep(data["answer_valid_ba"], group_size)
        reward_b = reward_fn(response_bt, mask_bt, *answers).astype(jnp.float32)
    if greedy_baseline:
        greedy = sample(graphdef, params, data["prompt_bp"], data["prompt_valid_bp"], rng, dataclasses.replace(sampling, temperature=0.0))
        base = reward_fn(greedy.response_bt, greedy.mask_bt, data["answer_ba"], data["answer_valid_ba"])
        baseline_b = rep(base.astype(jnp.float32), group_size)
    return Batch(
        prompt_bp=prompt_bp,
        prompt_valid_bp=valid_bp,
        response_bt=response_bt,
        mask_bt=mask_bt,
        reward_b=reward_b,
        group_b=jnp.arange(n, dtype=jnp.int32) // group_size,
        behavior_logp_bt=logp_bt,
        source_b=source_b if k else None,
        version_b=jnp.full((n,), version, jnp.int32),
        baseline_b=baseline_b,
        group_size=group_size,
    )


def keep_informative_groups(batch: Batch, num_groups: int) -> tuple[Batch, dict]:
    """DAPO's dynamic sampling with static shapes: keep ``num_groups`` of the batch's groups,
    those whose rewards are not all equal first (in draw order), then zero-variance ones.

    The batch was drawn with ``oversample ×`` as many prompts as a step trains on, which plays
    the role of DAPO's "sample more prompts until the batch is full"; when too few informative
    groups were drawn, the remaining slots hold zero-variance groups (no signal with
    group-relative advantages). Logs ``dynamic/informative_frac`` (informative groups kept ÷
    ``num_groups``) and ``dynamic/drawn_informative_frac`` (of all drawn groups).
    """
    g = batch.group_size
    drawn = batch.batch_size // g
    if num_groups > drawn:
        raise ValueError(f"keep_informative_groups: asked for {num_groups} groups, the batch has {drawn}")
    zero_g = ops.zero_variance_groups(batch.reward_b, batch.group_b, batch.batch_size)[::g]
    order = jnp.argsort(zero_g.astype(jnp.int32), stable=True)[:num_groups]
    rows = (order[:, None] * g + jnp.arange(g)).reshape(-1)
    kept = jax.tree.map(lambda x: x[rows], batch.replace(group_b=None))
    kept = kept.replace(group_b=jnp.arange(num_groups * g, dtype=jnp.int32) // g)
    informative = (~zero_g).astype(jnp.float32)
    metrics = {
        "dynamic/informative_frac": informative[order].mean(),
        "dynamic/drawn_informative_frac": informative.mean(),
    }
    return kept, metrics


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
    """Reward, accuracy (reward ≥ 1), length and token counts of the policy's samples.

    Expert rows (``source_b = EXPERT``) are left out of the reward/accuracy/length statistics.
    """
    length_b = batch.mask_bt.sum(-1)
    rows_b = jnp.ones_like(batch.reward_b) if batch.source_b is None else (batch.source_b != EXPERT).astype(jnp.float32)
    mean = lambda x: (x * rows_b).sum() / rows_b.sum()
    return {
        "reward_mean": mean(batch.reward_b),
        "accuracy": mean((batch.reward_b >= 1.0).astype(jnp.float32)),
        "response_length": mean(length_b),
        "response_tokens": length_b.sum(),
        "reward_finite": jnp.isfinite(batch.reward_b).all(),
    }

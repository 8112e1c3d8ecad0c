"""Prepare-transforms: run once per rollout batch, outside the gradient.

They read rollout fields (``reward_b``, ``group_b``, ``old_value_bt``, ``mask_bt``) and set
``adv_bt`` / ``return_bt`` or re-weight rows. Each is a factory that binds hyper-parameters and
returns a ``polrl.core.Transform``.
"""
from __future__ import annotations

import jax.numpy as jnp

from polrl import ops
from polrl.core import EXPERT, Batch, Transform, stateless


def group_advantage(
    *, scale: str = "std", ddof: int = 1, eps: float = 1e-6, exclude_expert: bool = False
) -> Transform:
    """Group-relative advantage (GRPO; Dr.GRPO with ``scale="none"``), broadcast over tokens.

        A_i = (r_i − mean_g r) / (std_g r + ε)     (scale="std",  GRPO, Shao et al. 2024)
        A_i =  r_i − mean_g r                      (scale="none", Dr.GRPO, Liu et al. 2025)

    ``std`` is unbiased (``ddof=1``) as in verl/Trinity; groups of one get advantage 0. Group ids
    are ``batch.group_b`` in ``[0, B)``.

    ``exclude_expert=True`` takes the group statistics over the policy's own rows only (mixed
    groups of CHORD / RL-PLUS): rows with ``source_b == EXPERT`` neither enter mean and std nor
    get an advantage (0). Without ``source_b`` every row is the policy's.
    """

    def fn(batch: Batch) -> Batch:
        batch.require("reward_b", "group_b", by="group_advantage")
        n, group_b = batch.batch_size, batch.group_b
        expert_b = None if not exclude_expert or batch.source_b is None else batch.source_b == EXPERT
        if expert_b is not None:
            group_b = jnp.where(expert_b, group_b + n, group_b)  # expert rows: groups of their own
        adv_b = ops.group_advantages(
            batch.reward_b, group_b, n if expert_b is None else 2 * n, scale=scale, ddof=ddof, eps=eps
        )
        if expert_b is not None:
            adv_b = jnp.where(expert_b, 0.0, adv_b)
        return batch.replace(adv_bt=adv_b[:, None] * batch.mask_bt)

    return stateless(fn)


def drop_zero_variance_groups() -> Transform:
    """Masks out every row of a group whose rewards are all equal (DAPO's dynamic-sampling filter).

    Such groups carry no group-relative signal (their advantage is 0) but still count in token
    means and in the KL term; masking them keeps the update on informative prompts. Shapes are
    static under jit, so rows are masked rather than dropped. Logs ``zero_variance_frac``, the
    fraction of rows removed.
    """

    def fn(batch: Batch) -> Batch:
        batch.require("reward_b", "group_b", by="drop_zero_variance_groups")
        flat = ops.zero_variance_groups(batch.reward_b, batch.group_b, batch.batch_size)
        keep_b = 1.0 - flat.astype(jnp.float32)
        batch = batch.replace(mask_bt=batch.mask_bt * keep_b[:, None])
        return batch.add_metrics(zero_variance_frac=1.0 - keep_b.mean())

    return stateless(fn)


def gae_advantage(*, gamma: float = 1.0, lambda_: float = 0.95) -> Transform:
    """Token-level GAE for a sequence reward paid at the last response token (PPO for LLMs).

        r_t = R·[t = last valid token],  δ_t = r_t + γ V_{t+1} − V_t,
        A_t = Σ_k (γλ)^k δ_{t+k},  G_t = A_t + V_t,

    with V after the last valid token = 0 (the episode ends with the EOS or the length limit).
    Values are the value head at rollout time (``old_value_bt``; declared need ``"values"``).
    """

    def fn(batch: Batch) -> Batch:
        batch.require("reward_b", "old_value_bt", by="gae_advantage")
        mask = batch.mask_bt
        last = jnp.cumsum(mask[:, ::-1], axis=1)[:, ::-1] == 1.0  # the last valid token
        reward_bt = jnp.where(last & (mask > 0), batch.reward_b[:, None], 0.0)
        adv_bt = ops.gae_bt(reward_bt, batch.old_value_bt, mask, gamma=gamma, lambda_=lambda_)
        return batch.replace(adv_bt=adv_bt, return_bt=(adv_bt + batch.old_value_bt) * mask)

    return stateless(fn, needs=("values",))


def whiten_advantage(*, shift_mean: bool = True) -> Transform:
    """Normalizes ``adv_bt`` to zero mean / unit variance over the valid tokens of the batch."""

    def fn(batch: Batch) -> Batch:
        batch.require("adv_bt", by="whiten_advantage")
        adv = ops.masked_whiten(batch.adv_bt, batch.mask_bt, shift_mean=shift_mean)
        return batch.replace(adv_bt=adv * batch.mask_bt)

    return stateless(fn)

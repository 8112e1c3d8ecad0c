"""GPG: group policy gradient (REINFORCE on group-relative advantages, no ratio, no clip, no KL)."""
from __future__ import annotations

import jax.numpy as jnp

from polrl import ops
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.core import Algorithm, Batch, Transform, stateless

GPG_ALPHAS = ("valid_rows", "nonzero_reward", "none")


def gpg_advantage(*, scale: str = "none", alpha: str = "valid_rows", eps: float = 1e-6) -> Transform:
    """GPG's corrected group advantage (prepare transform), broadcast over the response tokens.

        Â_i = α · (r_i − mean_g r) / F_norm

    F_norm = 1 (``scale="none"``, the paper's default and verl's ``f_norm=1``) or the group's
    unbiased std + ε (``scale="std"``). Rows of groups whose rewards are all equal (groups of one
    included) get 0. α, "accurate gradient estimation" (``alpha``):

        "valid_rows"      α = B / (B − M), M = rows in such zero-variance groups (the paper;
                          its reference code divides the loss by the fraction of valid groups)
        "nonzero_reward"  α = B / #{i : r_i ≠ 0}    (verl's ``compute_gpg_outcome_advantage``)
        "none"            α = 1

    (denominators floored at 1). B counts the rows of the prepare batch. The zero-advantage rows
    still count in ``token_mean``'s denominator; α restores the gradient's scale to that of the
    informative rows. Logs ``gpg_alpha``.
    """
    if alpha not in GPG_ALPHAS:
        raise ValueError(f"gpg_advantage: alpha={alpha!r} is not one of {list(GPG_ALPHAS)}")
    if scale not in ops.GROUP_SCALES:
        raise ValueError(f"gpg_advantage: scale={scale!r} is not one of {list(ops.GROUP_SCALES)}")

    def fn(batch: Batch) -> Batch:
        batch.require("reward_b", "group_b", by="gpg_advantage")
        r, g, n = batch.reward_b, batch.group_b, batch.batch_size
        adv_b = ops.group_advantages(r, g, n, scale=scale, eps=eps)
        if alpha == "valid_rows":
            kept = n - jnp.sum(ops.zero_variance_groups(r, g, n))
        elif alpha == "nonzero_reward":
            kept = jnp.sum(r != 0)
        else:
            kept = n
        a = n / jnp.maximum(kept, 1).astype(r.dtype)
        return batch.replace(adv_bt=a * adv_b[:, None] * batch.mask_bt).add_metrics(gpg_alpha=a)

    return stateless(fn)


def log_likelihood_policy_gradient() -> Transform:
    """REINFORCE's per-token loss, term ``"pg"``: L_t = −A_t · log π_θ(y_t) (no ratio, no clip).

    Its gradient is −A_t ∇log π_θ(y_t) whatever π_old is (verl's ``gpg`` loss; no importance
    correction when a rollout batch is reused).
    """

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "adv_bt", by="log_likelihood_policy_gradient")
        return batch.add_term("pg", -batch.adv_bt * batch.logp_bt)

    return stateless(fn)


def gpg(*, scale: str = "none", alpha: str = "valid_rows", **options) -> Algorithm:
    """GPG (Chu et al. 2025, "GPG: A Simple and Strong Reinforcement Learning Baseline for Model
    Reasoning", arXiv 2504.02546).

        Â_i = α (r_i − mean_g r),     α = B / (B − M)          (``gpg_advantage``)
        L   = 1/Σ_i |o_i| Σ_i Σ_t −Â_i log π_θ(o_i,t)          (token_mean)

    No surrogate (no ratio, no clip), no KL, no critic, no reference model. Defaults: F_norm = 1,
    the paper's α, lr 1e-6, ``token_mean``, one update per batch (the reference code's single
    iteration per generation batch; verl's example splits the batch into 4 minibatches).
    Checked against verl's ``compute_gpg_outcome_advantage`` / ``compute_policy_loss_gpg`` and the
    paper's reference trainer (advantage r − mean without std, loss divided by the fraction of
    groups with distinct rewards). Not carried: the reference trainer's resampling of prompts until
    half the groups are informative (``min_inverse_alpha``; polrl's DAPO dynamic sampling is the
    nearest collector).

    Other keywords: see ``pg_algorithm`` (lr 1e-6, β = 0, ``token_mean``, one update per batch).
    """
    check_options("gpg", options)
    return pg_algorithm([gpg_advantage(scale=scale, alpha=alpha)], log_likelihood_policy_gradient(), **options)

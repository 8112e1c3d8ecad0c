"""ROVER: Random Policy Valuation for diverse reasoning (He et al. 2025, arXiv 2509.24981).

Reference code: ``yuxiaooye/ROVER`` ``Math/verl/workers/actor/dp_actor.py``
(``DataParallelROVERActor.update_policy``), ``Math/scripts/deepscaler/train/rover_qwen3_8b.sh``.

In a deterministic, tree-shaped MDP with a binary terminal reward, the greedy action of the
Q-function of the *uniform random* policy is optimal. ROVER parameterizes that Q-function by the
policy's own log-probs relative to the rollout policy,

    Q_θ(s, a) = ρ · (log π_θ(a|s) − log π_old(a|s)),

and regresses it onto a target: the (GRPO) advantage plus the value of the uniform policy at the
next state, V(s′) = mean_a Q_θ(s′, a) = ρ · (m_θ(s′) − m_old(s′)), m = mean_a log π(a|s′).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from polrl import advantages, objectives, ops
from polrl.algorithms.policy_gradient import REWARD_SIDE_OPTIONS, check_options, pg_algorithm
from polrl.core import Algorithm, Batch, Transform, stateless


def rover_q_regression(*, rho: float = 1.0, clip: float | None = None, response_level: bool = False) -> Transform:
    """Regresses ROVER's Q_θ = ρ·(log π_θ − log π_old) onto the advantage; term/loss ``"rover"``.

        q_t  = ρ · (log π_θ(y_t) − log π_old(y_t))
        L_t  = (q_t − sg(A_t))²                                      (token level)
        L    = mean_b ( (1/|y_b|) Σ_t q_t − A_b )²                   (``response_level``, a scalar)

    The target is the advantage alone: ROVER's next-state term ρ·(m_θ − m_old)(s_{t+1}) is 0
    whenever π_old = π_θ, and π_old's vocabulary mean m_old is not available otherwise (see the
    ``rover`` noun). ``clip`` = ε (``use_rover_clip``): where the target lies above q and
    q > log(1 + ε), q is replaced by the constant log(1 + ε); symmetrically below log(1 − ε)
    (those tokens get no gradient, as a PPO clip). Logs ``q_mean`` and ``rover_clip_frac``.
    """
    if rho <= 0:
        raise ValueError(f"rover_q_regression: rho={rho} must be > 0")
    if clip is not None and not 0.0 < clip < 1.0:
        raise ValueError(f"rover_q_regression: clip={clip} must be in (0, 1) or None")

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "adv_bt", by="rover_q_regression")
        m = batch.mask_bt
        target = jax.lax.stop_gradient(batch.adv_bt)
        q = rho * ops.log_ratio(batch.logp_bt, objectives.old_logp(batch))
        clipped = jnp.zeros_like(q, bool)
        if clip is not None:
            high, low = math.log(1.0 + clip), math.log(1.0 - clip)
            above, below = (target > q) & (q > high), (target < q) & (q < low)
            q = jnp.where(above, high, jnp.where(below, low, q))
            clipped = above | below
        metrics = dict(
            q_mean=ops.masked_mean(jax.lax.stop_gradient(q), m),
            rover_clip_frac=ops.masked_mean(clipped.astype(jnp.float32), m),
        )
        if response_level:
            valid_b = m.sum(-1) > 0
            err_b = ops.masked_mean(q, m, axis=1) - ops.masked_mean(target, m, axis=1)
            return batch.add_loss("rover", ops.masked_mean(jnp.square(err_b), valid_b)).add_metrics(**metrics)
        return batch.add_term("rover", jnp.square(q - target)).add_metrics(**metrics)

    return stateless(fn)


def rover(
    *,
    rho: float = 1.0,
    next_q_scale: float = 1.0,
    clip: float | None = None,
    response_level: bool = False,
    scale: str = "std",
    num_epochs: int = 1,
    num_minibatches: int = 1,
    **options,
) -> Algorithm:
    """ROVER (arXiv 2509.24981): fit the uniform policy's Q-values, parameterized by log π_θ.

        A_i    = GRPO advantage (std-normalized), broadcast to every token
        q_t    = ρ (log π_θ − log π_old)(y_t)
        target = sg(A_t + s · ρ (m_θ − m_old)(s_{t+1}))     (0 after the last token)
        L      = agg_t (q_t − target_t)²

    Defaults (Math recipe): ρ = ``rover_t`` = 1, s = ``next_q_scale`` = 1, GRPO advantage with
    std, no KL, no entropy, one update per batch, ``token_mean``. ``clip`` = ε turns on
    ``use_rover_clip``; ``response_level`` the sequence-level loss; ``next_q_scale=0`` is
    ``target_adv_only``. Sampling at temperature 0.6 in the recipe is a rollout option.

    With one update per batch π_old = π_θ: q_t = 0 in value (gradient ρ∇log π) and m_θ = m_old, so
    the next-state term is exactly 0 and L's gradient is −2ρ·A·∇log π — a REINFORCE step. With
    several updates (``num_epochs · num_minibatches > 1``) q moves off 0 and the regression acts;
    the next-state term then needs π_old's vocabulary mean log-prob at every position, which the
    trainer does not compute (it keeps π_old's log-probs of the taken tokens only), so that
    regime requires ``next_q_scale=0`` (ROVER's ``target_adv_only``).
    INFERRED: the target is detached (the ROVER actor computes it from the training forward; its
    loss helper was not available to check).

    Other keywords: see ``pg_algorithm`` (lr 1e-6, β = 0, k3, no entropy bonus, ``token_mean``),
    all but the prepare-side ``kl_in``, ``kl_target``, ``correction`` and ``correction_threshold``.
    """
    check_options("rover", options, without=REWARD_SIDE_OPTIONS)
    if next_q_scale and num_epochs * num_minibatches > 1:
        raise ValueError(
            f"rover with num_epochs={num_epochs}, num_minibatches={num_minibatches} needs π_old's "
            "vocabulary-mean log-prob for the next-state term, which the trainer does not keep; set "
            "next_q_scale=0 (ROVER's target_adv_only) or one update per batch"
        )
    return pg_algorithm(
        advantages.group_advantage(scale=scale),
        rover_q_regression(rho=rho, clip=clip, response_level=response_level),
        num_epochs=num_epochs, num_minibatches=num_minibatches, **options,
    )

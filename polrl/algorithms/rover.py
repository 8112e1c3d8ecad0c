"""ROVER: Random Policy Valuation for diverse reasoning (He et al. 2025, arXiv 2509.24981).

Reference code: ``yuxiaooye/ROVER`` ``Math/verl/workers/actor/dp_actor.py``
(``DataParallelROVERActor.update_policy``, ``_forward_micro_batch``), ``Math/verl/utils/torch_functional.py``
(``sum_log_softmax``), ``Math/verl/trainer/ppo/core_algos.py`` (``compute_rover_loss``),
``Math/scripts/deepscaler/train/rover_qwen3_8b.sh`` and ``Countdown/scripts/train_rover.sh``.

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


def rover_q_regression(
    *, rho: float = 1.0, next_q_scale: float = 1.0, clip: float | None = None, response_level: bool = False
) -> Transform:
    """Regresses ROVER's Q_θ = ρ·(log π_θ − log π_old) onto its target; term/loss ``"rover"``.

        q_t      = ρ · (log π_θ(y_t) − log π_old(y_t))
        next_t   = s · ρ · (m_θ − m_old)(s_{t+1}) · mask_{t+1}    (0 at the last position)
        target_t = sg(A_t + next_t)
        L_t      = (q_t − target_t)²                                  (token level)
        L        = mean_b ( (1/|y_b|) Σ_t q_t − A_b )²                (``response_level``, a scalar)

    m(s) = (1/V) Σ_v log π(v|s), the vocabulary mean of the log-probs, so ρ·(m_θ − m_old)(s) is
    the value of the uniform policy under Q_θ at s; s_{t+1} is the state after y_t, whose
    m is the one the scoring forward computes at position t+1 (the reference's
    ``current_q[:, 1:] − old_logits[:, 1:]``, masked, shifted by one and padded with 0). s =
    ``next_q_scale`` (``next_q_scale_factor``; 0 is ``target_adv_only``). m_old and m_θ come from
    the trainer (need ``"old_mean_logp"``: ``aux["old_mean_logp_bt"]`` and ``aux["mean_logp_bt"]``);
    when π_old was not recomputed (``old_logp_bt`` None, one update per batch) π_old = π_θ and the
    term is exactly 0 (logged as ``next_q_mean``). The target is detached, as the reference's
    ``compute_rover_loss`` does, so m_θ carries no gradient. The response-level loss regresses
    onto the advantage alone, as the reference's ``response_level_rover_loss``.

    ``clip`` = ε (``use_rover_clip``): where the target lies above q and q > log(1 + ε), q is
    replaced by the constant log(1 + ε); symmetrically below log(1 − ε) (those tokens get no
    gradient, as a PPO clip). Logs ``q_mean``, ``rover_clip_frac`` and, with s ≠ 0,
    ``next_q_mean``.
    """
    if rho <= 0:
        raise ValueError(f"rover_q_regression: rho={rho} must be > 0")
    if clip is not None and not 0.0 < clip < 1.0:
        raise ValueError(f"rover_q_regression: clip={clip} must be in (0, 1) or None")

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "adv_bt", by="rover_q_regression")
        m = batch.mask_bt
        adv = jax.lax.stop_gradient(batch.adv_bt)
        target = adv
        metrics = {}
        if next_q_scale:
            next_q = jnp.zeros_like(adv)
            if batch.old_logp_bt is not None:  # π_old recomputed: m_θ − m_old is not 0
                missing = [k for k in ("mean_logp_bt", "old_mean_logp_bt") if k not in batch.aux]
                if missing:
                    raise ValueError(
                        f"rover_q_regression(next_q_scale={next_q_scale}) needs Batch.aux {missing}, π_θ's and "
                        "π_old's vocabulary-mean log-probs, which the trainer fills for the need "
                        "'old_mean_logp' when it recomputes π_old (a π_old that came with the rows has "
                        "none); or set next_q_scale=0"
                    )
                v_bt = rho * (batch.aux["mean_logp_bt"] - batch.aux["old_mean_logp_bt"]) * m  # V(s_t)
                next_q = next_q_scale * jnp.concatenate([v_bt[:, 1:], jnp.zeros_like(v_bt[:, :1])], axis=1)
            target = jax.lax.stop_gradient(adv + next_q)
            metrics["next_q_mean"] = ops.masked_mean(jax.lax.stop_gradient(next_q), m)
        q = rho * ops.log_ratio(batch.logp_bt, objectives.old_logp(batch))
        clipped = jnp.zeros_like(q, bool)
        if clip is not None:
            high, low = math.log(1.0 + clip), math.log(1.0 - clip)
            above, below = (target > q) & (q > high), (target < q) & (q < low)
            q = jnp.where(above, high, jnp.where(below, low, q))
            clipped = above | below
        metrics.update(
            q_mean=ops.masked_mean(jax.lax.stop_gradient(q), m),
            rover_clip_frac=ops.masked_mean(clipped.astype(jnp.float32), m),
        )
        if response_level:
            valid_b = m.sum(-1) > 0
            err_b = ops.masked_mean(q, m, axis=1) - ops.masked_mean(adv, m, axis=1)
            return batch.add_loss("rover", ops.masked_mean(jnp.square(err_b), valid_b)).add_metrics(**metrics)
        return batch.add_term("rover", jnp.square(q - target)).add_metrics(**metrics)

    return stateless(fn, needs=("old_mean_logp",) if next_q_scale else ())


def rover(
    *,
    rho: float = 1.0,
    next_q_scale: float = 1.0,
    clip: float | None = None,
    response_level: bool = False,
    scale: str = "std",
    num_epochs: int = 1,
    num_minibatches: int = 4,
    **options,
) -> Algorithm:
    """ROVER (arXiv 2509.24981): fit the uniform policy's Q-values, parameterized by log π_θ.

        A_i    = GRPO advantage (std-normalized), broadcast to every token
        q_t    = ρ (log π_θ − log π_old)(y_t)
        target = sg(A_t + s · ρ (m_θ − m_old)(s_{t+1}))     (0 after the last token)
        L      = agg_t (q_t − target_t)²

    (``rover_q_regression``). Defaults (the authors' recipes): ρ = ``rover_t`` = 1, s =
    ``next_q_scale`` = 1, GRPO advantage with std, no KL, no entropy, ``token_mean``, lr 1e-6,
    gradient clipping at 1, and four gradient steps per rollout batch: ``num_epochs=1`` ×
    ``num_minibatches=4``, from the Math and Countdown scripts' ``train_batch_size=128`` prompts,
    ``ppo_mini_batch_size=32`` prompts (both counted in prompts, so a minibatch holds whole
    groups) and ``ppo_epochs=1``. The recipe's minibatches are consecutive slices of the batch;
    here they are random partitions into whole groups (the update loop's convention). ``clip`` =
    ε turns on ``use_rover_clip``; ``response_level`` the sequence-level loss;
    ``next_q_scale=0`` is ``target_adv_only``. Sampling at temperature 0.6 in the Math recipe is
    a rollout option.

    With several updates per batch the trainer recomputes π_old's log-probs and its
    vocabulary-mean log-prob m_old at every position in one forward before the first update
    (need ``"old_mean_logp"``), and each update's scoring forward computes m_θ from the same
    LM-head pass as its log-probs. The first minibatch step sees π_θ = π_old (q = 0, next-state
    term 0); later ones regress a moved q onto the advantage plus the moved next-state value.
    With one update per batch (``num_minibatches=1``) π_old = π_θ: q_t = 0 in value (gradient
    ρ∇log π), m_θ = m_old, no extra forward runs, and L's gradient is −2ρ·A·∇log π — a
    REINFORCE step.

    Other keywords: see ``pg_algorithm`` (lr 1e-6, β = 0, k3, no entropy bonus, ``token_mean``),
    all but the prepare-side ``kl_in``, ``kl_target``, ``correction`` and ``correction_threshold``.
    """
    check_options("rover", options, without=REWARD_SIDE_OPTIONS)
    return pg_algorithm(
        advantages.group_advantage(scale=scale),
        rover_q_regression(rho=rho, next_q_scale=next_q_scale, clip=clip, response_level=response_level),
        num_epochs=num_epochs, num_minibatches=num_minibatches, **options,
    )

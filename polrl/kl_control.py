"""KL regularization toward the reference: a penalty in the REWARD, and adaptive coefficients.

Two places for β·KL(π ‖ π_ref), both usable by every noun:

* in the loss (``polrl.objectives.kl_penalty``, GRPO-style; ``adaptive_kl_penalty`` here with an
  adaptive β);
* in the reward (``kl_reward`` here, PPO-RLHF / REINFORCE++ style): each response token earns the
  token reward r_t = −β·kl_t, and the sequence reward R is paid at the last token. Credit then
  flows through the advantage: the KL part of a token's advantage is the (discounted) sum of the
  KL rewards from that token on,

      A_t ← A_t + Σ_{s ≥ t} d^{s−t} (−β kl_s),      d = γλ  (1 for REINFORCE-style returns)

  which is exact for every advantage that is linear in the token rewards: the REINFORCE return
  (A_t = R − β Σ_{s≥t} kl_s, REINFORCE++ eq. 8), group/leave-one-out/greedy baselines of R (the
  baseline applies to R only), and GAE (δ_t is linear in r_t, so GAE(R + r_kl) = GAE(R) +
  Σ_k (γλ)^k r_kl,t+k; ``return_bt`` gets the same term). Place it right after the advantage
  transform and BEFORE any whitening (REINFORCE++ normalizes the KL-shaped returns).

The KL is measured at rollout parameters: kl_t = est(log π_old(y_t), log π_ref(y_t)) with the
estimators of ``polrl.ops.KL_ESTIMATORS`` (REINFORCE++ and verl's default: k1 = log π_old − log π_ref),
so ``kl_reward`` needs ``ref_logp`` and ``old_logp``.

Adaptive coefficient (Ziegler et al. 2019, arXiv 1909.08593, §2.2): with the measured KL of the
batch KL (the mean over sequences of the summed token KL) and a target,

      e = clip(KL / KL_target − 1, −0.2, 0.2),      β ← β · (1 + K_β · e)

K_β = 0.1 in the paper; verl/TRL write K_β = n_steps / horizon. In ``kl_reward`` β lives in the
prepare state and is updated once per batch, after it has shaped that batch's rewards; in
``adaptive_kl_penalty`` it lives in the objective state and is updated after every minibatch
step (each gradient step measures its minibatch's KL).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import ops
from polrl.core import Batch, Transform, stateless

KL_ESTIMATORS = ops.KL_ESTIMATORS  # k1/k2/k3/abs and their straight-through "+" forms
KL_PLACEMENTS = ("loss", "reward")


def _estimator(name: str, by: str):
    if name not in KL_ESTIMATORS:
        raise ValueError(f"{by}: unknown estimator {name!r}; use one of {sorted(KL_ESTIMATORS)}")
    return KL_ESTIMATORS[name]


def adaptive_kl_coef(coef, kl, *, target: float, rate: float = 0.1):
    """One controller step (Ziegler et al. 2019): β·(1 + K_β·clip(KL/target − 1, −0.2, 0.2))."""
    error = jnp.clip(kl / target - 1.0, -0.2, 0.2)
    return coef * (1.0 + rate * error)


def sequence_kl(kl_bt, mask_bt):
    """The controller's KL: mean over sequences with a valid token of Σ_t kl_t."""
    per_seq = ops.masked_sum(kl_bt, mask_bt, axis=1)
    return ops.masked_mean(per_seq, jnp.any(mask_bt != 0, axis=1))


def _check_adaptive(coef, target, rate, by):
    if target is not None and (target <= 0 or coef <= 0 or rate <= 0):
        raise ValueError(f"{by}: an adaptive β needs coef > 0 (its start), target > 0 and rate > 0")


def kl_reward(
    *, coef: float, estimator: str = "k1", target: float | None = None, rate: float = 0.1, discount: float = 1.0
) -> Transform:
    """KL penalty in the reward, r_t = −β·kl_t, credited to ``adv_bt`` (prepare transform).

        A_t ← A_t + Σ_{s≥t} d^{s−t} (−β kl_s),   kl_t = est(log π_old, log π_ref)

    (and ``return_bt`` the same, when present: GAE values regress on the KL-shaped return).
    ``target=None`` keeps β = ``coef``; a target makes β adaptive (Ziegler et al. 2019), starting
    at ``coef``, with its value in the transform's state. ``discount`` is d = γλ of the
    advantage it is added to (1 for REINFORCE / group baselines, γλ for GAE). Must run after the
    advantage and before whitening. Logs ``kl_reward/kl`` (token mean), ``kl_reward/seq_kl``
    (the controller's KL) and ``kl_reward/coef`` (β used on this batch). Needs ``ref_logp`` and
    ``old_logp``.
    """
    kl_fn = _estimator(estimator, "kl_reward")
    _check_adaptive(coef, target, rate, "kl_reward")

    def init(example=None):
        del example
        return () if target is None else jnp.asarray(coef, jnp.float32)

    def apply(batch: Batch, state, **extra):
        del extra
        batch.require("adv_bt", "old_logp_bt", "ref_logp_bt", by="kl_reward")
        m = batch.mask_bt
        kl_bt = kl_fn(batch.old_logp_bt, batch.ref_logp_bt) * m
        beta = coef if target is None else state
        zeros_b = jnp.zeros((batch.batch_size,), kl_bt.dtype)
        to_go_bt = jax.vmap(ops.discounted_returns)(-beta * kl_bt, jnp.full_like(kl_bt, discount), zeros_b)
        batch = batch.replace(adv_bt=(batch.adv_bt + to_go_bt) * m)
        if batch.return_bt is not None:
            batch = batch.replace(return_bt=(batch.return_bt + to_go_bt) * m)
        seq_kl = sequence_kl(kl_bt, m)
        batch = batch.add_metrics(
            **{"kl_reward/kl": ops.masked_mean(kl_bt, m), "kl_reward/seq_kl": seq_kl, "kl_reward/coef": jnp.asarray(beta, jnp.float32)}
        )
        new_state = () if target is None else adaptive_kl_coef(state, seq_kl, target=target, rate=rate)
        return batch, new_state

    return Transform(init, apply, frozenset({"ref_logp", "old_logp"}))


def adaptive_kl_penalty(*, coef: float, target: float, estimator: str = "k3", rate: float = 0.1) -> Transform:
    """β·KL(π_θ ‖ π_ref) per token in the loss, term ``"kl"``, with β adapted toward a target.

    Same term as ``polrl.objectives.kl_penalty`` (kl_t = est(log π_θ, log π_ref), differentiable),
    but β is the objective state: it starts at ``coef`` and after each minibatch step becomes
    ``adaptive_kl_coef(β, KL, target, rate)`` with KL = the minibatch's sequence KL (no gradient).
    Logs ``kl`` (token mean), ``kl_coef`` (β used) and ``kl_seq``. Needs ``ref_logp``.
    """
    kl_fn = _estimator(estimator, "adaptive_kl_penalty")
    _check_adaptive(coef, target, rate, "adaptive_kl_penalty")

    def init(example=None):
        del example
        return jnp.asarray(coef, jnp.float32)

    def apply(batch: Batch, beta, **extra):
        del extra
        batch.require("logp_bt", "ref_logp_bt", by="adaptive_kl_penalty")
        kl_bt = kl_fn(batch.logp_bt, batch.ref_logp_bt)
        kl_sg = jax.lax.stop_gradient(kl_bt)
        seq_kl = sequence_kl(kl_sg * batch.mask_bt, batch.mask_bt)
        batch = batch.add_term("kl", beta * kl_bt).add_metrics(
            kl=ops.masked_mean(kl_sg, batch.mask_bt), kl_coef=beta, kl_seq=seq_kl
        )
        return batch, adaptive_kl_coef(beta, seq_kl, target=target, rate=rate)

    return Transform(init, apply, frozenset({"ref_logp"}))


def kl_in_reward(*, placement: str, coef: float, estimator: str, target: float | None, discount: float = 1.0) -> list[Transform]:
    """The nouns' prepare part for ``kl_in="reward"``: [kl_reward] when β ≠ 0, else []."""
    if placement not in KL_PLACEMENTS:
        raise ValueError(f"kl_in={placement!r}; use one of {KL_PLACEMENTS}")
    if placement != "reward" or not coef:
        return []
    return [kl_reward(coef=coef, estimator=estimator, target=target, discount=discount)]

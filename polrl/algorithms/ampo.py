"""AMPO: GRPO whose unsolved groups take solutions from a pool of teachers, trained with PPO's
clip on the policy's rows and LUFFY's policy shaping on the teachers' rows.

AMPO ("More Than One Teacher: Adaptive Multi-Guidance Policy Optimization for Diverse
Exploration", arXiv 2510.02227) builds on LUFFY ("Learning to Reason under Off-Policy Guidance",
arXiv 2504.14945). Data: ``polrl.collectors.with_multi_guidance`` — for a prompt whose n samples
are all wrong, up to k = 2 of them are replaced by teacher solutions ranked by the policy's
comprehension of them (``source_b == TEACHER``). Advantage over the mixed group, without std
normalisation (the authors' script sets ``norm_adv_by_std_in_grpo=False`` with the plain ``grpo``
estimator, so teacher rows enter the mean):

    A_i = r_i − mean_{j ∈ group} r_j

Loss per token, on the policy's rows PPO's clip with dual clip c, on the teachers' rows the policy
shaping f(π) = π / (π + γ) of LUFFY, without clip and without the teacher's probabilities
(γ = 0.1, the script's ``off_policy_reshape="p_div_p_0.1"``):

    policy rows:   L_t = max(−A ρ_t, −A clip(ρ_t, 1 − ε_low, 1 + ε_high)),  min(L_t, −c A) where A < 0
    teacher rows:  L_t = −A · f(π_θ,t),   f(π) = π / (π + γ)

∂f/∂log π = γ π / (π + γ)²: the shaping gives low-probability teacher tokens a larger weight than
the plain ratio π would (whose derivative is π), which keeps imitation from collapsing entropy.
Defaults from the authors' ``train_ampo.sh``: ε = 0.2 both sides, c = 10 (``clip_ratio_c``),
entropy bonus 0.001, no KL and no reference, lr 1e-6, the loss of the ``seq`` implementation
summed over tokens and divided by the constant response budget
(``loss_remove_token_mean=True``: polrl's ``seq_mean_token_sum_norm`` with ``max_len``; the
reference divides the micro-batch's token sum by T_max without averaging over sequences — a
constant factor).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from polrl import advantages, objectives, ops
from polrl.algorithms.policy_gradient import REWARD_SIDE_OPTIONS, check_options, pg_algorithm
from polrl.collectors.multi_guidance import WRONG_TEACHERS, with_multi_guidance
from polrl.core import TEACHER, Algorithm, Batch, Transform, stateless


def policy_shaping(p: jax.Array, gamma: float) -> jax.Array:
    """LUFFY's f(π) = π / (π + γ)."""
    return p / (p + gamma)


def shaped_policy_gradient(*, eps_low: float = 0.2, eps_high: float | None = None, dual_clip: float | None = 10.0,
                           gamma: float = 0.1) -> Transform:
    """The module's per-token loss, term ``"pg"``: PPO's clipped surrogate (``ops.clipped_surrogate``,
    ρ = π_θ / π_old, π_old from ``objectives.old_logp``) on rows whose ``source_b`` is not TEACHER,
    −A · π_θ / (π_θ + γ) on TEACHER rows (the gradient flows through π_θ). Without ``source_b``
    every row is the policy's. Logs ``clip_frac`` and ``ratio_mean`` over the policy's tokens and
    ``teacher_prob_mean`` / ``teacher_shaped_mean`` (π_θ and f(π_θ) over teacher tokens)."""
    if not gamma > 0.0:
        raise ValueError(f"ampo: gamma={gamma} must be > 0 (LUFFY's shaping π/(π + γ); the authors' 0.1)")

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "adv_bt", by="shaped_policy_gradient")
        logp, adv, m = batch.logp_bt, batch.adv_bt, batch.mask_bt
        ratio = jnp.exp(ops.log_ratio(logp, objectives.old_logp(batch)))
        on_bt, clipped_bt = ops.clipped_surrogate(ratio, adv, eps_low=eps_low, eps_high=eps_high, dual_clip=dual_clip)
        p = jnp.exp(logp)
        shaped = policy_shaping(p, gamma)
        teacher_b = jnp.zeros((batch.batch_size,), bool) if batch.source_b is None else batch.source_b == TEACHER
        loss_bt = jnp.where(teacher_b[:, None], -adv * shaped, on_bt)
        sg = jax.lax.stop_gradient
        on_m, off_m = m * (~teacher_b)[:, None], m * teacher_b[:, None]
        return batch.add_term("pg", loss_bt).add_metrics(
            clip_frac=ops.masked_mean(clipped_bt, on_m), ratio_mean=ops.masked_mean(sg(ratio), on_m),
            teacher_prob_mean=ops.masked_mean(sg(p), off_m), teacher_shaped_mean=ops.masked_mean(sg(shaped), off_m))

    return stateless(fn)


def ampo(
    *,
    teachers: Sequence[str],
    k: int = 2,
    wrong_teachers: str = "drop",
    gamma: float = 0.1,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    dual_clip: float | None = 10.0,
    scale: str = "none",
    entropy_coef: float = 0.001,
    aggregation: str = "seq_mean_token_sum_norm",
    max_len: int | None = None,
    **options,
) -> Algorithm:
    """AMPO (arXiv 2510.02227): the policy's groups, the unsolved ones with up to ``k`` rows from the
    pool ``teachers`` (names of ``config.models``; ``collectors.with_multi_guidance``, which also
    takes ``wrong_teachers``), trained with

        A_i = r_i − mean_group r                                   (``scale="none"``; "std": GRPO's)
        L   = agg[ PPO clip, dual clip c (policy rows);  −A π_θ/(π_θ + γ) (teacher rows) ] − c_H H

    (module docstring; ``shaped_policy_gradient``). Defaults are the authors' script's: k = 2,
    γ = 0.1, ε = 0.2, c = 10, c_H = 0.001, no KL, the token sum normalised by the constant response
    budget (``seq_mean_token_sum_norm``: pass ``max_len`` = rollout.max_new_tokens, or pick another
    aggregation); lr 1e-6.

    Other keywords: see ``pg_algorithm`` (lr 1e-6, one update per batch), all but the KL ones
    (``kl_coef``, ``kl_estimator``, ``kl_in``, ``kl_target``: AMPO runs without a reference) and
    ``correction`` / ``correction_threshold``.
    """
    check_options("ampo", options, without=REWARD_SIDE_OPTIONS + ("kl_coef", "kl_estimator"))
    if wrong_teachers not in WRONG_TEACHERS:
        raise ValueError(f"ampo: wrong_teachers={wrong_teachers!r}; use one of {WRONG_TEACHERS}")
    if aggregation == "seq_mean_token_sum_norm" and max_len is None:
        raise ValueError("ampo: aggregation='seq_mean_token_sum_norm' (the authors') needs max_len, the constant "
                         "normalizer: pass the response budget (rollout.max_new_tokens), or pick another aggregation")
    return pg_algorithm(
        [advantages.group_advantage(scale=scale)],
        shaped_policy_gradient(eps_low=eps_low, eps_high=eps_high, dual_clip=dual_clip, gamma=gamma),
        entropy_coef=entropy_coef, aggregation=aggregation, max_len=max_len,
        collector=with_multi_guidance(teachers, k, wrong_teachers), **options,
    )

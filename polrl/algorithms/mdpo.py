"""MDPO for language models: the unclipped surrogate plus a mirror-descent KL to π_old.

Tomar, Shani, Efroni, Ghavamzadeh 2020, "Mirror Descent Policy Optimization" (arXiv 2005.09814);
reference code ``manantomar/Mirror-Descent-Policy-Optimization`` ``mdpo_on/mdpo.py``. The KL
term and the t_k schedule are ``polrl.mirror_descent`` (shared with the control noun).
"""
from __future__ import annotations

import math

import jax.numpy as jnp

from polrl import advantages, mirror_descent, objectives
from polrl.algorithms.policy_gradient import REWARD_SIDE_OPTIONS, check_options, pg_algorithm
from polrl.core import Algorithm

LLM_KL_ESTIMATORS = ("k1", "k2", "k3")


def mdpo_kl_weight(*, num_updates: int | None, step_size: float):
    """The KL weight 1/t_k as a function of the step.

    ``num_updates`` = K: MDPO's schedule t_k = 1 − k/K (``mirror_descent.mdpo_step_size_inverse``),
    the weight growing from 1 at k = 0 to K at k = K − 1 and held there after (steps past the
    horizon keep the last weight instead of dividing by zero). ``num_updates=None``: the constant
    1/``step_size``; ``step_size=math.inf`` gives weight 0 (no proximal term).
    """
    if num_updates is None:
        if not step_size > 0:
            raise ValueError(f"mdpo: step_size={step_size} must be > 0 (math.inf for no KL)")
        return 0.0 if math.isinf(step_size) else 1.0 / step_size
    if step_size != 1.0:
        raise ValueError("mdpo: give either num_updates (MDPO's t_k = 1 − k/K schedule) or a constant step_size, not both")
    inverse = mirror_descent.mdpo_step_size_inverse(num_updates)
    return lambda step: inverse(jnp.minimum(jnp.asarray(step, jnp.int32), num_updates - 1))


def mdpo(
    *,
    num_updates: int | None = None,
    step_size: float = 1.0,
    kl_estimator: str = "k3",
    scale: str = "std",
    ref_kl_coef: float = 0.0,
    num_epochs: int = 5,
    num_minibatches: int = 1,
    **options,
) -> Algorithm:
    """On-policy MDPO (arXiv 2005.09814), LLM form: m gradient steps per batch on

        L = agg_t[ −ρ_t · A_t  +  (1/t_k) · KL(π_θ ‖ π_old)_t ],    ρ_t = π_θ(y_t)/π_old(y_t)

    with no clipping. A is the GRPO advantage (std-normalized group baseline; MDPO standardizes
    its GAE advantages), k = ``PolicyState.step`` (the batch index), and the KL weight 1/t_k from
    ``mdpo_kl_weight``: MDPO's t_k = 1 − k/K when ``num_updates`` = K is given (set it to the
    phase's ``total_steps``), else the constant 1/``step_size`` (``math.inf``: no KL, the plain
    unclipped surrogate). m = ``num_epochs`` full-batch steps (the code's default ``sgd_steps``
    is 5; the README example uses 10); ``num_minibatches`` > 1 splits them. The KL is the
    sampled estimator ``kl_estimator`` on the taken tokens (``mirror_descent.mirror_descent_kl``,
    default k3 with π_old as the reference), not the exact KL over the vocabulary: that needs
    π_old's full distribution, which the trainer does not keep. ``ref_kl_coef`` adds a k3 KL to
    the reference model (off by default, as MDPO). ``token_mean``.
    INFERRED: the group advantage in place of MDPO's GAE (no critic), and the sampled KL.
    Checked against ``mdpo_on/mdpo.py`` (loss ``mean(ratio·A) − meankl/t_k``,
    ``t_k = 1 − (k−1)/K``, ``sgd_steps`` Adam steps per batch).

    Other keywords: see ``pg_algorithm`` (lr 1e-6, no entropy bonus, ``token_mean``), all but
    ``kl_coef`` (here ``ref_kl_coef``) and the prepare-side ``kl_in``, ``kl_target``,
    ``correction`` and ``correction_threshold``.
    """
    check_options("mdpo", options, without=REWARD_SIDE_OPTIONS + ("kl_coef",))
    if kl_estimator not in LLM_KL_ESTIMATORS:
        raise ValueError(
            f"mdpo: kl_estimator={kl_estimator!r}; use one of {LLM_KL_ESTIMATORS} (the exact KL needs "
            "π_old's full distribution at every position, which the LLM trainer does not keep)"
        )
    weight = mdpo_kl_weight(num_updates=num_updates, step_size=step_size)
    if weight != 0.0 and num_epochs * num_minibatches == 1:
        raise ValueError(
            "mdpo needs several updates per batch (num_epochs · num_minibatches > 1): with one, "
            "π_θ = π_old and the KL to π_old has no gradient"
        )
    surrogate = objectives.clipped_policy_gradient(eps_low=math.inf, eps_high=math.inf)  # no clip
    return pg_algorithm(
        advantages.group_advantage(scale=scale),
        surrogate, mirror_descent.mirror_descent_kl(weight, estimator=kl_estimator),
        kl_coef=ref_kl_coef, kl_estimator="k3", num_epochs=num_epochs, num_minibatches=num_minibatches,
        **options,
    )

"""MDPO for language models: the unclipped surrogate plus a mirror-descent KL to π_old.

Tomar, Shani, Efroni, Ghavamzadeh 2020, "Mirror Descent Policy Optimization" (arXiv 2005.09814);
reference code ``manantomar/Mirror-Descent-Policy-Optimization`` ``mdpo_on/mdpo.py``. The KL
term and MDPO's t_k schedule are ``polrl.mirror_descent`` (shared with the control noun); the
LLM noun's default schedule floors t_k (``mdpo_kl_weight``, ``mdpo``).
"""
from __future__ import annotations

import math

import jax.numpy as jnp

from polrl import advantages, mirror_descent, objectives
from polrl.algorithms.policy_gradient import REWARD_SIDE_OPTIONS, check_options, pg_algorithm
from polrl.core import Algorithm

LLM_KL_ESTIMATORS = ("k1", "k2", "k3")
MDPO_SCHEDULES = ("constant", "floored", "linear")


def mdpo_kl_weight(*, schedule: str | None = None, num_updates: int | None = None, step_size: float = 1.0,
                   min_step_size: float = 0.2):
    """The KL weight 1/t_k: a number, or a function of the step k (``PolicyState.step``).

    ``schedule`` (None: ``"floored"`` when ``num_updates`` = K is given, else ``"constant"``):

    * ``"constant"`` — 1/``step_size`` at every step (``step_size=math.inf``: 0, no proximal term);
    * ``"floored"`` — t_k = max(1 − k/K, t_min), t_min = ``min_step_size``: MDPO's annealing down
      to a floor, so the weight 1/t_k = min(K/(K − k), 1/t_min) grows from 1 to 1/t_min, reaches it
      at k = K(1 − t_min) and stays there (past the horizon too);
    * ``"linear"`` — MDPO's own t_k = 1 − k/K (``mirror_descent.mdpo_step_size_inverse``), the
      weight growing to K at k = K − 1 and held there after (no division by zero past the horizon).
    """
    if schedule is None:
        schedule = "constant" if num_updates is None else "floored"
    if schedule not in MDPO_SCHEDULES:
        raise ValueError(f"mdpo: schedule={schedule!r}; use one of {MDPO_SCHEDULES}")
    if schedule == "constant":
        if num_updates is not None:
            raise ValueError("mdpo: schedule='constant' takes step_size, not num_updates; give either num_updates "
                             "(an annealed t_k) or a constant step_size, not both")
        if not step_size > 0:
            raise ValueError(f"mdpo: step_size={step_size} must be > 0 (math.inf for no KL)")
        return 0.0 if math.isinf(step_size) else 1.0 / step_size
    if num_updates is None:
        raise ValueError(f"mdpo: schedule={schedule!r} anneals t_k = 1 − k/K and needs num_updates = K")
    if step_size != 1.0:
        raise ValueError("mdpo: give either num_updates (an annealed t_k) or a constant step_size, not both")
    if schedule == "linear":
        inverse = mirror_descent.mdpo_step_size_inverse(num_updates)
        return lambda step: inverse(jnp.minimum(jnp.asarray(step, jnp.int32), num_updates - 1))
    if num_updates < 1:
        raise ValueError(f"mdpo: num_updates={num_updates} must be >= 1")
    if not 0.0 < min_step_size <= 1.0:
        raise ValueError(f"mdpo: min_step_size={min_step_size} must be in (0, 1]")

    def floored(step):
        t_k = 1.0 - jnp.asarray(step, jnp.float32) / num_updates
        return 1.0 / jnp.maximum(t_k, jnp.float32(min_step_size))

    return floored


def mdpo(
    *,
    num_updates: int | None = None,
    schedule: str | None = None,
    min_step_size: float = 0.2,
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
    ``mdpo_kl_weight``. m = ``num_epochs`` full-batch steps (the code's default ``sgd_steps`` is
    5; the README example uses 10); ``num_minibatches`` > 1 splits them. The KL is the sampled
    estimator ``kl_estimator`` on the taken tokens (``mirror_descent.mirror_descent_kl``, default
    k3 with π_old as the reference), not the exact KL over the vocabulary: that needs π_old's full
    distribution, which the trainer does not keep. ``ref_kl_coef`` adds a k3 KL to the reference
    model (off by default, as MDPO). ``token_mean``.

    The step-size schedule (``schedule``; see ``mdpo_kl_weight``). With ``num_updates`` = K (set it
    to the phase's ``total_steps``) the default is ``"floored"``: t_k = max(1 − k/K, t_min) with
    t_min = ``min_step_size`` = 0.2, so the weight 1/t_k rises from 1 as in MDPO but stops at
    1/t_min = 5. MDPO's own t_k = 1 − k/K (``schedule="linear"``; the control noun keeps it) drives
    the weight to K at the end of training: K = 3000 for a 3000-step LLM run, where the sampled
    KL estimate — whose gradient noise the weight multiplies — swamps the surrogate. Why a floor:

    * the mirror-descent step this loss approximates, max_π E_π[A] − (1/t_k) KL(π ‖ π_k), has the
      solution π ∝ π_k · exp(t_k · A) per state, so t_k sets how far one batch moves each token's
      log-probability (|log ρ| ≤ 2 t_k max|A|); annealing t_k → 0 freezes the last updates, and a
      floor keeps every update a trust region of fixed size (t_min ≈ PPO's ε = 0.2 on log ρ for
      standardized advantages of size ≈ 1);
    * mirror descent's convergence does not need t_k → 0 at a finite horizon: policy mirror
      descent with exact advantages converges at a sublinear O(1/k) rate for any constant step
      size (with a constant that shrinks as t grows), and with noisy gradients the standard
      regret bound D/t + t·G²·K/2 is minimized by a constant t ∝ 1/√K over a known horizon (or
      t_k ∝ 1/√k without one). A floored schedule is a constant step size from k = K(1 − t_min)
      on, so both apply to its tail; MDPO's linear schedule reaches 0 at the horizon, which
      neither asks for.

    ``schedule="constant"`` (the default without ``num_updates``) is the fixed weight
    1/``step_size`` (``math.inf``: no KL, the plain unclipped surrogate).
    INFERRED: the group advantage in place of MDPO's GAE (no critic), the sampled KL, and the
    floor t_min = 0.2 (the trust-region argument above; MDPO anneals to 0).
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
    weight = mdpo_kl_weight(schedule=schedule, num_updates=num_updates, step_size=step_size,
                            min_step_size=min_step_size)
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

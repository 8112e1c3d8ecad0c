"""Mirror-descent proximal term: (1/t_k) · KL(π_θ ‖ π_old), MDPO's regulariser.

MDPO (Tomar, Shani, Efroni, Ghavamzadeh 2020, "Mirror Descent Policy Optimization",
arXiv 2005.09814; code manantomar/Mirror-Descent-Policy-Optimization ``mdpo_on/mdpo.py``) solves
each policy-improvement step approximately by m gradient steps on

    L(θ) = −E_{π_k}[ (π_θ/π_k) · Â ]  +  (1/t_k) · E_s KL(π_θ(·|s) ‖ π_k(·|s)),

with no clipping, and a step size t_k = 1 − k/K that shrinks over the K updates (so the KL weight
1/t_k grows from 1 to K). This module holds the KL term as a transform, shared by the control
noun (``polrl.control.algorithms.mdpo``) and the LLM side; the surrogate is
``polrl.objectives.clipped_policy_gradient`` with an infinite clip range (ε = ∞ is no clip).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from polrl import ops
from polrl.core import Batch, Transform, stateless
from polrl.objectives import old_logp

_ESTIMATORS = {"k1": ops.kl_k1, "k2": ops.kl_k2, "k3": ops.kl_k3}


def mdpo_step_size_inverse(num_updates: int) -> Callable:
    """MDPO's KL weight 1/t_k with t_k = 1 − k/K, for update k = 0 … K−1 (K = ``num_updates``).

    The code's t_k = 1 − (k−1)/K with k counted from 1; here k counts from 0, so the first update
    has weight 1 and the last K. ``k`` may be traced (an int32 step).
    """
    if num_updates < 1:
        raise ValueError(f"num_updates must be >= 1, got {num_updates}")

    def coef(step):
        return 1.0 / (1.0 - jnp.asarray(step, jnp.float32) / num_updates)

    return coef


def mirror_descent_kl(coef_schedule, *, estimator: str = "exact") -> Transform:
    """Per-token c_k · KL(π_θ ‖ π_old), term ``"mirror_kl"``; c_k = ``coef_schedule(step)``.

    ``coef_schedule``: a number, or a function of the ``step`` extra (e.g.
    ``mdpo_step_size_inverse(K)``, MDPO's 1/t_k); the transform then needs ``step=`` at apply.
    ``estimator``:

    * ``"exact"`` — the KL of the full distributions at each token, read from the batch's
      ``kl_to_old_bt`` (differentiable; declared need ``"kl_to_old"``; a
      ``polrl.control.ControlBatch`` field that the control scorer fills; an LLM scorer that has
      both vocabularies' logits can fill it the same way);
    * ``"k1"`` / ``"k2"`` / ``"k3"`` — the sampled estimators of ``polrl.ops`` on the taken tokens,
      ``kl_k*(logp_bt, old_logp)`` with π_old's log-probs as the reference (π_old is
      ``old_logp_bt``, or ``stop_gradient(logp_bt)`` when the parameters have not moved).

    Logs ``kl_old`` (token-mean KL, before the coefficient) and ``mirror_kl_coef`` (c_k). With c_k = 0 (t → ∞) the
    term vanishes and MDPO's loss is the unclipped surrogate.
    """
    if estimator != "exact" and estimator not in _ESTIMATORS:
        raise ValueError(f"mirror_descent_kl: estimator={estimator!r}; use 'exact' or one of {sorted(_ESTIMATORS)}")
    scheduled = callable(coef_schedule)

    def fn(batch: Batch, *, step=None) -> Batch:
        if estimator == "exact":
            kl_bt = getattr(batch, "kl_to_old_bt", None)
            if kl_bt is None:
                raise ValueError(
                    "mirror_descent_kl(estimator='exact') needs batch.kl_to_old_bt, the exact "
                    "KL(π_θ‖π_old) per token (a ControlBatch field filled by the control scorer); "
                    "use estimator='k3' for the sampled estimate from logp_bt / old_logp_bt"
                )
        else:
            batch.require("logp_bt", by="mirror_descent_kl")
            kl_bt = _ESTIMATORS[estimator](batch.logp_bt, old_logp(batch))
        if scheduled:
            if step is None:
                raise ValueError("mirror_descent_kl with a coefficient schedule needs the `step` extra")
            coef = coef_schedule(step)
        else:
            coef = jnp.asarray(coef_schedule, jnp.float32)
        batch = batch.add_metrics(
            kl_old=ops.masked_mean(jax.lax.stop_gradient(kl_bt), batch.mask_bt), mirror_kl_coef=coef
        )
        return batch.add_term("mirror_kl", coef * kl_bt)

    return stateless(fn, needs=("kl_to_old",) if estimator == "exact" else ())

"""Prepare-transform for environment rollouts: GAE over per-step reward streams."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from polrl import ops
from polrl.core import Transform, stateless


def stepwise_gae(*, lambda_=0.95) -> Transform:
    """GAE of per-step rewards with per-step discounts, one stream per row (``polrl.ops.gae``).

        δ_t = r_t + γ_t V_{t+1} − V_t,   A_t = δ_t + γ_t λ A_{t+1},   G_t = A_t + V_t

    (Schulman et al. 2016, arXiv 1506.02438) with ``reward_bt`` = r_t, ``discount_bt`` = γ_t
    (0 where an episode ends), ``old_value_bt`` = V_t and V_T = 0 after each row's last step: the
    rollout bootstraps its cuts in the reward (``polrl.control.rollout.bootstrapped_streams``).
    ``ops.gae`` is vmapped over the rows; sets ``adv_bt`` and ``return_bt`` (the value targets).
    Needs a ``ControlBatch`` [N, T]; ``lambda_`` may be a traced scalar (hyper-parameter sweeps).
    """

    def fn(batch):
        batch.require("reward_bt", "discount_bt", "old_value_bt", by="stepwise_gae")
        values = jnp.concatenate([batch.old_value_bt, jnp.zeros_like(batch.old_value_bt[:, :1])], axis=1)
        per_row = jax.vmap(functools.partial(ops.gae, stop_target_gradients=True), in_axes=(0, 0, 0, None))
        adv_bt = per_row(batch.reward_bt, batch.discount_bt, values, lambda_)
        return batch.replace(adv_bt=adv_bt, return_bt=adv_bt + batch.old_value_bt)

    return stateless(fn, needs=("values",))

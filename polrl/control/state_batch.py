"""A ``ControlBatch`` of independent states for the shared objectives (offline / NPG updates)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl.control.batch import ControlBatch

Array = jax.Array


def transition_batch(action: Array, old_logp: Array, adv: Array) -> ControlBatch:
    """A [M, 1] ``ControlBatch`` of M states: actions, π_old log-probs and advantages.

    Rows are states (t of width 1, ``mask_bt`` ones), as ``batch.to_transitions`` lays out a
    rollout for the objective; ``behavior_logp_bt`` = ``old_logp_bt`` = ``old_logp``. The
    scoring forward fills ``logp_bt`` (and ``entropy_bt``) before the objective runs.
    """
    m = old_logp.shape[0]
    return ControlBatch(
        prompt_bp=jnp.zeros((m, 0), jnp.int32), prompt_valid_bp=jnp.zeros((m, 0), bool),
        response_bt=action[:, None], mask_bt=jnp.ones((m, 1), jnp.float32),
        behavior_logp_bt=old_logp[:, None], old_logp_bt=old_logp[:, None], adv_bt=adv[:, None],
    )

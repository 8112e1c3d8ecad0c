"""``ControlBatch``: the shared ``Batch`` with the per-step fields of environment rollouts.

Control reuses the LLM side's transforms, so its data travels in a ``polrl.core.Batch``. The
mapping of the LLM-named fields (``_bt`` = per token) onto transitions:

* ``prepare`` sees rows = environments and t = time: every ``_bt`` field is [N, T]; ``mask_bt`` is
  all ones (every step is a real transition; episode ends are carried by ``discount_bt``);
* the objective sees flattened transitions, rows = N·T transitions and t of width 1 ([N·T, 1]),
  so ``aggregate("token_mean")`` is the plain mean over the minibatch;
* ``prompt_bp`` / ``prompt_valid_bp`` have width 0 (there is no prompt);
* ``response_bt`` holds the actions ([rows, t] for discrete actions, [rows, t, D] continuous);
* ``behavior_logp_bt`` / ``old_logp_bt`` are the acting policy's log-probs, ``old_value_bt`` the
  values at rollout time.

The subclass adds what a rollout has and an LLM batch does not: ``reward_bt`` (per-step reward,
cuts bootstrapped, see ``polrl.control.rollout.bootstrapped_streams``), ``discount_bt``
(γ_t = γ·(1 − done_t)) and ``kl_to_old_bt`` (the exact KL(π_θ(·|s_t) ‖ π_old(·|s_t)) of the full
distributions, differentiable, filled by the scoring forward; read by
``polrl.mirror_descent.mirror_descent_kl``). Every ``Batch`` transform accepts a ``ControlBatch``.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from polrl.core import Batch
from polrl.control.rollout import Trajectory, bootstrapped_streams

Array = jax.Array


@flax.struct.dataclass
class ControlBatch(Batch):
    """A ``Batch`` of environment transitions (see the module docstring for the field mapping)."""

    reward_bt: Array | None = None
    discount_bt: Array | None = None
    kl_to_old_bt: Array | None = None


def from_trajectory(traj: Trajectory, last_value: Array, gamma) -> ControlBatch:
    """The [N, T] batch of a time-major ``Trajectory`` [T, N] (rows = environments)."""
    reward_bt, discount_bt = bootstrapped_streams(traj, last_value, gamma)
    n, t = reward_bt.shape
    action = jnp.swapaxes(traj.action, 0, 1)
    return ControlBatch(
        prompt_bp=jnp.zeros((n, 0), jnp.int32),
        prompt_valid_bp=jnp.zeros((n, 0), bool),
        response_bt=action,
        mask_bt=jnp.ones((n, t), jnp.float32),
        behavior_logp_bt=traj.logp.T,
        old_logp_bt=traj.logp.T,
        old_value_bt=traj.value.T,
        reward_bt=reward_bt,
        discount_bt=discount_bt,
    )


def to_transitions(batch: ControlBatch) -> ControlBatch:
    """The [N, T] batch as N·T transitions [N·T, 1] (the objective's layout).

    Per-step fields are flattened row-major (row n·T + t is environment n at step t), the prompt
    fields stay of width 0, ``reward_bt`` / ``discount_bt`` (what prepare turned into
    ``adv_bt`` / ``return_bt``) are dropped, and ``terms`` / ``losses`` / ``metrics`` are emptied
    (read the prepare metrics before calling this).
    """
    n, t = batch.mask_bt.shape
    per_step = {
        f: None if f in ("reward_bt", "discount_bt") else flatten(getattr(batch, f), n, t)
        for f in batch.__dataclass_fields__
        if f.endswith("_bt") and getattr(batch, f) is not None
    }
    return batch.replace(
        prompt_bp=jnp.zeros((n * t, 0), batch.prompt_bp.dtype),
        prompt_valid_bp=jnp.zeros((n * t, 0), batch.prompt_valid_bp.dtype),
        terms={}, losses={}, metrics={}, **per_step,
    )


def flatten(tree, num_rows: int, num_steps: int):
    """[N, T, ...] → [N·T, 1, ...] for every array leaf of ``tree``."""

    def leaf(x):
        return x.reshape((num_rows * num_steps, 1) + x.shape[2:])

    return jax.tree.map(leaf, tree)

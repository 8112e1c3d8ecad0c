"""Reduction of a per-token loss [B, T] to the scalar that is differentiated.

The mode decides how tokens and sequences are weighted, which matters for length bias
(Liu et al. 2025, Dr.GRPO; Yu et al. 2025, DAPO). With L the loss, m the mask, n_b = Σ_t m_bt,
and V = {b : n_b > 0} the rows with a valid token (fully masked rows never count):

    token_mean                Σ_bt L·m / Σ_bt m                 (DAPO; 0 when Σ m = 0)
    seq_mean_token_mean       1/|V| Σ_{b∈V} Σ_t L·m / n_b       (GRPO as in the paper)
    seq_mean_token_sum        1/|V| Σ_{b∈V} Σ_t L·m
    seq_mean_token_sum_norm   1/|V| Σ_{b∈V} Σ_t L·m / max_len   (Dr.GRPO's constant normalizer)

Names follow verl's ``loss_agg_mode``.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from polrl.ops.stats import masked_mean, masked_sum

Array = jax.Array

AGGREGATION_MODES = (
    "token_mean",
    "seq_mean_token_mean",
    "seq_mean_token_sum",
    "seq_mean_token_sum_norm",
)


def aggregate(loss_bt: Array, mask_bt: Array, mode: str, *, max_len: int | None = None) -> Array:
    """Aggregates a per-token loss to a scalar, see the module docstring for the modes.

    Args:
      loss_bt: per-token loss [B, T]; values under the mask's zeros never reach the result.
      mask_bt: 1 (or a weight) on loss-bearing tokens [B, T], float or bool.
      mode: one of ``AGGREGATION_MODES``.
      max_len: the static constant normalizer of ``seq_mean_token_sum_norm`` (e.g. the
        generation budget); required by that mode, ignored by the others.

    Returns:
      A scalar; 0 when no token is valid.
    """
    if mode not in AGGREGATION_MODES:
        raise ValueError(f"Unknown aggregation mode {mode!r}; expected one of {AGGREGATION_MODES}.")
    if mode == "seq_mean_token_sum_norm" and max_len is None:
        raise ValueError("Aggregation mode 'seq_mean_token_sum_norm' requires max_len.")
    chex.assert_rank([loss_bt, mask_bt], 2)
    chex.assert_equal_shape([loss_bt, mask_bt])

    if mode == "token_mean":
        return masked_mean(loss_bt, mask_bt)
    valid_b = jnp.any(jnp.asarray(mask_bt) != 0, axis=1)
    if mode == "seq_mean_token_mean":
        per_seq_b = masked_mean(loss_bt, mask_bt, axis=1)
    else:
        per_seq_b = masked_sum(loss_bt, mask_bt, axis=1)
    loss = masked_mean(per_seq_b, valid_b)
    if mode == "seq_mean_token_sum_norm":
        loss = loss / max_len
    return loss

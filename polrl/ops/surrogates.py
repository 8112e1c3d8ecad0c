"""Importance ratios and the PPO clipped surrogate, per token."""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

Array = jax.Array


def log_ratio(logp: Array, old_logp: Array, clamp: float | None = 20.0) -> Array:
    """log ρ = log π − log π_old, clipped to [−clamp, clamp] (``None``: no clip).

    The clip keeps ρ = exp(log ρ) finite; it has no effect in any sane update. Pass
    ``old_logp = stop_gradient(logp)`` for an on-policy ratio that is 1 with the REINFORCE
    gradient.
    """
    chex.assert_equal_shape([logp, old_logp])
    out = logp - old_logp
    return out if clamp is None else jnp.clip(out, -clamp, clamp)


def clipped_surrogate(
    ratio_bt: Array,
    adv_bt: Array,
    *,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    dual_clip: float | None = None,
):
    """PPO's clipped surrogate loss per token (to minimize), with optional DAPO/dual clip.

        L¹ = −A·ρ,   L² = −A·clip(ρ, 1 − ε_low, 1 + ε_high),   L = max(L¹, L²)

    (Schulman et al. 2017). ``eps_high`` ≠ ``eps_low`` is DAPO's clip-higher (Yu et al. 2025);
    ``eps_high=None`` means ε_high = ε_low. With ``dual_clip`` c > 1 (Ye et al. 2020), the loss of
    negative-advantage tokens is also bounded, L = min(L, −A·c) where A < 0; that bound is active
    exactly where A < 0 and ρ > c, which is how a caller measures its clip fraction.

    At ρ = 1 the gradient wrt log π (ρ = exp(log π − sg(log π))) is −A, REINFORCE's; tied branches
    take the unclipped one.

    Args:
      ratio_bt: importance ratios ρ = π/π_old [B, T].
      adv_bt: advantages A [B, T].
      eps_low, eps_high: clip range [1 − ε_low, 1 + ε_high].
      dual_clip: c > 1 or None.

    Returns:
      (loss_bt, clipped_bt): the per-token loss, and a float indicator of the tokens where the
      clip is active (L² > L¹) for the clip-fraction metric.
    """
    chex.assert_rank([ratio_bt, adv_bt], 2)
    chex.assert_equal_shape([ratio_bt, adv_bt])
    if eps_high is None:
        eps_high = eps_low
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}.")

    unclipped = -adv_bt * ratio_bt
    clipped = -adv_bt * jnp.clip(ratio_bt, 1.0 - eps_low, 1.0 + eps_high)
    is_clipped = clipped > unclipped
    loss_bt = jnp.where(is_clipped, clipped, unclipped)
    if dual_clip is not None:
        loss_bt = jnp.where(adv_bt < 0, jnp.minimum(loss_bt, -adv_bt * dual_clip), loss_bt)
    return loss_bt, is_clipped.astype(ratio_bt.dtype)

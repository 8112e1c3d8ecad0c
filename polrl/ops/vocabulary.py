"""Statistics of a categorical policy over its whole vocabulary, at each response position."""
from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp

Array = jax.Array

MIN_P_MODES = ("relative", "absolute")


def min_p_log_prob(logits_btv: Array, tokens_bt: Array, *, threshold: float, mode: str = "relative"):
    """Log-prob of each taken token under the min-p filtered, renormalized distribution.

        p = softmax(z),   kept_v = p_v ≥ κ · max_u p_u   ("relative": min-p, Nguyen et al. 2024)
                          kept_v = p_v ≥ κ               ("absolute")
        log p̃(x) = z_x − log Σ_{v kept} exp z_v   if x is kept, −inf otherwise

    Lp-Reg's proxy distribution (arXiv 2510.03222): the policy with its noise
    tokens removed. The most probable token is always kept (κ ≤ 1 in the relative mode).

    Args:
      logits_btv: [B, T, V] logits z (already temperature-scaled if they should be).
      tokens_bt: int token ids [B, T].
      threshold: κ, in (0, 1].
      mode: "relative" or "absolute".

    Returns:
      (logp_bt, kept_bt): float32 [B, T] (−inf where the token was filtered out), bool [B, T].
    """
    chex.assert_rank([logits_btv, tokens_bt], [3, 2])
    chex.assert_type(tokens_bt, int)
    chex.assert_equal_shape_prefix([logits_btv, tokens_bt], 2)
    if mode not in MIN_P_MODES:
        raise ValueError(f"min_p_log_prob: mode={mode!r} is not one of {MIN_P_MODES}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"min_p_log_prob: threshold must be in (0, 1], got {threshold}")
    z = logits_btv.astype(jnp.float32)
    logp_v = jax.nn.log_softmax(z, axis=-1)
    floor = math.log(threshold) + (jnp.max(logp_v, axis=-1, keepdims=True) if mode == "relative" else 0.0)
    kept_v = logp_v >= floor
    lse_kept = jax.nn.logsumexp(jnp.where(kept_v, z, -jnp.inf), axis=-1)
    z_at = jnp.take_along_axis(z, tokens_bt[..., None], axis=-1)[..., 0]
    kept_bt = jnp.take_along_axis(kept_v, tokens_bt[..., None], axis=-1)[..., 0]
    return jnp.where(kept_bt, z_at - lse_kept, -jnp.inf), kept_bt

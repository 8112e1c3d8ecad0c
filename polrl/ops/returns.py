"""Discounted returns and generalized advantage estimation.

``gae`` and ``discounted_returns`` act on ONE stream of T steps (vmap them over a batch), with
the rlax conventions: ``discount_t`` is γ_t = γ·(1 − done_t), 0 where the episode ends at step t,
and the value (or bootstrap) after the last step is given. ``gae_bt`` is the batched form for
right-padded LLM responses.
"""
from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp

Array = jax.Array


def _reverse_discounted_cumsum(x_t: Array, factor_t: Array, init: Array) -> Array:
    """y_t = x_t + f_t · y_{t+1}, with y_T = init, by a reverse ``lax.scan``."""

    def step(y_next, inputs):
        x, f = inputs
        y = x + f * y_next
        return y, y

    _, y_t = jax.lax.scan(step, init, (x_t, factor_t), reverse=True)
    return y_t


def discounted_returns(r_t: Array, discount_t: Array, bootstrap: Array) -> Array:
    """Discounted returns of one stream, bootstrapped after its last step.

        G_t = r_t + γ_t G_{t+1},   G_T = bootstrap

    (Sutton & Barto 2018, eq. 3.9). With ``bootstrap = 0`` and γ_t = 1 these are the REINFORCE
    returns-to-go (Williams 1992).

    Args:
      r_t: rewards [T].
      discount_t: discounts γ_t [T] (0 at terminal steps).
      bootstrap: scalar value of the state after step T−1.

    Returns:
      G_t [T].
    """
    chex.assert_rank([r_t, discount_t, bootstrap], [1, 1, 0])
    chex.assert_type([r_t, discount_t, bootstrap], float)
    chex.assert_equal_shape([r_t, discount_t])
    return _reverse_discounted_cumsum(r_t, discount_t, jnp.asarray(bootstrap, r_t.dtype))


def gae(
    r_t: Array,
    discount_t: Array,
    values: Array,
    lambda_,
    stop_target_gradients: bool = True,
) -> Array:
    """Truncated generalized advantage estimation of one stream (Schulman et al. 2016).

        δ_t = r_t + γ_t V_{t+1} − V_t
        A_t = δ_t + γ_t λ_t A_{t+1},   A_T = 0

    so A_t = Σ_k (Π_{i<k} γ_{t+i} λ_{t+i}) δ_{t+k}. λ = 1 gives G_t − V_t (bootstrapped with
    V_T), λ = 0 gives the one-step TD error. Same meaning as rlax's
    ``truncated_generalized_advantage_estimation``.

    Args:
      r_t: rewards [T].
      discount_t: discounts γ_t [T] (0 at terminal steps).
      values: V_0 … V_T [T+1], the last entry is the bootstrap value.
      lambda_: λ, a scalar or [T].
      stop_target_gradients: stop gradients through the advantages (values are the targets).

    Returns:
      A_t [T].
    """
    chex.assert_rank([r_t, discount_t, values], 1)
    chex.assert_type([r_t, discount_t, values], float)
    chex.assert_equal_shape([r_t, discount_t])
    chex.assert_axis_dimension(values, 0, r_t.shape[0] + 1)
    lambda_ = jnp.ones_like(discount_t) * lambda_
    chex.assert_equal_shape([discount_t, lambda_])

    delta_t = r_t + discount_t * values[1:] - values[:-1]
    adv_t = _reverse_discounted_cumsum(
        delta_t, discount_t * lambda_, jnp.zeros((), delta_t.dtype)
    )
    return jax.lax.stop_gradient(adv_t) if stop_target_gradients else adv_t


def gae_bt(reward_bt: Array, value_bt: Array, mask_bt: Array, *, gamma, lambda_) -> Array:
    """GAE over a batch of right-padded token streams (LLM responses); ``gae`` per row.

    Each row's episode runs over its valid tokens and ends after the last one: the value after
    the last valid token is 0 (the response finished with EOS or at the length limit, there is no
    later state to bootstrap from). In ``gae`` terms, per row

        r_t = reward_t·m_t,   V_t = value_t·m_t,   γ_t = γ·m_{t+1}   (m_T = 0, so V_T = 0),

    and advantages at masked positions are 0. Rows must be right-padded: an interior masked
    token cuts the episode there. Gradients are stopped (advantages are targets).

    The value targets are returns G_t = A_t + V_t (on valid tokens).

    Args:
      reward_bt: per-token rewards [B, T] (e.g. the sequence reward on the last valid token).
      value_bt: value estimates V_t [B, T] of the policy at rollout time.
      mask_bt: 1 on the response tokens, 0 on the padding [B, T].
      gamma: discount γ (scalar).
      lambda_: GAE λ (scalar).

    Returns:
      A_t [B, T], 0 on masked tokens.
    """
    chex.assert_rank([reward_bt, value_bt, mask_bt], 2)
    chex.assert_equal_shape([reward_bt, value_bt, mask_bt])
    valid = jnp.asarray(mask_bt) != 0
    next_valid = jnp.concatenate([valid[:, 1:], jnp.zeros_like(valid[:, :1])], axis=1)
    r_bt = jnp.where(valid, reward_bt, 0)
    values = jnp.where(valid, value_bt, 0)
    values = jnp.concatenate([values, jnp.zeros_like(values[:, :1])], axis=1)
    discount_bt = jnp.where(next_valid, gamma, 0).astype(r_bt.dtype)
    per_row = jax.vmap(
        functools.partial(gae, stop_target_gradients=True), in_axes=(0, 0, 0, None)
    )
    return jnp.where(valid, per_row(r_bt, discount_bt, values, lambda_), 0)

"""Tests for polrl.ops.surrogates."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import ops

RATIO = jnp.array([[0.5, 1.0, 1.5, 0.5, 1.5, 5.0]])
ADV = jnp.array([[1.0, 1.0, 1.0, -1.0, -1.0, -1.0]])


def test_clipped_surrogate_asymmetric_hand_values():
    # clip range [1 − 0.2, 1 + 0.28] = [0.8, 1.28];  L = max(−Aρ, −A·clip(ρ))
    #   ρ=0.5, A=+1: max(−0.5, −0.8) = −0.5     unclipped
    #   ρ=1.0, A=+1: max(−1, −1)     = −1       unclipped (tie)
    #   ρ=1.5, A=+1: max(−1.5, −1.28) = −1.28   clipped
    #   ρ=0.5, A=−1: max(0.5, 0.8)    = 0.8     clipped
    #   ρ=1.5, A=−1: max(1.5, 1.28)   = 1.5     unclipped
    #   ρ=5.0, A=−1: max(5, 1.28)     = 5       unclipped
    loss, clipped = ops.clipped_surrogate(RATIO, ADV, eps_low=0.2, eps_high=0.28)
    np.testing.assert_allclose(loss, [[-0.5, -1.0, -1.28, 0.8, 1.5, 5.0]], rtol=1e-6)
    np.testing.assert_array_equal(clipped, [[0, 0, 1, 1, 0, 0]])
    assert clipped.dtype == RATIO.dtype


def test_clipped_surrogate_symmetric_default():
    # eps_high = eps_low = 0.2: ρ=1.5, A=+1 → max(−1.5, −1.2) = −1.2
    loss, _ = ops.clipped_surrogate(RATIO, ADV)
    np.testing.assert_allclose(loss, [[-0.5, -1.0, -1.2, 0.8, 1.5, 5.0]], rtol=1e-6)


def test_clipped_surrogate_dual_clip():
    # c = 3 bounds A < 0 tokens by −A·c = 3: only ρ=5, A=−1 changes, min(5, 3) = 3
    loss, clipped = ops.clipped_surrogate(RATIO, ADV, eps_high=0.28, dual_clip=3.0)
    np.testing.assert_allclose(loss, [[-0.5, -1.0, -1.28, 0.8, 1.5, 3.0]], rtol=1e-6)
    np.testing.assert_array_equal(clipped, [[0, 0, 1, 1, 0, 0]])
    with pytest.raises(ValueError, match="dual_clip"):
        ops.clipped_surrogate(RATIO, ADV, dual_clip=1.0)


def test_gradient_at_ratio_one_is_reinforce():
    logp = jnp.array([[-0.3, -1.2, -2.0, -0.7]])
    adv = jnp.array([[1.5, -0.5, 0.0, -2.0]])

    def loss(lp):
        ratio = jnp.exp(ops.log_ratio(lp, jax.lax.stop_gradient(lp)))
        return jnp.sum(ops.clipped_surrogate(ratio, adv, dual_clip=3.0)[0])

    np.testing.assert_allclose(jax.grad(loss)(logp), -adv)  # REINFORCE: ∂(−A·logπ)/∂logπ


def test_gradient_is_zero_where_clipped():
    # d/dρ: −A where unclipped, 0 where clipped (or dual-clipped)
    grad = jax.grad(lambda r: jnp.sum(ops.clipped_surrogate(r, ADV, dual_clip=3.0)[0]))(RATIO)
    np.testing.assert_allclose(grad, [[-1.0, -1.0, 0.0, 0.0, 1.0, 0.0]])


def test_log_ratio():
    logp = jnp.array([-1.0, 0.0, -50.0])
    old = jnp.array([-2.0, -40.0, 0.0])
    # [1, 40, −50] clipped to ±20
    np.testing.assert_allclose(ops.log_ratio(logp, old), [1.0, 20.0, -20.0])
    np.testing.assert_allclose(ops.log_ratio(logp, old, clamp=None), [1.0, 40.0, -50.0])

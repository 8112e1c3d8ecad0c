"""Tests for polrl.ops.returns: gae, gae_bt, discounted_returns."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import ops


def _random_stream(seed, t=7):
    rng = np.random.default_rng(seed)
    r_t = rng.normal(size=t).astype(np.float32)
    discount_t = (0.9 * (rng.uniform(size=t) > 0.2)).astype(np.float32)
    values = rng.normal(size=t + 1).astype(np.float32)
    return jnp.asarray(r_t), jnp.asarray(discount_t), jnp.asarray(values)


def test_discounted_returns_hand_values():
    r_t = jnp.array([1.0, 0.0, 2.0])
    discount_t = jnp.array([0.9, 0.9, 0.5])
    # G2 = 2 + 0.5·4 = 4;  G1 = 0 + 0.9·4 = 3.6;  G0 = 1 + 0.9·3.6 = 4.24
    np.testing.assert_allclose(
        ops.discounted_returns(r_t, discount_t, jnp.array(4.0)), [4.24, 3.6, 4.0], rtol=1e-6
    )


def test_gae_hand_values():
    r_t = jnp.array([1.0, 0.0, 2.0])
    discount_t = jnp.array([0.9, 0.9, 0.0])
    values = jnp.array([0.5, 1.0, 1.5, 2.0])
    # δ0 = 1 + 0.9·1.0 − 0.5 = 1.4;  δ1 = 0 + 0.9·1.5 − 1.0 = 0.35;  δ2 = 2 + 0·2 − 1.5 = 0.5
    # A2 = 0.5;  A1 = 0.35 + 0.9·0.5·0.5 = 0.575;  A0 = 1.4 + 0.45·0.575 = 1.65875
    np.testing.assert_allclose(
        ops.gae(r_t, discount_t, values, 0.5), [1.65875, 0.575, 0.5], rtol=1e-6
    )
    # λ per step: λ = [0.5, 0, 0.5] cuts the trace after step 1: A1 = δ1 = 0.35,
    # A0 = 1.4 + 0.45·0.35 = 1.5575
    np.testing.assert_allclose(
        ops.gae(r_t, discount_t, values, jnp.array([0.5, 0.0, 0.5])),
        [1.5575, 0.35, 0.5],
        rtol=1e-6,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_gae_lambda_one_is_return_minus_value(seed):
    r_t, discount_t, values = _random_stream(seed)
    expected = ops.discounted_returns(r_t, discount_t, values[-1]) - values[:-1]
    np.testing.assert_allclose(ops.gae(r_t, discount_t, values, 1.0), expected, atol=1e-5)


def test_gae_lambda_zero_is_td_error():
    r_t, discount_t, values = _random_stream(2)
    expected = r_t + discount_t * values[1:] - values[:-1]
    np.testing.assert_allclose(ops.gae(r_t, discount_t, values, 0.0), expected, atol=1e-6)


def test_gae_vmap_equals_loop():
    streams = [_random_stream(seed) for seed in range(4)]
    batched = [jnp.stack(x) for x in zip(*streams)]
    lambdas = jnp.array([0.0, 0.5, 0.95, 1.0])
    out = jax.vmap(ops.gae)(*batched, lambdas)
    for i, (r_t, discount_t, values) in enumerate(streams):
        np.testing.assert_allclose(out[i], ops.gae(r_t, discount_t, values, lambdas[i]), atol=1e-6)


def test_gae_stop_target_gradients():
    r_t, discount_t, values = _random_stream(3)

    def total(v, stop):
        return jnp.sum(ops.gae(r_t, discount_t, v, 0.9, stop_target_gradients=stop))

    np.testing.assert_array_equal(jax.grad(total)(values, True), np.zeros(8))
    assert np.any(jax.grad(total)(values, False) != 0)


def test_gae_shape_checks():
    r_t, discount_t, values = _random_stream(0)
    with pytest.raises(AssertionError):
        ops.gae(r_t, discount_t, values[:-1], 0.9)  # values must have T + 1 entries
    with pytest.raises(AssertionError):
        ops.gae(r_t[None], discount_t[None], values[None], 0.9)  # one stream: rank 1


REWARD_BT = jnp.array([[0.0, 0.0, 1.0, 9.0], [0.0, 2.0, 5.0, 5.0], [3.0, 3.0, 3.0, 3.0]])
VALUE_BT = jnp.array([[0.5, 0.5, 0.5, 7.0], [1.0, 1.0, 3.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
MASK_BT = jnp.array([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])


def test_gae_bt_hand_values():
    # γ = λ = 1, bootstrap 0 after the last valid token: A_t = Σ_{k≥t} r_k − V_t.
    #   row 0: returns [1, 1, 1] − V [0.5, 0.5, 0.5] = [0.5, 0.5, 0.5]; padding → 0
    #   row 1: returns [2, 2] − V [1, 1] = [1, 1]; the padded 5s and 3s never count
    #   row 2: fully masked → 0
    np.testing.assert_allclose(
        ops.gae_bt(REWARD_BT, VALUE_BT, MASK_BT, gamma=1.0, lambda_=1.0),
        [[0.5, 0.5, 0.5, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
        atol=1e-6,
    )
    # row 0 with γ = λ = 0.5:  δ2 = 1 + 0 − 0.5 = 0.5;  δ1 = 0 + 0.5·0.5 − 0.5 = −0.25;
    # δ0 = −0.25;  A2 = 0.5;  A1 = −0.25 + 0.25·0.5 = −0.125;  A0 = −0.25 + 0.25·(−0.125)
    #    = −0.28125
    out = ops.gae_bt(REWARD_BT, VALUE_BT, MASK_BT, gamma=0.5, lambda_=0.5)
    np.testing.assert_allclose(out[0], [-0.28125, -0.125, 0.5, 0.0], atol=1e-6)


def test_gae_bt_matches_gae_on_each_truncated_row():
    rng = np.random.default_rng(0)
    reward_bt = jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
    value_bt = jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
    lengths = [6, 3, 1]
    mask_bt = jnp.asarray(np.arange(6)[None] < np.array(lengths)[:, None], jnp.float32)
    out = ops.gae_bt(reward_bt, value_bt, mask_bt, gamma=0.9, lambda_=0.8)
    for b, n in enumerate(lengths):
        # the episode ends after token n−1: γ = 0.9 inside, 0 on the last step; V_n = 0
        discount_t = jnp.where(jnp.arange(n) < n - 1, 0.9, 0.0)
        values = jnp.concatenate([value_bt[b, :n], jnp.zeros(1)])
        np.testing.assert_allclose(
            out[b, :n], ops.gae(reward_bt[b, :n], discount_t, values, 0.8), atol=1e-5
        )
        np.testing.assert_array_equal(out[b, n:], 0.0)


def test_gae_bt_ignores_nan_in_padding():
    reward_bt = REWARD_BT.at[0, 3].set(jnp.nan)
    value_bt = VALUE_BT.at[1, 2:].set(jnp.inf)
    out = ops.gae_bt(reward_bt, value_bt, MASK_BT, gamma=1.0, lambda_=1.0)
    assert np.all(np.isfinite(out))

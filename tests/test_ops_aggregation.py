"""Tests for polrl.ops.aggregation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import ops

# row 0: 4 valid tokens [1, 2, 3, 4];  row 1: 2 valid tokens [5, 6] (then padding: 100 and NaN
# must never leak);  row 2: fully masked (excluded from every sequence mean).
LOSS_BT = jnp.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 100.0, jnp.nan], [9.0, 9.0, 9.0, 9.0]])
MASK_BT = jnp.array([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("token_mean", 3.5),  # (1+2+3+4+5+6)/6 = 21/6
        ("seq_mean_token_mean", 4.0),  # mean(10/4, 11/2) = mean(2.5, 5.5)
        ("seq_mean_token_sum", 10.5),  # mean(10, 11)
        ("seq_mean_token_sum_norm", 2.625),  # mean(10, 11)/4
    ],
)
def test_aggregate_hand_values(mode, expected):
    out = ops.aggregate(LOSS_BT, MASK_BT, mode, max_len=4)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_allclose(
        ops.aggregate(LOSS_BT, MASK_BT > 0, mode, max_len=4), expected, rtol=1e-6
    )


def test_aggregate_gradients_are_token_weights():
    # d/dL: token_mean → m/6;  seq_mean_token_mean → m_bt/(|V|·n_b) = 1/8 on row 0, 1/4 on row 1
    g_token = jax.grad(lambda l: ops.aggregate(l, MASK_BT, "token_mean"))(LOSS_BT)
    np.testing.assert_allclose(g_token, MASK_BT / 6, rtol=1e-6)
    g_seq = jax.grad(lambda l: ops.aggregate(l, MASK_BT, "seq_mean_token_mean"))(LOSS_BT)
    np.testing.assert_allclose(g_seq, [[1 / 8] * 4, [1 / 4, 1 / 4, 0, 0], [0] * 4], rtol=1e-6)


def test_aggregate_all_masked_is_zero():
    mask = jnp.zeros_like(MASK_BT)
    for mode in ops.AGGREGATION_MODES:
        out = ops.aggregate(LOSS_BT, mask, mode, max_len=4)
        assert float(out) == 0.0
        grad = jax.grad(lambda l: ops.aggregate(l, mask, mode, max_len=4))(LOSS_BT)
        np.testing.assert_array_equal(grad, 0.0)


def test_aggregate_modes_agree_on_equal_lengths_and_uniform_rows():
    # every row has 3 valid tokens of one value c_b ∈ {1, 2, 6}: all means give mean(c) = 3, the
    # token sum gives 3·3 = 9 and its max_len = 3 normalization 9/3 = 3.
    loss = jnp.array([[1.0, 1.0, 1.0, 7.0], [2.0, 2.0, 2.0, 7.0], [6.0, 6.0, 6.0, 7.0]])
    mask = jnp.array([[1.0, 1.0, 1.0, 0.0]] * 3)
    for mode in ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"):
        np.testing.assert_allclose(ops.aggregate(loss, mask, mode, max_len=3), 3.0, rtol=1e-6)
    np.testing.assert_allclose(ops.aggregate(loss, mask, "seq_mean_token_sum"), 9.0, rtol=1e-6)


def test_token_sum_norm_times_max_len_is_token_sum():
    rng = np.random.default_rng(0)
    loss = jnp.asarray(rng.normal(size=(5, 7)), jnp.float32)
    mask = jnp.asarray(np.arange(7)[None] < rng.integers(0, 8, size=5)[:, None], jnp.float32)
    np.testing.assert_allclose(
        7 * ops.aggregate(loss, mask, "seq_mean_token_sum_norm", max_len=7),
        ops.aggregate(loss, mask, "seq_mean_token_sum"),
        rtol=1e-5,
    )


def test_aggregate_errors():
    with pytest.raises(ValueError, match="token_mean"):
        ops.aggregate(LOSS_BT, MASK_BT, "mean")
    with pytest.raises(ValueError, match="max_len"):
        ops.aggregate(LOSS_BT, MASK_BT, "seq_mean_token_sum_norm")
    with pytest.raises(AssertionError):
        ops.aggregate(LOSS_BT, MASK_BT[:, :3], "token_mean")

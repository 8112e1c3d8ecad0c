"""Tests for polrl.ops.stats."""
import jax
import jax.numpy as jnp
import numpy as np

from polrl import ops

X = jnp.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, jnp.nan]])
MASK = jnp.array([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])  # valid: 1, 2, 5


def test_masked_mean_and_sum():
    np.testing.assert_allclose(ops.masked_sum(X, MASK), 8.0)
    np.testing.assert_allclose(ops.masked_mean(X, MASK), 8 / 3, rtol=1e-6)
    np.testing.assert_allclose(ops.masked_mean(X, MASK, axis=1), [1.5, 5.0])
    np.testing.assert_allclose(ops.masked_mean(X, MASK > 0, axis=0), [3.0, 2.0, 0.0, 0.0])
    # float weights: (2·1 + 1·2)/(2 + 1) = 4/3
    np.testing.assert_allclose(
        ops.masked_mean(X[0], jnp.array([2.0, 1.0, 0.0, 0.0])), 4 / 3, rtol=1e-6
    )


def test_masked_var():
    # valid [1, 2, 5], mean 8/3: squared deviations 25/9 + 4/9 + 49/9 = 78/9
    #   biased 78/27 = 2.8888889, unbiased 78/18 = 4.3333333
    np.testing.assert_allclose(ops.masked_var(X, MASK, unbiased=False), 78 / 27, rtol=1e-6)
    np.testing.assert_allclose(ops.masked_var(X, MASK), 78 / 18, rtol=1e-6)
    # per row: [1, 2] → biased 0.25, unbiased 0.5; [5] → 0 (n − 1 = 0 gives 0, not NaN)
    np.testing.assert_allclose(ops.masked_var(X, MASK, axis=1), [0.5, 0.0])
    np.testing.assert_allclose(ops.masked_var(X, MASK, unbiased=False, axis=1), [0.25, 0.0])


def test_masked_whiten():
    x = jnp.array([1.0, 2.0, 3.0, 100.0])
    mask = jnp.array([1.0, 1.0, 1.0, 0.0])
    # mean 2, unbiased var 1 → (x − 2)/√(1 + 1e-8); the masked entry → 0
    np.testing.assert_allclose(ops.masked_whiten(x, mask), [-1.0, 0.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(
        ops.masked_whiten(x, mask, shift_mean=False), [1.0, 2.0, 3.0, 0.0], atol=1e-6
    )
    rng = np.random.default_rng(0)
    y = jnp.asarray(3.0 + 2.0 * rng.normal(size=(4, 9)), jnp.float32)
    m = jnp.asarray(rng.uniform(size=(4, 9)) > 0.3, jnp.float32)
    w = ops.masked_whiten(y, m)
    np.testing.assert_allclose(ops.masked_mean(w, m), 0.0, atol=1e-6)
    np.testing.assert_allclose(ops.masked_var(w, m), 1.0, rtol=1e-5)


def test_masked_max_min():
    np.testing.assert_allclose(ops.masked_max(X, MASK), 5.0)
    np.testing.assert_allclose(ops.masked_min(X, MASK), 1.0)
    np.testing.assert_allclose(ops.masked_max(X, MASK, axis=1), [2.0, 5.0])
    np.testing.assert_allclose(ops.masked_min(X, MASK, axis=0), [1.0, 2.0, 0.0, 0.0])


def test_all_zero_mask_gives_zero_without_nan():
    mask = jnp.zeros_like(MASK)
    fns = {
        "sum": ops.masked_sum,
        "mean": ops.masked_mean,
        "var": ops.masked_var,
        "max": ops.masked_max,
        "min": ops.masked_min,
    }
    for name, fn in fns.items():
        assert float(fn(X, mask)) == 0.0, name
        np.testing.assert_array_equal(fn(X, mask, axis=1), [0.0, 0.0], err_msg=name)
        grad = jax.grad(lambda x: fn(x, mask))(X)
        np.testing.assert_array_equal(grad, 0.0, err_msg=name)
    np.testing.assert_array_equal(ops.masked_whiten(X, mask), 0.0)


def test_safe_div():
    out = ops.safe_div(jnp.array([1.0, 2.0]), jnp.array([4.0, 0.0]))
    np.testing.assert_allclose(out, [0.25, 0.0])  # 1/4, and 2/0 → 0
    grad = jax.grad(lambda d: jnp.sum(ops.safe_div(jnp.ones(2), d)))(jnp.array([2.0, 0.0]))
    np.testing.assert_allclose(grad, [-0.25, 0.0])

"""Tests for polrl.ops.distributions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import ops


def test_log_softmax_at_hand_values():
    logits = jnp.array([[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]])
    tokens = jnp.array([[2, 0]])
    # log Σ e^z = 3 + log(1 + e^−1 + e^−2) = 3.40760596 → [3, 1] − 3.40760596
    np.testing.assert_allclose(
        ops.log_softmax_at(logits, tokens), [[-0.40760596, -2.40760596]], rtol=1e-6
    )
    # temperature 2: z = [0.5, 1, 1.5], log Σ e^z = 1.5 + log(1 + e^−0.5 + e^−1) = 2.18026966
    np.testing.assert_allclose(
        ops.log_softmax_at(logits, tokens, temperature=2.0),
        [[-0.68026966, -1.68026966]],
        rtol=1e-6,
    )


def test_log_softmax_at_bfloat16_logits_give_float32():
    logits = jnp.array([[[1.0, 2.0, 3.0]]], jnp.bfloat16)
    assert ops.log_softmax_at(logits, jnp.array([[2]])).dtype == jnp.float32


def test_entropy_hand_values():
    # uniform over V = 5 → log 5;  softmax([0, log 3]) = [1/4, 3/4] → −(¼ log ¼ + ¾ log ¾)
    #   = 0.34657359 + 0.21576155 = 0.56233514; a −inf logit adds nothing
    np.testing.assert_allclose(
        ops.entropy_from_logits(jnp.full((1, 1, 5), 0.7)), [[np.log(5)]], rtol=1e-6
    )
    logits = jnp.array([[[0.0, np.log(3.0), -jnp.inf]]])
    np.testing.assert_allclose(ops.entropy_from_logits(logits), [[0.56233514]], rtol=1e-6)
    grad = jax.grad(lambda z: jnp.sum(ops.entropy_from_logits(z)))(logits)
    assert np.all(np.isfinite(grad))


def test_entropy_temperature():
    # temperature → ∞ flattens to uniform: entropy → log V
    logits = jnp.array([[[3.0, -1.0, 0.5, 2.0]]])
    np.testing.assert_allclose(
        ops.entropy_from_logits(logits, temperature=1e6), [[np.log(4)]], rtol=1e-5
    )
    assert ops.entropy_from_logits(logits, temperature=0.5) < ops.entropy_from_logits(logits)


@pytest.mark.parametrize("chunk_size", [1, 3, 10])
def test_chunked_equals_unchunked(chunk_size):
    rng = np.random.default_rng(0)
    b, t, d, v = 2, 8, 5, 11
    hidden = jnp.asarray(rng.normal(size=(b, t, d)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(d, v)), jnp.float32)
    tokens = jnp.asarray(rng.integers(0, v, size=(b, t)), jnp.int32)

    def unchunked(h, w):
        logits = h @ w
        return ops.log_softmax_at(logits, tokens, 0.7), ops.entropy_from_logits(logits, 0.7)

    def chunked(h, w):
        return ops.token_logp_and_entropy(
            h, lambda x: x @ w, tokens, chunk_size=chunk_size, temperature=0.7
        )

    for got, want in zip(jax.jit(chunked)(hidden, w), jax.jit(unchunked)(hidden, w)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    def objective(fn):
        def f(h, w):
            logp, ent = fn(h, w)
            return jnp.sum(logp) + 0.1 * jnp.sum(ent)

        return jax.jit(jax.grad(f, argnums=(0, 1)))(hidden, w)

    for got, want in zip(objective(chunked), objective(unchunked)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_chunked_rejects_bad_chunk_size():
    with pytest.raises(ValueError, match="chunk_size"):
        ops.token_logp_and_entropy(
            jnp.zeros((1, 2, 3)), lambda x: x, jnp.zeros((1, 2), jnp.int32), chunk_size=0
        )

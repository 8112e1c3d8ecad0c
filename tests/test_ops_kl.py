"""Tests for polrl.ops.kl."""
import jax
import jax.numpy as jnp
import numpy as np

from polrl import ops

LOGP = jnp.array([[-1.0, -2.0, -0.5]])
REF = jnp.array([[-1.5, -2.0, -0.2]])


def test_kl_hand_values():
    # logp − ref = [0.5, 0, −0.3]
    np.testing.assert_allclose(ops.kl_k1(LOGP, REF), [[0.5, 0.0, -0.3]], atol=1e-7)
    # ½·[0.25, 0, 0.09]
    np.testing.assert_allclose(ops.kl_k2(LOGP, REF), [[0.125, 0.0, 0.045]], atol=1e-7)
    # d = ref − logp = [−0.5, 0, 0.3]:  e^−0.5 + 0.5 − 1 = 0.10653066;  e^0.3 − 0.3 − 1 = 0.04985881
    np.testing.assert_allclose(ops.kl_k3(LOGP, REF), [[0.10653066, 0.0, 0.04985881]], atol=1e-6)


def test_kl_k3_clamp():
    logp = jnp.array([[0.0, 0.0, 0.0]])
    ref = jnp.array([[5.0, -15.0, 200.0]])
    # d = 5: e⁵ − 6 = 142.413159;  d = −15: e^−15 + 14 ≈ 14;  d = 200 would overflow → clipped
    np.testing.assert_allclose(ops.kl_k3(logp, ref), [[10.0, 10.0, 10.0]])
    np.testing.assert_allclose(ops.kl_k3(logp, ref, clamp=3.0), [[3.0, 3.0, 3.0]])
    np.testing.assert_allclose(
        ops.kl_k3(logp[:, :2], ref[:, :2], clamp=None), [[142.413159, 14.0000003]], rtol=1e-6
    )
    grad = jax.grad(lambda lp: jnp.sum(ops.kl_k3(lp, ref)))(logp)
    np.testing.assert_array_equal(grad, 0.0)  # clipped everywhere, and no NaN from exp(200)


def test_kl_nonnegative_and_zero_at_equality():
    rng = np.random.default_rng(0)
    logp = jnp.asarray(-rng.exponential(size=(4, 16)), jnp.float32)
    ref = jnp.asarray(-rng.exponential(size=(4, 16)), jnp.float32)
    assert np.all(ops.kl_k2(logp, ref) >= 0)
    assert np.all(ops.kl_k3(logp, ref) >= 0)
    assert np.all(ops.kl_k3(logp, ref, clamp=None) >= 0)
    for kl in (ops.kl_k1, ops.kl_k2, ops.kl_k3):
        np.testing.assert_array_equal(kl(logp, logp), 0.0)


def test_kl_gradients():
    # d/dlogp: k1 → 1;  k2 → logp − ref = [0.5, 0, −0.3];  k3 → 1 − e^d = [1 − e^−0.5, 0, 1 − e^0.3]
    #   = [0.39346934, 0, −0.34985881]
    def grad(kl):
        return jax.grad(lambda lp: jnp.sum(kl(lp, REF)))(LOGP)

    np.testing.assert_allclose(grad(ops.kl_k1), [[1.0, 1.0, 1.0]])
    np.testing.assert_allclose(grad(ops.kl_k2), [[0.5, 0.0, -0.3]], atol=1e-7)
    np.testing.assert_allclose(grad(ops.kl_k3), [[0.39346934, 0.0, -0.34985881]], atol=1e-6)


def test_k1_and_k3_are_unbiased_monte_carlo():
    logits = jnp.array([0.5, -0.2, 1.0, 0.0])
    ref_logits = jnp.array([0.0, 0.3, 0.2, -0.5])
    logp_v = jax.nn.log_softmax(logits)
    ref_v = jax.nn.log_softmax(ref_logits)
    exact = float(jnp.sum(jnp.exp(logp_v) * (logp_v - ref_v)))  # KL(π ‖ ref)
    x = jax.random.categorical(jax.random.key(0), logits, shape=(1, 200_000))
    logp, ref = logp_v[x], ref_v[x]
    for kl in (ops.kl_k1, ops.kl_k3):
        np.testing.assert_allclose(float(jnp.mean(kl(logp, ref))), exact, atol=5e-3)
    # k2 is biased: exactly E_π[k2] = 0.0917 here against KL = 0.1070
    assert abs(float(jnp.mean(ops.kl_k2(logp, ref))) - exact) > 1e-2


def test_abs_and_straight_through_values_and_gradients():
    # logp − ref = [0.5, 0, −0.3]
    est = ops.KL_ESTIMATORS
    np.testing.assert_allclose(ops.kl_abs(LOGP, REF), [[0.5, 0.0, 0.3]], atol=1e-7)
    assert est["abs"] is ops.kl_abs and est["k2+"] is ops.kl_k2

    def grad(kl):
        return jax.grad(lambda lp: jnp.sum(kl(lp, REF)))(LOGP)

    # |Δ|' = sign(Δ) = [1, 0, −1]
    np.testing.assert_allclose(grad(ops.kl_abs), [[1.0, 0.0, -1.0]])
    # "+": the value of the named estimator, the gradient of k2 (Δ = [0.5, 0, −0.3])
    for name, base in (("k1+", ops.kl_k1), ("k3+", ops.kl_k3), ("abs+", ops.kl_abs)):
        np.testing.assert_array_equal(est[name](LOGP, REF), base(LOGP, REF))
        np.testing.assert_allclose(grad(est[name]), [[0.5, 0.0, -0.3]], atol=1e-7)
    np.testing.assert_array_equal(jax.jit(est["k3+"])(LOGP, REF), est["k3+"](LOGP, REF))


def test_k2_gradient_is_the_kl_gradient_on_policy():
    # E_π[∇k2] = ∇KL(π ‖ ref) exactly (as an expectation over the vocabulary), E_π[∇k1] = 0
    logits = jnp.array([0.5, -0.2, 1.0, 0.0])
    ref_v = jax.nn.log_softmax(jnp.array([0.0, 0.3, 0.2, -0.5]))

    def kl(z):
        lp = jax.nn.log_softmax(z)
        return jnp.sum(jnp.exp(lp) * (lp - ref_v))

    def expected_grad(name):
        def surrogate(z):  # Σ_x sg(π(x)) · est(log π_z(x), ref(x))
            lp = jax.nn.log_softmax(z)
            return jnp.sum(jax.lax.stop_gradient(jnp.exp(lp)) * ops.KL_ESTIMATORS[name](lp, ref_v))
        return jax.grad(surrogate)(logits)

    for name in ("k2", "k1+", "k3+", "abs+"):
        np.testing.assert_allclose(expected_grad(name), jax.grad(kl)(logits), atol=1e-6)
    np.testing.assert_allclose(expected_grad("k1"), 0.0, atol=1e-6)
    assert not np.allclose(expected_grad("k3"), jax.grad(kl)(logits), atol=1e-3)


def test_kl_estimator_names_reach_the_loss_and_the_reward():
    import pytest

    from polrl import algorithms, kl_control, objectives

    for name in ops.KL_ESTIMATORS:
        objectives.kl_penalty(coef=0.1, estimator=name)
        kl_control.kl_reward(coef=0.1, estimator=name)
        algorithms.grpo(kl_estimator=name)
    with pytest.raises(ValueError, match="k4"):
        objectives.kl_penalty(coef=0.1, estimator="k4")
    with pytest.raises(ValueError, match=r"k3\+\+"):
        algorithms.grpo(kl_estimator="k3++")

"""ROVER (polrl.algorithms.rover): the Q-regression by hand (token and response level, clip),
REINFORCE at π_old = π_θ, the multi-update restriction, and a prepare + update on a tiny model."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms
from polrl.algorithms.rover import rover_q_regression
from alg_testing import apply, assert_trained, check_algorithm_transforms, hand_batch

MASK = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
LOGP = np.array([[-1.0, -0.5, -2.0], [-0.2, -1.5, -9.0]], np.float32)
OLD = np.array([[-1.2, -0.5, -1.0], [-0.3, -1.0, -9.0]], np.float32)  # log ρ = (.2, 0, −1), (.1, −.5, ·)
ADV = np.array([[1.0, 1.0, 1.0], [-0.5, -0.5, 0.0]], np.float32)


def _batch(**kw):
    return hand_batch(MASK, logp_bt=LOGP, old_logp_bt=OLD, adv_bt=ADV, **kw)


def test_token_level_q_regression():
    # ρ = 2: q = 2·log ρ = (.4, 0, −2), (.2, −1, ·);  L = (q − A)² = (.36, 1, 9), (.49, .25, ·)
    out = apply(rover_q_regression(rho=2.0), _batch())
    np.testing.assert_allclose(out.terms["rover"] * MASK, [[0.36, 1.0, 9.0], [0.49, 0.25, 0.0]], rtol=1e-5)
    np.testing.assert_allclose(out.metrics["q_mean"], (0.4 + 0 - 2 + 0.2 - 1) / 5, rtol=1e-5)
    # dL/dlog π = 2ρ(q − A)
    grad = jax.grad(lambda lp: (apply(rover_q_regression(rho=2.0), _batch().replace(logp_bt=lp)).terms["rover"] * MASK).sum())(jnp.asarray(LOGP))
    np.testing.assert_allclose(grad, 4.0 * np.array([[-0.6, -1.0, -3.0], [0.7, -0.5, 0.0]]), rtol=1e-5)


def test_clip_freezes_q_beyond_log_one_plus_eps():
    # ε = .2: bounds log 1.2 = .18232, log .8 = −.22314 (ρ = 1, q = log ρ)
    #   (0, 0) q = .2 > .18232 and A = 1 > q → frozen at .18232;  (0, 2) q = −1 < A → free
    #   (1, 1) q = −.5 < −.22314 and A = −.5 ≥ q → free (target not below q)
    out = apply(rover_q_regression(clip=0.2), _batch())
    hi = math.log(1.2)
    expected = [[(hi - 1) ** 2, 1.0, 4.0], [(0.1 + 0.5) ** 2, 0.0, 0.0]]
    np.testing.assert_allclose(out.terms["rover"] * MASK, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.metrics["rover_clip_frac"], 1 / 5)
    grad = jax.grad(lambda lp: (apply(rover_q_regression(clip=0.2), _batch().replace(logp_bt=lp)).terms["rover"] * MASK).sum())(jnp.asarray(LOGP))
    assert float(grad[0, 0]) == 0.0 and float(grad[0, 2]) != 0.0
    # below: q = −1 at (0, 2) with A = −2 < q and q < log .8 → frozen at log .8
    low = apply(rover_q_regression(clip=0.2), _batch().replace(adv_bt=jnp.asarray(ADV).at[0, 2].set(-2.0)))
    np.testing.assert_allclose(low.terms["rover"][0, 2], (math.log(0.8) + 2.0) ** 2, rtol=1e-5)


def test_response_level_loss():
    # mean q per row: (.2 + 0 − 1)/3 = −.26667, (.1 − .5)/2 = −.2; A = 1, −.5
    out = apply(rover_q_regression(response_level=True), _batch())
    expected = ((-0.8 / 3 - 1.0) ** 2 + (-0.2 + 0.5) ** 2) / 2
    np.testing.assert_allclose(out.losses["rover"], expected, rtol=1e-5)
    assert "rover" not in out.terms


def test_on_policy_rover_is_scaled_reinforce():
    # π_old = π_θ (old_logp_bt None): q = 0 in value and dL/dlog π = −2ρA
    batch = _batch().replace(old_logp_bt=None)
    t = rover_q_regression(rho=0.5)
    out = apply(t, batch)
    np.testing.assert_allclose(out.terms["rover"] * MASK, ADV ** 2 * MASK, rtol=1e-6)
    grad = jax.grad(lambda lp: (apply(t, batch.replace(logp_bt=lp)).terms["rover"] * MASK).sum())(jnp.asarray(LOGP))
    np.testing.assert_allclose(grad, -2 * 0.5 * ADV * MASK, rtol=1e-6)


def test_restrictions_and_contract():
    with pytest.raises(ValueError, match="next_q_scale=0"):
        algorithms.rover(num_minibatches=2)
    with pytest.raises(ValueError, match="clip"):
        rover_q_regression(clip=1.5)
    assert algorithms.rover().needs == frozenset()
    check_algorithm_transforms(algorithms.rover(clip=0.2))


def test_multi_update_rover_on_a_tiny_model():
    # target_adv_only with two epochs: the second epoch regresses a moved q (q_mean ≠ 0)
    metrics = assert_trained(algorithms.rover(learning_rate=1e-2, next_q_scale=0.0, num_epochs=2),
                             expected_metrics={"rover", "q_mean", "loss", "grad_norm"})
    assert abs(float(metrics["q_mean"])) > 1e-5

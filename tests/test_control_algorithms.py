"""MDPO's mirror-descent term and PROPS's behaviour loss: hand values and equivalences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import objectives, ops
from polrl.control.batch import ControlBatch
from polrl.control.props import props_behavior_loss
from polrl.control.sampling_error import sampling_error, state_cells
from polrl.core import chain, total_loss
from polrl.mirror_descent import mdpo_step_size_inverse, mirror_descent_kl

LOGP = np.log(np.array([[0.5], [0.2], [0.9], [0.4]]))
OLD = np.log(np.array([[0.4], [0.25], [0.9], [0.8]]))
ADV = np.array([[1.0], [-2.0], [0.5], [3.0]])
KL = np.array([[0.1], [0.0], [0.3], [0.2]])


def batch(**over):
    n = LOGP.shape[0]
    fields = dict(
        prompt_bp=jnp.zeros((n, 0), jnp.int32), prompt_valid_bp=jnp.zeros((n, 0), bool),
        response_bt=jnp.zeros((n, 1), jnp.int32), mask_bt=jnp.ones((n, 1)),
        logp_bt=jnp.asarray(LOGP, jnp.float32), old_logp_bt=jnp.asarray(OLD, jnp.float32),
        adv_bt=jnp.asarray(ADV, jnp.float32), kl_to_old_bt=jnp.asarray(KL, jnp.float32),
    )
    fields.update(over)
    return ControlBatch(**fields)


def mdpo_loss(coef, step=0, estimator="exact"):
    objective = chain(
        objectives.clipped_policy_gradient(eps_low=jnp.inf),
        mirror_descent_kl(coef, estimator=estimator),
        objectives.aggregate("token_mean"),
    )
    out, _ = objective.apply(batch(), objective.init(), step=step)
    return total_loss(out), out


def test_mdpo_with_zero_kl_weight_is_the_unclipped_surrogate():
    loss, out = mdpo_loss(0.0)
    ratio = np.exp(LOGP - OLD)  # 1.25, 0.8, 1, 0.5: the first and last are outside 1 ± 0.2
    np.testing.assert_allclose(loss, np.mean(-ratio * ADV), rtol=1e-6)
    assert float(out.metrics["clip_frac"]) == 0.0
    clipped, _ = chain(objectives.clipped_policy_gradient(eps_low=0.2), objectives.aggregate("token_mean")).apply(batch(), ((), ()))
    assert not np.isclose(total_loss(clipped), loss)  # PPO's clip does bite on this batch


def test_mdpo_exact_kl_term_by_hand():
    loss, out = mdpo_loss(mdpo_step_size_inverse(4), step=2)  # t_2 = 1 − 2/4, weight 2
    ratio = np.exp(LOGP - OLD)
    np.testing.assert_allclose(loss, np.mean(-ratio * ADV) + 2.0 * KL.mean(), rtol=1e-6)
    np.testing.assert_allclose(out.metrics["kl_old"], KL.mean(), rtol=1e-6)
    np.testing.assert_allclose(out.metrics["mirror_kl_coef"], 2.0)


def test_mdpo_sampled_kl_uses_the_shared_estimator():
    _, out = mdpo_loss(1.0, estimator="k3")
    k3 = ops.kl_k3(jnp.asarray(LOGP, jnp.float32), jnp.asarray(OLD, jnp.float32))
    np.testing.assert_allclose(out.losses["mirror_kl"], k3.mean(), rtol=1e-6)


def test_mdpo_schedule_and_errors():
    coef = mdpo_step_size_inverse(10)
    np.testing.assert_allclose([coef(0), coef(5), coef(9)], [1.0, 2.0, 10.0], rtol=1e-6)
    with pytest.raises(ValueError, match="kl_to_old_bt"):
        mirror_descent_kl(1.0).apply(batch(kl_to_old_bt=None), ())
    with pytest.raises(ValueError, match="`step` extra"):
        mirror_descent_kl(coef).apply(batch(), ())
    with pytest.raises(ValueError, match="estimator='k4'"):
        mirror_descent_kl(1.0, estimator="k4")


def test_mdpo_gradient_with_zero_weight_is_reinforce_at_ratio_one():
    # at θ = θ_k (ratio 1, KL 0) the mirror-descent loss has the policy-gradient gradient −A
    def loss(logp):
        b = batch(logp_bt=logp, old_logp_bt=jax.lax.stop_gradient(logp), kl_to_old_bt=jnp.zeros_like(logp))
        objective = chain(objectives.clipped_policy_gradient(eps_low=jnp.inf), mirror_descent_kl(3.0),
                          objectives.aggregate("token_mean"))
        return total_loss(objective.apply(b, objective.init())[0])

    g = jax.grad(loss)(jnp.asarray(OLD, jnp.float32))
    np.testing.assert_allclose(g, -ADV / 4, rtol=1e-6)


def test_props_behavior_loss_by_hand():
    objective = chain(props_behavior_loss(clip_coef=0.3, kl_coef=0.3), objectives.aggregate("token_mean"))
    out, _ = objective.apply(batch(), objective.init())
    ratio = np.exp(LOGP - OLD)[:, 0]  # π_φ/π_θ = 1.25, 0.8, 1, 0.5
    # max(ρ, clip(ρ, 0.7, 1.3)): 1.25, 0.8, 1, 0.7 (the last is floored: no gradient below 0.7)
    np.testing.assert_allclose(out.losses["props"], np.mean([1.25, 0.8, 1.0, 0.7]), rtol=1e-6)
    np.testing.assert_allclose(out.losses["props_kl"], 0.3 * KL.mean(), rtol=1e-6)
    np.testing.assert_allclose(out.metrics["props_ratio"], ratio.mean(), rtol=1e-6)

    def loss(logp):
        b, _ = objective.apply(batch(logp_bt=logp, kl_to_old_bt=jnp.zeros_like(logp)), objective.init())
        return total_loss(b)

    g = jax.grad(loss)(jnp.asarray(LOGP, jnp.float32))[:, 0]
    # d/dlogπ_φ of ρ/4 is ρ/4 inside the clip range, 0 where the clip floors it
    np.testing.assert_allclose(g, [1.25 / 4, 0.8 / 4, 1.0 / 4, 0.0], rtol=1e-6)


def test_sampling_error_by_hand():
    # terciles of (0, 0, 1, 2, 2, 2) are 2/3 and 2 (linear interpolation): cells {0, 0} and {1, 2, 2, 2}
    obs = jnp.array([[0.0], [0.0], [1.0], [2.0], [2.0], [2.0]])
    valid = jnp.ones(6, bool)
    np.testing.assert_array_equal(state_cells(obs, valid), [0, 0, 1, 1, 1, 1])
    probs = jnp.array([[0.5, 0.5]] * 6)
    action = jnp.array([0, 1, 0, 0, 0, 1])
    # cell 0: counts (1, 1) = expected (1, 1): 0;  cell 1: counts (3, 1) vs expected (2, 2)
    expected = (3 * np.log(3 / 2) + np.log(1 / 2)) / 6
    np.testing.assert_allclose(sampling_error(obs, action, probs, valid), expected, rtol=1e-5)
    # invalid rows do not count: only cell 0 remains, which matches exactly
    masked = sampling_error(obs, action, probs, jnp.array([1, 1, 0, 0, 0, 0], bool))
    np.testing.assert_allclose(masked, 0.0, atol=1e-7)
    # pooled: one cell, counts (4, 2) vs expected (3, 3)
    pooled = (4 * np.log(4 / 3) + 2 * np.log(2 / 3)) / 6
    np.testing.assert_allclose(sampling_error(obs, action, probs, valid, pooled=True), pooled, rtol=1e-5)
    with pytest.raises(ValueError, match="obs dim 9 > 8"):
        sampling_error(jnp.zeros((2, 9)), action[:2], probs[:2], valid[:2])

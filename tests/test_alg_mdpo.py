"""MDPO for LLMs (polrl.algorithms.mdpo): the KL-weight schedules by hand (the default floored t_k,
MDPO's linear t_k, constant), the loss by hand, infinite step size = the unregularized surrogate,
and several updates per batch on a tiny model."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms
from polrl.algorithms.mdpo import mdpo_kl_weight
from polrl.core import total_loss
from alg_testing import apply, assert_trained, check_algorithm_transforms, hand_batch

MASK = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
LOGP = np.array([[-1.0, -0.5, -3.0], [-0.2, -1.5, -2.0]], np.float32)
OLD = LOGP - np.array([[0.3, -0.2, 0.0], [0.0, 0.1, -0.5]], np.float32)  # log ρ
ADV = np.array([[1.0, 1.0, 0.0], [-0.5, -0.5, -0.5]], np.float32)


def _batch():
    return hand_batch(MASK, logp_bt=LOGP, old_logp_bt=OLD, adv_bt=ADV)


def _loss_and_grad(alg, batch, step):
    def loss(lp):
        out, _ = alg.objective.apply(batch.replace(logp_bt=lp), alg.objective.init(), step=jnp.int32(step))
        return total_loss(out)

    return jax.value_and_grad(loss)(batch.logp_bt)


@pytest.mark.parametrize("step, weight", [(0, 1.0), (5, 2.0), (8, 5.0), (9, 10.0), (10, 10.0), (50, 10.0)])
def test_linear_schedule(step, weight):
    # MDPO's own: K = 10, 1/t_k = 1/(1 − k/10), held at the last value (K) after the horizon
    np.testing.assert_allclose(mdpo_kl_weight(schedule="linear", num_updates=10)(step), weight, rtol=1e-6)


@pytest.mark.parametrize("step, weight", [
    (0, 1.0), (5, 2.0), (7, 1 / 0.3), (8, 5.0), (9, 5.0), (10, 5.0), (11, 5.0), (10_000, 5.0),
])
def test_floored_schedule_is_the_default_with_a_horizon(step, weight):
    # K = 10, t_min = .2: t_k = max(1 − k/10, .2) → 1/t_k = 1, 2, 1/.3, then 5 from k = 8 = K(1 − t_min) on,
    # past the horizon too (no division by zero or negative t_k)
    default = mdpo_kl_weight(num_updates=10)
    np.testing.assert_allclose(default(step), weight, rtol=1e-6)
    np.testing.assert_allclose(mdpo_kl_weight(schedule="floored", num_updates=10, min_step_size=0.2)(step), weight,
                               rtol=1e-6)
    np.testing.assert_allclose(default(jnp.int32(step)), weight, rtol=1e-6)  # a traced step too


@pytest.mark.parametrize("step, weight", [(0, 1.0), (100, 2.0), (150, 4.0), (160, 5.0), (180, 10.0), (190, 10.0),
                                          (199, 10.0), (200, 10.0), (5000, 10.0)])
def test_floored_schedule_other_floor(step, weight):
    # K = 200, t_min = .1: 1/(1 − k/200) = 1, 2, 4, 5 at k = 0, 100, 150, 160, then 10 from k = 180 on
    np.testing.assert_allclose(mdpo_kl_weight(num_updates=200, min_step_size=0.1)(step), weight, rtol=1e-6)


def test_constant_weights():
    assert mdpo_kl_weight(num_updates=None, step_size=0.25) == 4.0
    assert mdpo_kl_weight(step_size=0.25, schedule="constant") == 4.0
    assert mdpo_kl_weight(num_updates=None, step_size=math.inf) == 0.0
    with pytest.raises(ValueError, match="not both"):
        mdpo_kl_weight(num_updates=10, step_size=0.5)
    with pytest.raises(ValueError, match="not both"):
        mdpo_kl_weight(schedule="constant", num_updates=10)
    with pytest.raises(ValueError, match="step_size"):
        mdpo_kl_weight(num_updates=None, step_size=0.0)
    with pytest.raises(ValueError, match="num_updates"):
        mdpo_kl_weight(schedule="floored")
    with pytest.raises(ValueError, match="min_step_size"):
        mdpo_kl_weight(num_updates=10, min_step_size=0.0)
    with pytest.raises(ValueError, match="schedule"):
        mdpo_kl_weight(schedule="cosine", num_updates=10)


def test_infinite_step_size_is_the_unregularized_surrogate():
    alg = algorithms.mdpo(step_size=math.inf)
    value, grad = _loss_and_grad(alg, _batch(), step=3)
    ratio = np.exp(LOGP - OLD)
    # token mean of −ρ·A over the five valid tokens; dL/dlog π = −ρA/5 (no clip anywhere)
    np.testing.assert_allclose(value, (-ratio * ADV * MASK).sum() / 5, rtol=1e-6)
    np.testing.assert_allclose(grad, -ratio * ADV * MASK / 5, rtol=1e-5)
    # = GRPO's surrogate with an infinite clip range and no KL
    grpo = algorithms.grpo(kl_coef=0.0, eps_low=math.inf, aggregation="token_mean")
    ref_value, ref_grad = _loss_and_grad(grpo, _batch(), step=3)
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-6)


def test_mdpo_loss_by_hand():
    # K = 4 at step 2: weight 1/(1 − 2/4) = 2; KL term k3 = eᵈ − d − 1 with d = log π_old − log π_θ
    alg = algorithms.mdpo(num_updates=4, num_epochs=2)
    value, _ = _loss_and_grad(alg, _batch(), step=2)
    d = OLD - LOGP
    ratio = np.exp(-d)
    expected = ((-ratio * ADV + 2.0 * (np.exp(d) - d - 1)) * MASK).sum() / 5
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    out, _ = alg.objective.apply(_batch(), alg.objective.init(), step=jnp.int32(2))
    np.testing.assert_allclose(out.metrics["mirror_kl_coef"], 2.0)
    np.testing.assert_allclose(out.metrics["clip_frac"], 0.0)
    # past the horizon (step 7 > K = 4) the default floored weight is 1/t_min = 5; MDPO's linear one K = 4
    for schedule, coef in (("floored", 5.0), ("linear", 4.0)):
        alg = algorithms.mdpo(num_updates=4, num_epochs=2, schedule=schedule)
        value, _ = _loss_and_grad(alg, _batch(), step=7)
        np.testing.assert_allclose(value, ((-ratio * ADV + coef * (np.exp(d) - d - 1)) * MASK).sum() / 5, rtol=1e-5)


def test_restrictions_and_contract():
    with pytest.raises(ValueError, match="several updates"):
        algorithms.mdpo(num_epochs=1)
    with pytest.raises(ValueError, match="kl_estimator"):
        algorithms.mdpo(kl_estimator="exact")
    algorithms.mdpo(num_epochs=1, step_size=math.inf)  # no KL: one update is fine
    assert algorithms.mdpo().needs == frozenset()
    assert algorithms.mdpo(ref_kl_coef=0.01).needs == {"ref_logp"}
    check_algorithm_transforms(algorithms.mdpo(step_size=0.5))
    # the floored schedule under jit (a traced step) == eager, before and past the horizon
    alg = algorithms.mdpo(num_updates=10)
    jitted = jax.jit(lambda step: _loss_and_grad(alg, _batch(), step))
    for step in (0, 7, 10, 25):
        for a, b in zip(jitted(jnp.int32(step)), _loss_and_grad(alg, _batch(), step)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_mdpo_several_updates_on_a_tiny_model():
    metrics = assert_trained(algorithms.mdpo(learning_rate=1e-2, num_updates=100, num_epochs=3),
                             expected_metrics={"pg", "mirror_kl", "mirror_kl_coef", "ratio_mean", "loss"})
    # π_old is recomputed once; later epochs move π_θ away from it, so the KL is positive
    assert float(metrics["mirror_kl"]) > 0.0
    np.testing.assert_allclose(metrics["mirror_kl_coef"], 1.0)  # step 0: 1/t_0 = 1

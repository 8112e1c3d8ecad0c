"""ROVER (polrl.algorithms.rover): the Q-regression by hand (token and response level, clip), the
next-state term by hand from tiny logits, REINFORCE at π_old = π_θ (one update per batch: as
before the next-state term), the transform contract with the trainer's means, and the authors'
four-minibatch recipe on a tiny model."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms, ops
from polrl.algorithms.rover import rover_q_regression
from polrl.train import steps
from alg_testing import (apply, assert_trained, check_algorithm_transforms, check_transform_contract, hand_batch,
                         rollout_batch, scored, tiny_model, train_once)

MASK = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
LOGP = np.array([[-1.0, -0.5, -2.0], [-0.2, -1.5, -9.0]], np.float32)
OLD = np.array([[-1.2, -0.5, -1.0], [-0.3, -1.0, -9.0]], np.float32)  # log ρ = (.2, 0, −1), (.1, −.5, ·)
ADV = np.array([[1.0, 1.0, 1.0], [-0.5, -0.5, 0.0]], np.float32)


def _batch(**kw):
    return hand_batch(MASK, logp_bt=LOGP, old_logp_bt=OLD, adv_bt=ADV, **kw)


def test_token_level_q_regression():
    # ρ = 2: q = 2·log ρ = (.4, 0, −2), (.2, −1, ·);  L = (q − A)² = (.36, 1, 9), (.49, .25, ·)
    out = apply(rover_q_regression(rho=2.0, next_q_scale=0.0), _batch())
    np.testing.assert_allclose(out.terms["rover"] * MASK, [[0.36, 1.0, 9.0], [0.49, 0.25, 0.0]], rtol=1e-5)
    np.testing.assert_allclose(out.metrics["q_mean"], (0.4 + 0 - 2 + 0.2 - 1) / 5, rtol=1e-5)
    # dL/dlog π = 2ρ(q − A)
    grad = jax.grad(lambda lp: (apply(rover_q_regression(rho=2.0, next_q_scale=0.0), _batch().replace(logp_bt=lp)).terms["rover"] * MASK).sum())(jnp.asarray(LOGP))
    np.testing.assert_allclose(grad, 4.0 * np.array([[-0.6, -1.0, -3.0], [0.7, -0.5, 0.0]]), rtol=1e-5)


def test_clip_freezes_q_beyond_log_one_plus_eps():
    # ε = .2: bounds log 1.2 = .18232, log .8 = −.22314 (ρ = 1, q = log ρ)
    #   (0, 0) q = .2 > .18232 and A = 1 > q → frozen at .18232;  (0, 2) q = −1 < A → free
    #   (1, 1) q = −.5 < −.22314 and A = −.5 ≥ q → free (target not below q)
    out = apply(rover_q_regression(clip=0.2, next_q_scale=0.0), _batch())
    hi = math.log(1.2)
    expected = [[(hi - 1) ** 2, 1.0, 4.0], [(0.1 + 0.5) ** 2, 0.0, 0.0]]
    np.testing.assert_allclose(out.terms["rover"] * MASK, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.metrics["rover_clip_frac"], 1 / 5)
    grad = jax.grad(lambda lp: (apply(rover_q_regression(clip=0.2, next_q_scale=0.0), _batch().replace(logp_bt=lp)).terms["rover"] * MASK).sum())(jnp.asarray(LOGP))
    assert float(grad[0, 0]) == 0.0 and float(grad[0, 2]) != 0.0
    # below: q = −1 at (0, 2) with A = −2 < q and q < log .8 → frozen at log .8
    low = apply(rover_q_regression(clip=0.2, next_q_scale=0.0), _batch().replace(adv_bt=jnp.asarray(ADV).at[0, 2].set(-2.0)))
    np.testing.assert_allclose(low.terms["rover"][0, 2], (math.log(0.8) + 2.0) ** 2, rtol=1e-5)


def test_response_level_loss():
    # mean q per row: (.2 + 0 − 1)/3 = −.26667, (.1 − .5)/2 = −.2; A = 1, −.5
    out = apply(rover_q_regression(response_level=True, next_q_scale=0.0), _batch())
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


# ----------------------------------------------------------------------------- next-state term

L53 = math.log(5.0 / 3.0)


def _means():
    """m = (1/V) Σ_v log softmax(z)_v on V = 3: z = (0, 0, 0) → −log 3 (uniform), z = (log 8, 0, 0)
    → π = (.8, .1, .1), m = log(.8 · .1 · .1)/3 = log .2 = −log 5 (by hand)."""
    u, p = [0.0, 0.0, 0.0], [math.log(8.0), 0.0, 0.0]
    theta = np.array([[u, p, u], [p, p, p]])  # m_θ = (−log 3, −log 5, −log 3), (−log 5, −log 5, ·)
    old = np.array([[u, u, p], [u, u, u]])    # m_old = (−log 3, −log 3, −log 5), (−log 3, −log 3, ·)
    with jax.enable_x64(True):
        m_theta, m_old = (np.asarray(ops.mean_log_prob_from_logits(jnp.asarray(z, jnp.float64))) for z in (theta, old))
    np.testing.assert_allclose(m_theta, [[-math.log(3), -math.log(5), -math.log(3)], [-math.log(5)] * 3], rtol=1e-12)
    np.testing.assert_allclose(m_old, [[-math.log(3), -math.log(3), -math.log(5)], [-math.log(3)] * 3], rtol=1e-12)
    return {"mean_logp_bt": m_theta, "old_mean_logp_bt": m_old}


def test_next_state_term_by_hand_from_tiny_logits():
    # ρ = 2, s = .5, ℓ = log(5/3):  m_θ − m_old = (0, −ℓ, ℓ), (−ℓ, −ℓ, −ℓ); V = ρ·that·mask
    #   next_t = s·V_{t+1} (0 at the last position):  row 0 (−ℓ, ℓ, 0);  row 1 (−ℓ, 0, 0) — its last
    #   real token's next state is padding, so 0 although m_θ ≠ m_old there
    batch = hand_batch(MASK, aux=_means(), logp_bt=LOGP, old_logp_bt=OLD, adv_bt=ADV)
    t = rover_q_regression(rho=2.0, next_q_scale=0.5)
    assert t.needs == {"old_mean_logp"}
    out = apply(t, batch)
    # q = 2·log ρ = (.4, 0, −2), (.2, −1, ·);  target = A + next = (1 − ℓ, 1 + ℓ, 1), (−.5 − ℓ, −.5, ·)
    q = np.array([[0.4, 0.0, -2.0], [0.2, -1.0, 0.0]])
    target = np.array([[1 - L53, 1 + L53, 1.0], [-0.5 - L53, -0.5, 0.0]])
    np.testing.assert_allclose(out.terms["rover"] * MASK, (q - target) ** 2 * MASK, rtol=1e-5)
    np.testing.assert_allclose(out.metrics["next_q_mean"], -L53 / 5, rtol=1e-5)
    # the target is detached: dL/dlog π = 2ρ(q − target), and no gradient reaches m_θ
    def loss(lp, m):
        aux = {**batch.aux, "mean_logp_bt": m}
        return (apply(t, batch.replace(logp_bt=lp, aux=aux)).terms["rover"] * MASK).sum()

    g_logp, g_mean = jax.grad(loss, argnums=(0, 1))(jnp.asarray(LOGP), batch.aux["mean_logp_bt"])
    np.testing.assert_allclose(g_logp, 4.0 * (q - target) * MASK, rtol=1e-5, atol=1e-6)
    assert not np.any(np.asarray(g_mean))
    # s = 1 doubles the term; the response-level loss regresses onto A alone (as the reference)
    full = apply(rover_q_regression(rho=2.0), batch)
    np.testing.assert_allclose(full.metrics["next_q_mean"], -2 * L53 / 5, rtol=1e-5)
    level = apply(rover_q_regression(rho=2.0, response_level=True), batch)
    plain = apply(rover_q_regression(rho=2.0, response_level=True, next_q_scale=0.0), batch)
    np.testing.assert_allclose(level.losses["rover"], plain.losses["rover"], rtol=1e-6)


def test_next_state_term_needs_the_trainer_means():
    batch = hand_batch(MASK, logp_bt=LOGP, old_logp_bt=OLD, adv_bt=ADV)  # π_old recomputed, no means
    with pytest.raises(ValueError, match="old_mean_logp"):
        apply(rover_q_regression(), batch)
    # π_old = π_θ (not recomputed): the term is exactly 0 and nothing is read
    out = apply(rover_q_regression(), batch.replace(old_logp_bt=None))
    assert float(out.metrics["next_q_mean"]) == 0.0


def test_one_update_per_batch_is_unchanged():
    # one update: π_old = π_θ, the next-state term is 0 and the loss and its gradient are the
    # target_adv_only ones (the REINFORCE step above), in float64
    with jax.enable_x64(True):
        batch = hand_batch(MASK, logp_bt=LOGP, adv_bt=ADV)
        batch = batch.replace(logp_bt=jnp.asarray(LOGP, jnp.float64), adv_bt=jnp.asarray(ADV, jnp.float64))

        def value_and_grad(alg):
            def loss(lp):
                out, _ = alg.objective.apply(batch.replace(logp_bt=lp), alg.objective.init())
                return sum(out.losses.values())

            return jax.value_and_grad(loss)(batch.logp_bt)

        new, old = algorithms.rover(num_minibatches=1), algorithms.rover(num_minibatches=1, next_q_scale=0.0)
        (v_new, g_new), (v_old, g_old) = value_and_grad(new), value_and_grad(old)
        np.testing.assert_allclose(v_new, v_old, rtol=1e-14)
        np.testing.assert_allclose(g_new, g_old, rtol=1e-14)
        np.testing.assert_allclose(g_new, -2 * ADV.astype(np.float64) * MASK / 5, rtol=1e-12)  # token_mean of −2A
    # and the trainer runs no extra forward: π_old is not recomputed
    graphdef, params = tiny_model()
    alg = algorithms.rover(num_minibatches=1)
    state = steps.init_state(params, alg, jax.random.key(0))
    prepared, _ = jax.jit(functools.partial(steps.prepare, algorithm=alg, graphdef=graphdef))(state, rollout_batch())
    assert prepared.old_logp_bt is None and "old_mean_logp_bt" not in prepared.aux


def test_restrictions_and_contract():
    with pytest.raises(ValueError, match="clip"):
        rover_q_regression(clip=1.5)
    assert algorithms.rover().needs == {"old_mean_logp"}
    assert algorithms.rover(next_q_scale=0.0).needs == frozenset()
    alg = algorithms.rover(clip=0.2)
    assert (alg.num_epochs, alg.num_minibatches) == (1, 4)  # the authors' 128 / 32 prompts, one epoch
    check_algorithm_transforms(algorithms.rover(clip=0.2, next_q_scale=0.0))
    # the objective with the trainer's means: jit == no jit, no retrace, extras ignored
    rng = np.random.default_rng(0)

    def with_means(seed):
        batch = scored(rollout_batch(seed=seed), seed=seed)
        prepared, _ = alg.prepare.apply(batch, alg.prepare.init())
        means = {k: jnp.asarray(-2.0 + 0.1 * rng.normal(size=batch.mask_bt.shape), jnp.float32)
                 for k in ("mean_logp_bt", "old_mean_logp_bt")}
        return prepared.replace(aux={**prepared.aux, **means})

    out = check_transform_contract(alg.objective, with_means(0), with_means(1))
    assert out.terms == {} and float(out.metrics["next_q_mean"]) != 0.0


def test_authors_recipe_on_a_tiny_model():
    # the recipe's several steps per batch (here two epochs of two one-group minibatches: the tiny
    # batch has two groups); π_old and m_old are recomputed once, later steps regress a moved q
    # onto A + the moved next-state value
    alg = algorithms.rover(learning_rate=1e-2, num_epochs=2, num_minibatches=2)
    metrics = assert_trained(alg, expected_metrics={"rover", "q_mean", "next_q_mean", "loss", "grad_norm"})
    assert abs(float(metrics["q_mean"])) > 1e-5
    assert abs(float(metrics["next_q_mean"])) > 1e-6


def test_target_adv_only_several_updates_on_a_tiny_model():
    metrics = assert_trained(algorithms.rover(learning_rate=1e-2, next_q_scale=0.0, num_epochs=2, num_minibatches=1),
                             expected_metrics={"rover", "q_mean", "loss", "grad_norm"})
    assert abs(float(metrics["q_mean"])) > 1e-5 and "next_q_mean" not in metrics

"""SAPO (polrl.algorithms.sapo): the soft gate, with the gradient through it."""
import math

import jax
import numpy as np
import pytest

from polrl import algorithms
from polrl.algorithms.sapo import soft_gated_policy_gradient
from polrl.core import total_loss
from polrl.train import steps
from alg_testing import (
    apply, assert_trained, check_algorithm_transforms, check_transform_contract, hand_batch, rollout_batch, scored,
    tiny_model,
)

# ρ = [e^0.5, 1, e^−1], A = [+1, +1, −1] → τ = [τ_pos, τ_pos, τ_neg] = [1, 1, 1.05]
OLD = [[-1.0, -1.0, -1.0]]
LOGP = [[-0.5, -1.0, -2.0]]
ADV = [[1.0, 1.0, -1.0]]
RHO = [math.exp(0.5), 1.0, math.exp(-1.0)]
TAU = [1.0, 1.0, 1.05]
sigmoid = lambda x: 1.0 / (1.0 + math.exp(-x))
P = [sigmoid(tau * (rho - 1.0)) for tau, rho in zip(TAU, RHO)]  # [0.656722, 0.5, 0.339903]
W = [4 * p * (1 - p) for p in P]  # [0.901753, 1, 0.897476]


def _batch(logp=LOGP):
    return hand_batch([[1, 1, 1]], logp_bt=logp, old_logp_bt=OLD, adv_bt=ADV)


def test_soft_gate_by_hand():
    t = soft_gated_policy_gradient(tau_pos=1.0, tau_neg=1.05)
    out = apply(t, _batch())
    # L = −(4/τ)·σ(τ(ρ − 1))·A
    expected = [-(4 / tau) * p * a for tau, p, a in zip(TAU, P, ADV[0])]
    np.testing.assert_allclose(out.terms["pg"], [expected], rtol=1e-5)
    np.testing.assert_allclose(expected, [-2.626889, -2.0, 1.294869], rtol=1e-5)  # the numbers, for the reader
    np.testing.assert_allclose(out.metrics["gate_weight_mean"], sum(W) / 3, rtol=1e-5)
    np.testing.assert_allclose(out.metrics["gate_frac"], 0.0)  # every w > ½ this close to ρ = 1


def test_gradient_flows_through_the_gate():
    # ∂L/∂log π = −w·ρ·A with w = 4p(1 − p): the derivative of (4/τ)σ(τ(ρ−1)) is 4σ(1−σ)·ρ·(∂ρ/ρ)
    t = soft_gated_policy_gradient()
    grad = jax.grad(lambda lp: apply(t, _batch(lp)).terms["pg"].sum())(np.asarray(LOGP, np.float32))
    np.testing.assert_allclose(grad, [[-w * r * a for w, r, a in zip(W, RHO, ADV[0])]], rtol=1e-5)
    # far from ρ = 1 the gate closes: ρ = e^3 gives p = σ(e³ − 1), w = 4p(1 − p) ≈ 2e−8 < ½
    far = apply(t, _batch([[2.0, -1.0, -2.0]]))
    assert float(far.metrics["gate_frac"]) == pytest.approx(1 / 3)


def test_gradient_at_ratio_one_is_reinforce():
    graphdef, params = tiny_model()
    alg = algorithms.sapo()
    prepared = apply(alg.prepare, rollout_batch())
    assert prepared.old_logp_bt is None  # one update per batch: ρ = exp(log π − sg(log π)) = 1
    adv = np.asarray(prepared.adv_bt)
    assert np.abs(adv).max() > 0.5

    @jax.jit
    def grads(params):
        def sapo_loss(p):
            return total_loss(apply(alg.objective, prepared.replace(**steps.score(graphdef, p, prepared))))

        def reinforce_loss(p):  # −A·log π, token mean per sequence, mean over sequences
            logp, m = steps.score(graphdef, p, prepared)["logp_bt"], prepared.mask_bt
            return ((-adv * logp * m).sum(1) / m.sum(1)).mean()

        return jax.grad(sapo_loss)(params), jax.grad(reinforce_loss)(params)

    g_sapo, g_reinforce = grads(params)
    for a, b in zip(jax.tree.leaves(g_sapo), jax.tree.leaves(g_reinforce)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    assert max(float(np.abs(np.asarray(x)).max()) for x in jax.tree.leaves(g_reinforce)) > 1e-3


def test_bad_temperatures():
    with pytest.raises(ValueError, match="τ"):
        soft_gated_policy_gradient(tau_pos=0.0)


def test_contract_and_train_step():
    def make(seed):
        b = scored(rollout_batch(seed=seed), seed=seed)
        return b.replace(adv_bt=b.mask_bt * (1.0 - seed))

    check_transform_contract(soft_gated_policy_gradient(), make(0), make(1))
    check_algorithm_transforms(algorithms.sapo(kl_coef=0.05, kl_target=0.5, entropy_coef=0.01))
    assert_trained(algorithms.sapo(learning_rate=1e-2, num_minibatches=2), ["pg", "gate_frac", "gate_weight_mean"])

"""CISPO (polrl.algorithms.cispo): a clipped, stop-gradient importance weight times A·log π."""
import jax
import numpy as np

from polrl import algorithms, objectives
from polrl.algorithms.cispo import clipped_is_weight_policy_gradient
from alg_testing import (
    apply, assert_trained, check_algorithm_transforms, check_transform_contract, hand_batch, rollout_batch, scored,
)

# ρ = e^{log π − log π_old} = [e^0.5, 1, e^−1] = [1.648721, 1, 0.367879], A = [+1, +1, −1]
OLD = [[-1.0, -1.0, -1.0]]
LOGP = [[-0.5, -1.0, -2.0]]
ADV = [[1.0, 1.0, -1.0]]


def _pg(t, logp):
    return apply(t, hand_batch([[1, 1, 1]], logp_bt=logp, old_logp_bt=OLD, adv_bt=ADV)).terms["pg"]


def test_clipped_weight_by_hand():
    t = clipped_is_weight_policy_gradient(eps_high=0.2)  # no lower bound
    out = apply(t, hand_batch([[1, 1, 1]], logp_bt=LOGP, old_logp_bt=OLD, adv_bt=ADV))
    # ŵ = [min(1.648721, 1.2), 1, 0.367879] = [1.2, 1, 0.367879];  L = −ŵ·A·log π
    #   = [−1.2·1·(−0.5), −1·1·(−1), −0.367879·(−1)·(−2)] = [0.6, 1, −0.735759]
    np.testing.assert_allclose(out.terms["pg"], [[0.6, 1.0, -0.735759]], rtol=1e-5)
    np.testing.assert_allclose(out.metrics["clip_frac"], 1 / 3)
    # every token keeps a gradient −ŵ·A (PPO's clip would give the first token 0)
    grad = jax.grad(lambda lp: _pg(t, lp).sum())(np.asarray(LOGP, np.float32))
    np.testing.assert_allclose(grad, [[-1.2, -1.0, 0.367879]], rtol=1e-5)
    ppo = objectives.clipped_policy_gradient(eps_low=0.2)
    ppo_grad = jax.grad(lambda lp: _pg(ppo, lp).sum())(np.asarray(LOGP, np.float32))
    assert ppo_grad[0, 0] == 0.0
    # a lower bound 1 − 0.2 truncates the third weight to 0.8
    low = apply(clipped_is_weight_policy_gradient(eps_low=0.2, eps_high=0.2),
                hand_batch([[1, 1, 1]], logp_bt=LOGP, old_logp_bt=OLD, adv_bt=ADV))
    np.testing.assert_allclose(low.terms["pg"][0, 2], -0.8 * 2.0, rtol=1e-6)
    np.testing.assert_allclose(low.metrics["clip_frac"], 2 / 3)


def test_gradient_at_ratio_one_is_reinforce():
    # old_logp_bt None → π_old = sg(π_θ), ρ = 1, ŵ = 1: ∂L/∂log π = −A
    t = clipped_is_weight_policy_gradient()
    batch = hand_batch([[1, 1, 1]], logp_bt=LOGP, adv_bt=ADV)
    grad = jax.grad(lambda lp: apply(t, batch.replace(logp_bt=lp)).terms["pg"].sum())(batch.logp_bt)
    np.testing.assert_allclose(grad, -np.asarray(ADV), rtol=1e-6)


def test_noun_defaults():
    alg = algorithms.cispo()
    assert alg.needs == frozenset()
    out = apply(alg.objective, hand_batch([[1, 1, 1]], logp_bt=LOGP, old_logp_bt=OLD, adv_bt=ADV))
    np.testing.assert_allclose(out.losses["pg"], (0.6 + 1.0 - 0.735759) / 3, rtol=1e-5)  # token_mean


def test_contract_and_train_step():
    def make(seed):
        b = scored(rollout_batch(seed=seed), seed=seed)
        return b.replace(adv_bt=b.mask_bt * (1.0 - seed))

    check_transform_contract(clipped_is_weight_policy_gradient(eps_low=0.1), make(0), make(1))
    check_algorithm_transforms(algorithms.cispo(kl_coef=0.05, correction="sequence_truncate"))
    assert_trained(algorithms.cispo(learning_rate=1e-2, num_minibatches=2), ["pg", "clip_frac", "ratio_mean"])

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


def test_mask_variant_by_hand():
    # M = 0 where A > 0 and ρ > 1 + .2 (token 0: ρ = 1.648721) or A < 0 and ρ < 1 − .2 (token 2: .367879)
    t = clipped_is_weight_policy_gradient(eps_high=0.2, mask_eps_low=0.2, mask_eps_high=0.2)
    out = apply(t, hand_batch([[1, 1, 1]], logp_bt=LOGP, old_logp_bt=OLD, adv_bt=ADV))
    np.testing.assert_allclose(out.terms["pg"], [[0.0, 1.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(out.metrics["mask_frac"], 2 / 3)
    np.testing.assert_allclose(out.metrics["clip_frac"], 1 / 3)  # the weight truncation is unchanged
    grad = jax.grad(lambda lp: _pg(t, lp).sum())(np.asarray(LOGP, np.float32))
    np.testing.assert_allclose(grad, [[0.0, -1.0, 0.0]], rtol=1e-6)
    # one side only: ε_high^M = .2, no lower mask → token 2 keeps −ŵ·A·log π = −0.735759
    one = clipped_is_weight_policy_gradient(eps_high=0.2, mask_eps_high=0.2)
    out = apply(one, hand_batch([[1, 1, 1]], logp_bt=LOGP, old_logp_bt=OLD, adv_bt=ADV))
    np.testing.assert_allclose(out.terms["pg"], [[0.0, 1.0, -0.735759]], rtol=1e-5)
    assert "mask_frac" not in apply(clipped_is_weight_policy_gradient(), hand_batch(
        [[1, 1, 1]], logp_bt=LOGP, old_logp_bt=OLD, adv_bt=ADV)).metrics


def test_mask_variant_gradient_is_ppo_without_truncation():
    # unbounded weight + PPO's mask (ε = .2 / .28): ∇ = −sg(ρ)·A·∇log π·M = PPO's clipped-surrogate gradient
    batch = scored(rollout_batch(), seed=2)
    batch = batch.replace(adv_bt=batch.mask_bt * np.linspace(-1.5, 1.5, 8, dtype=np.float32)[:, None],
                          logp_bt=batch.old_logp_bt + 0.3 * np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32))
    cis = clipped_is_weight_policy_gradient(eps_high=float("inf"), mask_eps_low=0.2, mask_eps_high=0.28)
    ppo = objectives.clipped_policy_gradient(eps_low=0.2, eps_high=0.28)
    grad = lambda t: jax.grad(lambda lp: (apply(t, batch.replace(logp_bt=lp)).terms["pg"] * batch.mask_bt).sum())(batch.logp_bt)
    g_cis, g_ppo = grad(cis), grad(ppo)
    np.testing.assert_allclose(g_cis, g_ppo, rtol=1e-5, atol=1e-7)
    assert (np.asarray(g_ppo) == 0).sum() > 4 and np.abs(np.asarray(g_ppo)).max() > 0.1  # some clipped, some not


def test_bad_arguments_name_the_field():
    import pytest

    for name in ("eps_high", "mask_eps_low", "mask_eps_high"):
        with pytest.raises(ValueError, match=name):
            algorithms.cispo(**{name: -0.1})


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

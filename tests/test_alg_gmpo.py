"""GMPO (polrl.algorithms.gmpo): the geometric mean of sign-aware, log-space-clipped token ratios."""
import math

import jax
import numpy as np
import pytest

from polrl import algorithms, objectives
from polrl.algorithms.gmpo import geometric_mean_policy_gradient
from polrl.core import total_loss
from alg_testing import (
    apply, assert_trained, check_algorithm_transforms, check_transform_contract, hand_batch, rollout_batch, scored,
)

MASK = [[1, 1, 1], [1, 1, 0]]
OLD = np.array([[-1.0, -1.0, -1.0], [-1.0, -1.0, 0.0]])
# log ρ: row 0 (A = +1) [.3, .6, −.1], row 1 (A = −1) [−.5, .2] (+ junk on padding)
LOGP = OLD + np.array([[0.3, 0.6, -0.1], [-0.5, 0.2, 9.0]])
ADV = [[1.0, 1.0, 1.0], [-1.0, -1.0, 0.0]]


def _batch():
    return hand_batch(MASK, logp_bt=LOGP, old_logp_bt=OLD, adv_bt=ADV)


def test_sequence_loss_by_hand():
    out = apply(geometric_mean_policy_gradient(eps_low=0.4, eps_high=0.4), _batch())
    # row 0: A > 0 caps log ρ at .4 → [.3, .4, −.1], mean .2 → L0 = −e^.2 = −1.2214028
    # row 1: A < 0 floors log ρ at −.4 → [−.4, .2], mean −.1 → L1 = +e^−.1 = 0.9048374
    l0, l1 = -math.exp(0.2), math.exp(-0.1)
    pg = np.asarray(out.terms["pg"])
    np.testing.assert_allclose(pg[0], [l0] * 3, rtol=1e-6)
    np.testing.assert_allclose(pg[1, :2], [l1] * 2, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["clip_frac"], 2 / 5, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["seq_ratio_mean"], (math.exp(0.2) + math.exp(-0.1)) / 2, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["seq_ratio_max"], math.exp(0.2), rtol=1e-6)
    # the noun: mean over sequences, ½(L0 + L1); gradient ½ · (−A_i r_i / |y_i|) on unclipped tokens
    noun = algorithms.gmpo()
    loss = lambda lp: total_loss(apply(noun.objective, _batch().replace(logp_bt=lp)))
    np.testing.assert_allclose(loss(_batch().logp_bt), (l0 + l1) / 2, rtol=1e-6)
    g0, g1 = -math.exp(0.2) / 3 / 2, math.exp(-0.1) / 2 / 2
    np.testing.assert_allclose(jax.grad(loss)(_batch().logp_bt), [[g0, 0.0, g0], [0.0, g1, 0.0]], rtol=1e-5, atol=1e-8)


def test_sign_aware_clip_only_pushes_back():
    # A > 0 with a low ratio and A < 0 with a high one are NOT clipped (like PPO)
    batch = hand_batch([[1, 1]], logp_bt=[[-1.0 - 0.7, -1.0 + 0.7]], old_logp_bt=[[-1.0, -1.0]], adv_bt=[[1.0, 1.0]])
    out = apply(geometric_mean_policy_gradient(eps_low=0.4, eps_high=0.4), batch)
    # log ρ = [−.7, .4 (capped)], mean −.15
    np.testing.assert_allclose(out.terms["pg"], [[-math.exp(-0.15)] * 2], rtol=1e-6)
    np.testing.assert_allclose(out.metrics["clip_frac"], 0.5)


@pytest.mark.parametrize("adv", [1.5, -0.7])
def test_one_token_is_ppo_with_a_log_space_range(adv):
    # one token per sequence: −A·clip'(ρ) = PPO's max(−Aρ, −A clip(ρ, e^−.4, e^.4))
    log_ratio = np.linspace(-1.0, 1.0, 9, dtype=np.float32)[:, None]
    batch = hand_batch(np.ones((9, 1)), logp_bt=log_ratio - 1.0, old_logp_bt=np.full((9, 1), -1.0), adv_bt=np.full((9, 1), adv))
    ppo = objectives.clipped_policy_gradient(eps_low=1 - math.exp(-0.4), eps_high=math.exp(0.4) - 1)
    gmpo = geometric_mean_policy_gradient(eps_low=0.4, eps_high=0.4)

    def value_and_grad(t):
        f = lambda lp: apply(t, batch.replace(logp_bt=lp)).terms["pg"].sum()
        return apply(t, batch).terms["pg"], jax.grad(f)(batch.logp_bt)

    (v1, g1), (v2, g2) = value_and_grad(gmpo), value_and_grad(ppo)
    np.testing.assert_allclose(v1, v2, rtol=1e-5)
    np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-7)
    assert (np.asarray(g1) == 0).sum() == 3  # clipped: log ρ ∈ {.5, .75, 1} for A > 0, {−.5, −.75, −1} for A < 0


def test_gradient_at_ratio_one_is_length_normalised_reinforce():
    # π_old = sg(π_θ): ∂L_i/∂log π_t = −Ā_i / |y_i|
    batch = hand_batch(MASK, logp_bt=LOGP, adv_bt=ADV)
    t = geometric_mean_policy_gradient()
    grad = jax.grad(lambda lp: apply(t, batch.replace(logp_bt=lp)).terms["pg"][:, 0].sum())(batch.logp_bt)
    np.testing.assert_allclose(grad, [[-1 / 3] * 3, [0.5, 0.5, 0.0]], rtol=1e-6)


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="eps_low"):
        geometric_mean_policy_gradient(eps_low=-0.1)
    with pytest.raises(ValueError, match="eps_high"):
        algorithms.gmpo(eps_high=-1.0)


def test_contract_and_train_step():
    def make(seed):
        b = scored(rollout_batch(seed=seed), seed=seed)
        return b.replace(adv_bt=b.mask_bt * (1.0 - 2 * seed))

    check_transform_contract(geometric_mean_policy_gradient(eps_low=0.05, eps_high=0.05), make(0), make(1))
    check_algorithm_transforms(algorithms.gmpo(kl_coef=0.05))
    metrics = assert_trained(algorithms.gmpo(learning_rate=1e-2, num_minibatches=2), ["pg", "clip_frac", "seq_ratio_mean"])
    assert metrics["seq_ratio_max"] > 1.0

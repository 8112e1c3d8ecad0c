"""REINFORCE++ (polrl.algorithms.reinforce_pp): KL-shaped returns, global normalization."""
import numpy as np
import pytest

from polrl import algorithms, objectives
from polrl.algorithms.reinforce_pp import reward_advantage
from alg_testing import apply, assert_trained, check_algorithm_transforms, check_transform_contract, hand_batch, rollout_batch

MASK = [[1, 1, 1], [1, 1, 0]]
# k1 = log π_old − log π_ref: row 0 [0.5, 0, −0.5], row 1 [0, 1]
OLD = [[-1.0, -1.0, -1.0], [-2.0, -2.0, 0.0]]
REF = [[-1.5, -1.0, -0.5], [-2.0, -3.0, 7.0]]


def _whiten(values):
    """(x − mean) / √(unbiased var + 1e-8) over the listed valid values."""
    x = np.asarray(values, np.float64)
    return (x - x.mean()) / np.sqrt(x.var(ddof=1) + 1e-8)


def test_reinforce_pp_advantage_by_hand():
    alg = algorithms.reinforce_pp(kl_coef=0.1)
    assert alg.needs == {"ref_logp", "old_logp"}  # k1 of π_old vs π_ref, in the reward
    out = apply(alg.prepare, hand_batch(MASK, reward_b=[1.0, 0.0], old_logp_bt=OLD, ref_logp_bt=REF))
    # A_t = R − β Σ_{s≥t} kl_s: row 0 1 − 0.1·[0, −0.5, −0.5] = [1, 1.05, 1.05]; row 1 0 − 0.1·[1, 1] = [−0.1, −0.1]
    # then normalized over the 5 valid tokens of the batch (mean 0.58, unbiased std 0.621088)
    expected = _whiten([1.0, 1.05, 1.05, -0.1, -0.1])
    np.testing.assert_allclose(np.asarray(out.adv_bt)[0], expected[:3], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out.adv_bt)[1, :2], expected[3:], rtol=1e-5)
    assert float(out.adv_bt[1, 2]) == 0.0
    np.testing.assert_allclose(expected[0], (1.0 - 0.58) / 0.621088, rtol=1e-5)


def test_baseline_variant_by_hand():
    alg = algorithms.reinforce_pp(baseline=True, kl_coef=0.1)
    assert alg.needs == {"ref_logp"}  # k2 in the loss
    mask = [[1, 1], [1, 0], [1, 1], [1, 1]]
    batch = hand_batch(mask, reward_b=[1.0, 0.0, 1.0, 1.0], group_b=[0, 0, 1, 1])
    out = apply(alg.prepare, batch)
    # R − mean_g R = [0.5, −0.5, 0, 0] on the valid tokens [0.5, 0.5, −0.5, 0, 0, 0, 0], then normalized
    expected = _whiten([0.5, 0.5, -0.5, 0, 0, 0, 0])
    np.testing.assert_allclose(np.asarray(out.adv_bt)[np.asarray(mask) > 0], expected, rtol=1e-5, atol=1e-6)
    # the objective holds β·k2 in the loss, the same term as objectives.kl_penalty(k2)
    scored = out.replace(logp_bt=np.full((4, 2), -1.0, np.float32), ref_logp_bt=np.full((4, 2), -1.5, np.float32))
    loss = apply(alg.objective, scored).losses
    reference = apply(objectives.kl_penalty(coef=0.1, estimator="k2"), scored).terms["kl"]
    np.testing.assert_allclose(loss["kl"], float(np.asarray(reference)[np.asarray(mask) > 0].mean()), rtol=1e-6)  # 0.1·½·0.25


def test_placement_overrides():
    assert algorithms.reinforce_pp(kl_in="loss").needs == {"ref_logp"}
    assert algorithms.reinforce_pp(baseline=True, kl_in="reward").needs == {"ref_logp", "old_logp"}
    assert algorithms.reinforce_pp(kl_coef=0.0).needs == frozenset()
    with pytest.raises(ValueError, match="k5"):
        algorithms.reinforce_pp(kl_estimator="k5")


def test_contract_and_train_step():
    check_transform_contract(reward_advantage(), rollout_batch(seed=0), rollout_batch(seed=1))
    check_algorithm_transforms(algorithms.reinforce_pp(kl_target=1.0, correction="token_truncate"))
    check_algorithm_transforms(algorithms.reinforce_pp(baseline=True, kl_target=1.0))
    metrics = assert_trained(algorithms.reinforce_pp(learning_rate=1e-2), ["pg", "kl_reward/kl", "kl_reward/coef"])
    np.testing.assert_allclose(metrics["kl_reward/kl"], 0.0, atol=1e-6)  # first step: π_old = π_ref

"""RLOO (polrl.algorithms.rloo): the leave-one-out baseline."""
import numpy as np
import pytest

from polrl import algorithms
from polrl.algorithms.rloo import leave_one_out_advantage
from alg_testing import apply, assert_trained, check_algorithm_transforms, check_transform_contract, hand_batch, rollout_batch


def test_leave_one_out_advantage_by_hand():
    # group 0 rewards [1, 0, 2]: baselines [(0+2)/2, (1+2)/2, (1+0)/2] = [1, 1.5, 0.5] → A = [0, −1.5, 1.5]
    # group 1 is a single row: no other member, A = 0
    batch = hand_batch([[1, 1], [1, 0], [1, 1], [1, 1]], reward_b=[1.0, 0.0, 2.0, 7.0], group_b=[0, 0, 0, 1])
    out = apply(leave_one_out_advantage(), batch)
    np.testing.assert_allclose(out.adv_bt, [[0.0, 0.0], [-1.5, 0.0], [1.5, 1.5], [0.0, 0.0]], atol=1e-6)


def test_rloo_is_rescaled_dr_grpo_advantage():
    # RLOO = G/(G−1) · Dr.GRPO advantage for groups of equal size G (the equivalence)
    G = 4
    rng = np.random.default_rng(0)
    reward = rng.normal(size=3 * G).astype(np.float32)
    reward[2 * G:] = 0.3  # a flat group: both 0
    mask = np.ones((3 * G, 3), np.float32)
    mask[1, 2:] = 0
    batch = hand_batch(mask, reward_b=reward, group_b=np.arange(3 * G) // G)
    rloo = apply(algorithms.rloo().prepare, batch).adv_bt
    dr = apply(algorithms.dr_grpo(max_len=3).prepare, batch).adv_bt
    np.testing.assert_allclose(rloo, G / (G - 1) * np.asarray(dr), rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(rloo)).max() > 0.1


def test_defaults_and_kl_in_reward():
    alg = algorithms.rloo()
    assert alg.needs == frozenset()  # β = 0 by default
    alg = algorithms.rloo(kl_coef=0.05)  # the paper's placement: k1 in the reward
    assert alg.needs == {"ref_logp", "old_logp"}
    out = check_algorithm_transforms(alg)
    assert "kl" not in out.losses and "kl_reward/kl" in out.metrics
    with pytest.raises(ValueError, match="correction"):
        algorithms.rloo(correction="tis")


def test_contract_and_train_step():
    make = lambda seed: rollout_batch(seed=seed)
    check_transform_contract(leave_one_out_advantage(), make(0), make(1))
    check_algorithm_transforms(algorithms.rloo(correction="sequence_mask"))
    assert_trained(algorithms.rloo(learning_rate=1e-2), ["pg", "clip_frac"])

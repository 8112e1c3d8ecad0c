"""OPO (polrl.algorithms.opo): the length-weighted group baseline, strictly on-policy."""
import jax
import numpy as np
import pytest

from polrl import advantages, algorithms
from polrl.algorithms.opo import length_weighted_baseline_advantage
from polrl.core import total_loss
from alg_testing import (
    apply, assert_trained, check_algorithm_transforms, check_transform_contract, hand_batch, rollout_batch,
)

# group 0: rewards (1, 0, 1) with lengths (2, 4, 1); group 1: one row
MASK = [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0]]
REWARD = [1.0, 0.0, 1.0, 1.0]
GROUP = [0, 0, 0, 1]


def test_advantage_by_hand():
    out = apply(length_weighted_baseline_advantage(), hand_batch(MASK, reward_b=REWARD, group_b=GROUP))
    # b = (2·1 + 4·0 + 1·1) / 7 = 3/7: A = (4/7, −3/7, 4/7); the group of one → 0
    expected = np.array([4 / 7, -3 / 7, 4 / 7, 0.0])[:, None] * np.array(MASK)
    np.testing.assert_allclose(out.adv_bt, expected, rtol=1e-6, atol=1e-7)


def test_equal_lengths_give_the_group_mean():
    batch = rollout_batch().replace(mask_bt=np.ones((8, 4), np.float32))
    ours = apply(length_weighted_baseline_advantage(), batch).adv_bt
    dr_grpo = apply(advantages.group_advantage(scale="none"), batch).adv_bt
    np.testing.assert_allclose(ours, dr_grpo, rtol=1e-6, atol=1e-7)
    # ragged rows: longer rows pull the baseline toward their reward
    ragged = apply(length_weighted_baseline_advantage(), rollout_batch()).adv_bt
    assert not np.allclose(ragged, apply(advantages.group_advantage(scale="none"), rollout_batch()).adv_bt, atol=1e-3)


def test_update_is_reinforce():
    alg = algorithms.opo()
    batch = apply(alg.prepare, hand_batch(MASK, reward_b=REWARD, group_b=GROUP)).replace(
        logp_bt=np.full((4, 4), -1.0, np.float32))
    out = apply(alg.objective, batch)
    np.testing.assert_allclose(out.metrics["ratio_mean"], 1.0)
    # token_mean over the 10 valid tokens of −A·ρ with ρ = 1: gradient −A/10
    g = jax.grad(lambda lp: total_loss(apply(alg.objective, batch.replace(logp_bt=lp))))(batch.logp_bt)
    np.testing.assert_allclose(g, -np.asarray(batch.adv_bt) / 10, rtol=1e-6, atol=1e-8)


def test_strictly_on_policy():
    for name in ("num_epochs", "num_minibatches"):
        with pytest.raises(ValueError, match=name):
            algorithms.opo(**{name: 2})
    alg = algorithms.opo()
    assert (alg.num_epochs, alg.num_minibatches, alg.needs) == (1, 1, frozenset())


def test_contract_and_train_step():
    check_transform_contract(length_weighted_baseline_advantage(), rollout_batch(seed=0), rollout_batch(seed=1))
    check_algorithm_transforms(algorithms.opo(kl_coef=0.05, entropy_coef=0.01))
    metrics = assert_trained(algorithms.opo(learning_rate=1e-2), ["pg", "ratio_mean"])
    np.testing.assert_allclose(metrics["ratio_mean"], 1.0, rtol=1e-6)

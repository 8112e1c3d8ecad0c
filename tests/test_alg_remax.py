"""ReMax (polrl.algorithms.remax): the greedy response's reward as the baseline."""
import numpy as np
import pytest

from polrl import algorithms
from polrl.algorithms.remax import greedy_baseline_advantage
from alg_testing import apply, assert_trained, check_algorithm_transforms, check_transform_contract, hand_batch, rollout_batch


GREEDY = {"greedy_reward_b": [0.5, 0.5, 1.0, 1.0]}


def test_greedy_baseline_advantage_by_hand():
    t = greedy_baseline_advantage()
    assert t.needs == frozenset()
    batch = hand_batch([[1, 1], [1, 0], [1, 1], [1, 1]], reward_b=[1.0, 0.0, 1.0, 0.0], aux=GREEDY)
    # A = r − r_greedy = [0.5, −0.5, 0, −1], broadcast over the valid tokens
    np.testing.assert_allclose(apply(t, batch).adv_bt, [[0.5, 0.5], [-0.5, 0.0], [0.0, 0.0], [-1.0, -1.0]])
    with pytest.raises(ValueError, match="greedy_reward_b.*with_greedy_baseline"):
        apply(t, hand_batch([[1]], reward_b=[1.0]))


def test_noun_collects_the_greedy_rollout():
    alg = algorithms.remax()
    assert alg.needs == frozenset() and alg.collector is not None
    assert algorithms.remax(kl_coef=0.05).needs == {"ref_logp", "old_logp"}


def test_loss_is_sequence_reinforce():
    # seq_mean_token_sum at ρ = 1: L = mean_i(−A_i · |y_i|) = (−0.5·2 + 0.5·1 − 0 + 1·2)/4 = 0.375
    batch = hand_batch([[1, 1], [1, 0], [1, 1], [1, 1]], reward_b=[1.0, 0.0, 1.0, 0.0],
                       aux=GREEDY, logp_bt=np.full((4, 2), -1.0))
    alg = algorithms.remax()
    out = apply(alg.objective, apply(alg.prepare, batch))
    np.testing.assert_allclose(out.losses["pg"], 0.375, rtol=1e-6)


def test_contract_and_train_step():
    check_transform_contract(greedy_baseline_advantage(), rollout_batch(seed=0), rollout_batch(seed=1))
    check_algorithm_transforms(algorithms.remax(kl_coef=0.05, kl_target=1.0))
    assert_trained(algorithms.remax(learning_rate=1e-2), ["pg"])

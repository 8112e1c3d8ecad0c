"""GPG (polrl.algorithms.gpg): α-corrected group advantages and the plain −A·log π loss."""
import jax
import numpy as np
import pytest

from polrl import algorithms
from polrl.algorithms.gpg import gpg_advantage, log_likelihood_policy_gradient
from polrl.core import total_loss
from alg_testing import (
    apply, assert_trained, check_algorithm_transforms, check_transform_contract, hand_batch, rollout_batch, scored,
)

# B = 10 rows: group 0 (1, 0, 0, 1), group 1 (1, 1, 1, 1) all equal, group 2 (.5, 0)
REWARD = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.0]
GROUP = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
CENTRED = np.array([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0, 0.25, -0.25])


def _batch():
    return hand_batch(np.ones((10, 2)), reward_b=REWARD, group_b=GROUP)


@pytest.mark.parametrize("alpha, value", [
    ("valid_rows", 10 / 6),      # M = 4 rows in the all-equal group: B/(B − M)
    ("nonzero_reward", 10 / 7),  # 7 rows with r ≠ 0 (verl)
    ("none", 1.0),
])
def test_advantage_by_hand(alpha, value):
    out = apply(gpg_advantage(alpha=alpha), _batch())
    np.testing.assert_allclose(out.adv_bt, np.repeat(value * CENTRED[:, None], 2, axis=1), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out.metrics["gpg_alpha"], value, rtol=1e-6)


def test_std_scale_and_all_flat_batch():
    # F_norm = unbiased std + 1e-6: group 0 std √(1/3), group 2 std .25·√2
    out = apply(gpg_advantage(scale="std", alpha="none"), _batch())
    expected = CENTRED / (np.array([3 ** -0.5] * 4 + [1.0] * 4 + [0.25 * 2 ** 0.5] * 2) + 1e-6)
    np.testing.assert_allclose(np.asarray(out.adv_bt)[:, 0], expected, rtol=1e-5)
    # no informative group: α = B/1 but every advantage is 0 (no NaN)
    flat = hand_batch(np.ones((4, 2)), reward_b=[1.0, 1.0, 0.0, 0.0], group_b=[0, 0, 1, 1])
    out = apply(gpg_advantage(), flat)
    np.testing.assert_array_equal(out.adv_bt, 0.0)
    np.testing.assert_allclose(out.metrics["gpg_alpha"], 4.0)


def test_loss_has_no_ratio():
    # L = −A·log π whatever π_old is: value and gradient −A
    logp, adv = [[-0.5, -2.0]], [[1.5, -1.0]]
    t = log_likelihood_policy_gradient()
    for old in (None, [[-3.0, 0.0]]):
        kw = {} if old is None else {"old_logp_bt": old}
        batch = hand_batch([[1, 1]], logp_bt=logp, adv_bt=adv, **kw)
        np.testing.assert_allclose(apply(t, batch).terms["pg"], [[0.75, -2.0]], rtol=1e-6)
        g = jax.grad(lambda lp: apply(t, batch.replace(logp_bt=lp)).terms["pg"].sum())(batch.logp_bt)
        np.testing.assert_allclose(g, [[-1.5, 1.0]], rtol=1e-6)


def test_noun_is_token_mean_reinforce_with_alpha():
    alg = algorithms.gpg()
    assert alg.needs == frozenset()
    batch = apply(alg.prepare, _batch()).replace(logp_bt=np.full((10, 2), -1.0, np.float32))
    # token mean of −A·log π = mean(A) over 20 tokens = α · Σ centred · 2 / 20 = 0
    np.testing.assert_allclose(total_loss(apply(alg.objective, batch)), 0.0, atol=1e-7)
    g = jax.grad(lambda lp: total_loss(apply(alg.objective, batch.replace(logp_bt=lp))))(batch.logp_bt)
    np.testing.assert_allclose(g, -np.repeat(10 / 6 * CENTRED[:, None], 2, axis=1) / 20, rtol=1e-5, atol=1e-8)


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="alpha"):
        algorithms.gpg(alpha="batch")
    with pytest.raises(ValueError, match="scale"):
        gpg_advantage(scale="mad")


def test_contract_and_train_step():
    check_transform_contract(gpg_advantage(), rollout_batch(seed=0), rollout_batch(seed=1))
    check_transform_contract(log_likelihood_policy_gradient(), scored(apply(gpg_advantage(), rollout_batch(seed=0))),
                             scored(apply(gpg_advantage(), rollout_batch(seed=1))))
    check_algorithm_transforms(algorithms.gpg(kl_coef=0.05, kl_in="reward"))
    assert_trained(algorithms.gpg(learning_rate=1e-2), ["pg", "gpg_alpha"])

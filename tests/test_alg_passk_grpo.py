"""pass@k GRPO (polrl.algorithms.passk): only each group's best sample gets the gap to the runner-up."""
import jax
import numpy as np
import pytest

from polrl import algorithms
from polrl.algorithms.passk import passk_advantage
from alg_testing import apply, check_algorithm_transforms, check_transform_contract, hand_batch, rollout_batch, train_once

# group 0: a tie for the maximum; group 1: distinct rewards; group 2: one row;
# group 3: binary, one success; group 4: binary, two successes
REWARD = [0.2, 1.0, 0.5, 1.0, 0.3, 0.9, 0.1, 0.5, 0.7, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0]
GROUP = [0, 0, 0, 0, 1, 1, 1, 1, 2, 3, 3, 3, 3, 4, 4, 4, 4]


def _adv(**kw):
    out = apply(passk_advantage(**kw), hand_batch(np.ones((17, 1)), reward_b=REWARD, group_b=GROUP))
    return np.asarray(out.adv_bt)[:, 0], out.metrics


def test_advantage_by_hand():
    adv, metrics = _adv(scale="none")
    expected = np.zeros(17)
    expected[5] = 0.9 - 0.5   # group 1: best .9, runner-up .5
    expected[11] = 1.0        # group 3: the only success; removing it loses the pass
    np.testing.assert_allclose(adv, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(metrics["passk_adv_frac"], 2 / 17, rtol=1e-6)
    # scale="std": ÷ (unbiased std + 1e-6); group 1 std of (.3, .9, .1, .5), group 3 std of (0, 0, 1, 0) = .5
    adv, _ = _adv()
    std1 = np.std([0.3, 0.9, 0.1, 0.5], ddof=1)
    np.testing.assert_allclose(adv[[5, 11]], [0.4 / (std1 + 1e-6), 1.0 / (0.5 + 1e-6)], rtol=1e-5)


def test_is_the_leave_one_out_gain_of_the_maximum():
    # A_i = max_j r_j − max_{j≠i} r_j for every row (brute force), random continuous rewards
    rng = np.random.default_rng(0)
    reward = rng.normal(size=12).astype(np.float32)
    group = np.repeat(np.arange(3), 4)
    out = apply(passk_advantage(scale="none"), hand_batch(np.ones((12, 1)), reward_b=reward, group_b=group))
    r = reward.astype(np.float64)
    expected = [r[group == group[i]].max() - max(r[j] for j in range(12) if group[j] == group[i] and j != i)
                for i in range(12)]
    np.testing.assert_allclose(np.asarray(out.adv_bt)[:, 0], expected, rtol=1e-5, atol=1e-6)


def test_noun_keeps_grpo_defaults():
    alg, grpo = algorithms.passk_grpo(), algorithms.grpo()
    assert alg.needs == grpo.needs == {"ref_logp"}
    with pytest.raises(ValueError, match="scale"):
        algorithms.passk_grpo(scale="max")


def test_contract_and_train_step():
    check_transform_contract(passk_advantage(), rollout_batch(seed=0), rollout_batch(seed=1))
    check_algorithm_transforms(algorithms.passk_grpo())
    # rollout_batch's groups both tie for the maximum (no signal): give each group a single best
    batch = rollout_batch().replace(reward_b=np.array([1, 0, 0, 0.5, 0.5, 0, 1, 0.2], np.float32))
    state, metrics, params = train_once(algorithms.passk_grpo(learning_rate=1e-2), batch)
    np.testing.assert_allclose(metrics["passk_adv_frac"], 2 / 8)
    assert {"pg", "kl"} <= set(metrics) and all(np.isfinite(v).all() for v in metrics.values())
    moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)))
    assert moved > 1e-4

"""Tests for polrl.ops.group."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import ops

# group 0: [1, 0, 1, 1];  group 1: [0.5] (a singleton);  group 2: [2, 2] (flat);  group 3: empty
REWARD_B = jnp.array([1.0, 0.0, 1.0, 1.0, 0.5, 2.0, 2.0])
GROUP_B = jnp.array([0, 0, 0, 0, 1, 2, 2], jnp.int32)
NUM_GROUPS = 4


def test_group_stats_hand_values():
    mean_b, std_b, count_b = ops.group_stats(REWARD_B, GROUP_B, NUM_GROUPS)
    # group 0: mean 3/4 = 0.75; deviations [0.25, −0.75, 0.25, 0.25]; Σ squares = 3·0.0625 +
    # 0.5625 = 0.75; unbiased var 0.75/3 = 0.25 → std 0.5. Singleton: std 0 (not 0/0).
    np.testing.assert_allclose(mean_b, [0.75, 0.75, 0.75, 0.75, 0.5, 2.0, 2.0])
    np.testing.assert_allclose(std_b, [0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(count_b, [4, 4, 4, 4, 1, 2, 2])
    # ddof = 0: var 0.75/4 = 0.1875 → std √0.1875 = 0.4330127
    _, std0_b, _ = ops.group_stats(REWARD_B, GROUP_B, NUM_GROUPS, ddof=0)
    np.testing.assert_allclose(std0_b[:4], [0.4330127] * 4, rtol=1e-6)


def test_group_advantages_std_hand_values():
    # group 0: (r − 0.75)/(0.5 + 1e-6) = [0.25, −0.75, 0.25, 0.25]/(0.5 + 1e-6)
    #        ≈ [0.5, −1.5, 0.5, 0.5]; the singleton and the flat group get exactly 0.
    expected = np.array([0.25, -0.75, 0.25, 0.25, 0, 0, 0]) / (0.5 + 1e-6)
    adv_b = ops.group_advantages(REWARD_B, GROUP_B, NUM_GROUPS)
    np.testing.assert_allclose(adv_b, expected, rtol=1e-6)
    assert np.all(np.asarray(adv_b)[4:] == 0.0)
    # ddof = 0: [0.25, −0.75, …] / (0.4330127 + 1e-6)
    adv0_b = ops.group_advantages(REWARD_B, GROUP_B, NUM_GROUPS, ddof=0)
    np.testing.assert_allclose(
        adv0_b[:4], np.array([0.25, -0.75, 0.25, 0.25]) / (0.4330127 + 1e-6), rtol=1e-5
    )


def test_group_advantages_none_hand_values():
    # Dr.GRPO: r − mean_g = [0.25, −0.75, 0.25, 0.25, 0, 0, 0]
    np.testing.assert_allclose(
        ops.group_advantages(REWARD_B, GROUP_B, NUM_GROUPS, scale="none"),
        [0.25, -0.75, 0.25, 0.25, 0.0, 0.0, 0.0],
    )


def test_group_advantages_flat_group_is_exactly_zero():
    # 0.1·3/3 ≠ 0.1 in floating point; the flat group must still give exact zeros, not noise/ε.
    reward_b = jnp.array([0.1, 0.1, 0.1, 0.7, 0.3])
    group_b = jnp.array([0, 0, 0, 1, 1], jnp.int32)
    for scale in ops.GROUP_SCALES:
        adv_b = ops.group_advantages(reward_b, group_b, 2, scale=scale)
        np.testing.assert_array_equal(adv_b[:3], 0.0)


def test_group_advantages_permutation_equivariant():
    perm = np.array([6, 2, 4, 0, 5, 1, 3])
    adv_b = ops.group_advantages(REWARD_B, GROUP_B, NUM_GROUPS)
    np.testing.assert_allclose(
        ops.group_advantages(REWARD_B[perm], GROUP_B[perm], NUM_GROUPS), adv_b[perm], rtol=1e-6
    )


def test_group_advantages_zero_mean_unit_std_per_group():
    rng = np.random.default_rng(0)
    reward_b = jnp.asarray(rng.normal(size=12), jnp.float32)
    group_b = jnp.asarray(np.repeat(np.arange(3), 4), jnp.int32)
    adv_b = np.asarray(ops.group_advantages(reward_b, group_b, 3, eps=0.0)).reshape(3, 4)
    np.testing.assert_allclose(adv_b.mean(axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(adv_b.std(axis=1, ddof=1), 1.0, rtol=1e-5)


def test_group_advantages_gradient_is_nan_free():
    grad = jax.grad(lambda r: jnp.sum(ops.group_advantages(r, GROUP_B, NUM_GROUPS) ** 2))(REWARD_B)
    assert np.all(np.isfinite(grad))


def test_group_advantages_unknown_scale():
    with pytest.raises(ValueError, match="std"):
        ops.group_advantages(REWARD_B, GROUP_B, NUM_GROUPS, scale="max")


def test_leave_one_out_baseline_hand_values():
    # group 0 sums to 3: baselines (3 − r)/3 = [2/3, 1, 2/3, 2/3]; the singleton's baseline is its
    # own reward 0.5; the flat group [2, 2] → 2.
    np.testing.assert_allclose(
        ops.leave_one_out_baseline(REWARD_B, GROUP_B, NUM_GROUPS),
        [2 / 3, 1.0, 2 / 3, 2 / 3, 0.5, 2.0, 2.0],
        rtol=1e-6,
    )


def test_rloo_is_rescaled_dr_grpo():
    # equal group size G: r − b_loo = G/(G − 1)·(r − mean_g)
    rng = np.random.default_rng(1)
    size, groups = 5, 3
    reward_b = jnp.asarray(rng.normal(size=size * groups), jnp.float32)
    group_b = jnp.asarray(np.tile(np.arange(groups), size), jnp.int32)  # interleaved ids
    rloo_b = reward_b - ops.leave_one_out_baseline(reward_b, group_b, groups)
    dr_grpo_b = ops.group_advantages(reward_b, group_b, groups, scale="none")
    np.testing.assert_allclose(rloo_b, size / (size - 1) * dr_grpo_b, atol=1e-5)


def test_zero_variance_groups():
    np.testing.assert_array_equal(
        ops.zero_variance_groups(REWARD_B, GROUP_B, NUM_GROUPS),
        [False, False, False, False, True, True, True],
    )


def test_group_shape_checks():
    with pytest.raises(AssertionError):
        ops.group_advantages(REWARD_B, GROUP_B[:-1], NUM_GROUPS)
    with pytest.raises(AssertionError):
        ops.group_advantages(REWARD_B, GROUP_B.astype(jnp.float32), NUM_GROUPS)

"""Tests for RL-PLUS (polrl.algorithms.rl_plus): the policy-row baseline by hand, the MIS ratio
and exploration-based advantage by hand and in the gradient, REINFORCE without expert rows,
jit == no-jit, and a train step with expert rows on the tiny model."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms
from polrl.algorithms.rl_plus import mixed_policy_loss, policy_baseline_advantage
from polrl.core import EXPERT, ON_POLICY, Batch
from polrl.models import TransformerConfig
from polrl.train import steps
from tiny_models import tiny_params

REWARD = np.array([1, 0, 0, 1, 0, 0, 0, 1], np.float32)
SOURCE = np.array([0, 0, 0, 1, 0, 0, 0, 1], np.int32)  # the last row of each group is the expert's
GROUP = (np.arange(8) // 4).astype(np.int32)


def _batch(mask=None, source=SOURCE, **fields) -> Batch:
    mask = np.ones((8, 2), np.float32) if mask is None else mask
    return Batch(prompt_bp=np.ones((8, 1), np.int32), prompt_valid_bp=np.ones((8, 1), bool),
                 response_bt=np.ones((8, 2), np.int32), mask_bt=mask, reward_b=REWARD, group_b=GROUP,
                 source_b=source, group_size=4, **fields)


def test_advantage_against_policy_rows():
    out, _ = policy_baseline_advantage().apply(_batch(), ())
    # group 0: policy rewards [1, 0, 0] → mean 1/3; the expert row (r = 1) gets 1 − 1/3
    # group 1: policy rewards [0, 0, 0] → mean 0; the expert row gets 1
    expected = np.array([2 / 3, -1 / 3, -1 / 3, 2 / 3, 0, 0, 0, 1])
    np.testing.assert_allclose(out.adv_bt[:, 0], expected, rtol=1e-6, atol=1e-7)
    std, _ = policy_baseline_advantage(scale="std").apply(_batch(), ())
    s0 = np.std([1, 0, 0], ddof=1)  # 0.57735; group 1's policy std is 0 → 1 (RL-PLUS)
    np.testing.assert_allclose(std.adv_bt[:, 0], np.r_[expected[:4] / (s0 + 1e-6), expected[4:] / (1 + 1e-6)], rtol=1e-5)
    # without source_b every row is the policy's: the plain Dr.GRPO advantage
    plain, _ = policy_baseline_advantage().apply(_batch(source=None), ())
    np.testing.assert_allclose(plain.adv_bt[:4, 0], REWARD[:4] - 0.5, rtol=1e-6)
    # a group with no policy row gets 0
    all_expert, _ = policy_baseline_advantage().apply(_batch(source=np.full(8, EXPERT, np.int32)), ())
    np.testing.assert_array_equal(all_expert.adv_bt, 0.0)


def test_loss_by_hand():
    logp = np.log(np.array([[0.5, 0.9], [0.2, 0.4]] * 4, np.float32))
    old = np.log(np.array([[0.4, 0.9], [0.25, 0.5]] * 4, np.float32))
    adv = np.array([1.0, -0.5, 0.5, 2.0, -1.0, 1.0, 0.5, 1.0], np.float32)[:, None] * np.ones((8, 2), np.float32)
    batch = _batch(logp_bt=jnp.asarray(logp), old_logp_bt=jnp.asarray(old), adv_bt=jnp.asarray(adv))
    out, _ = mixed_policy_loss().apply(batch, ())
    p, p_old = np.exp(logp), np.exp(old)
    on = -adv * p / p_old
    r_mis = 4 * p / (3 * p_old + 1)  # π / (½π_old + ½(π_old + 1)/2)
    off = -r_mis * adv * np.sqrt(1 - p)
    expected = np.where(SOURCE[:, None] == EXPERT, off, on)
    np.testing.assert_allclose(out.terms["pg"], expected, rtol=1e-5)
    # expert rows 3 (p = .2, .4 over p_old = .25, .5) and 7 (p = .2, .4 likewise)
    np.testing.assert_allclose(out.metrics["off_ratio_mean"], np.mean([4 * .2 / 1.75, 4 * .4 / 2.5]), rtol=1e-5)
    np.testing.assert_allclose(out.metrics["off_prob_mean"], 0.3, rtol=1e-5)


def test_expert_gradient_is_mis_times_exploration_advantage():
    """With π_old = π_θ (one update): ∂L/∂log π = −r_MIS A (1 − π)^½ on expert tokens, −A on policy tokens."""
    logp = np.log(np.array([[0.5, 0.9], [0.2, 0.4]] * 4, np.float32))
    adv = np.linspace(-1, 1, 8).astype(np.float32)[:, None] * np.ones((8, 2), np.float32)
    t = mixed_policy_loss()
    grad = jax.grad(lambda lp: t.apply(_batch(logp_bt=lp, adv_bt=jnp.asarray(adv)), ())[0].terms["pg"].sum())(jnp.asarray(logp))
    p = np.exp(logp)
    r_mis = 4 * p / (3 * p + 1)
    expected = np.where(SOURCE[:, None] == EXPERT, -r_mis * adv * np.sqrt(1 - p), -adv)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_clip_option_and_jit():
    logp = np.log(np.full((8, 2), 0.6, np.float32))
    old = np.log(np.full((8, 2), 0.4, np.float32))  # ρ = 1.5
    adv = np.ones((8, 2), np.float32)
    batch = _batch(logp_bt=jnp.asarray(logp), old_logp_bt=jnp.asarray(old), adv_bt=jnp.asarray(adv), source=np.full(8, ON_POLICY, np.int32))
    clipped, _ = mixed_policy_loss(eps_low=0.2).apply(batch, ())
    np.testing.assert_allclose(clipped.terms["pg"], -1.2, rtol=1e-6)
    t = mixed_policy_loss()
    eager, _ = t.apply(batch, ())
    jitted, _ = jax.jit(lambda b: t.apply(b, ()))(batch)
    np.testing.assert_allclose(eager.terms["pg"], jitted.terms["pg"], rtol=1e-6)
    np.testing.assert_allclose(eager.terms["pg"], -1.5, rtol=1e-6)


def test_noun():
    alg = algorithms.rl_plus(max_len=3)
    assert alg.collector is not None and alg.needs == frozenset()
    with pytest.raises(ValueError, match="max_len"):
        algorithms.rl_plus()
    assert algorithms.rl_plus(aggregation="token_mean").needs == frozenset()


def test_train_step_with_expert_rows():
    cfg = TransformerConfig(vocab_size=8, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16)
    graphdef, params = tiny_params(cfg)
    rng = np.random.default_rng(0)
    batch = Batch(prompt_bp=np.repeat(rng.integers(1, 7, (2, 2)), 4, 0).astype(np.int32),
                  prompt_valid_bp=np.ones((8, 2), bool), response_bt=rng.integers(1, 7, (8, 3)).astype(np.int32),
                  mask_bt=np.ones((8, 3), np.float32), reward_b=REWARD, group_b=GROUP, source_b=SOURCE,
                  behavior_logp_bt=np.where(SOURCE[:, None] == EXPERT, 0.0, -1.5).astype(np.float32) * np.ones((8, 3), np.float32),
                  group_size=4)
    alg = algorithms.rl_plus(learning_rate=1e-2, max_len=3)
    state = steps.init_state(params, alg, jax.random.key(0))
    train = jax.jit(functools.partial(steps.train_on_batch, algorithm=alg, graphdef=graphdef))
    new_state, metrics = train(state, batch)
    assert int(new_state.step) == 1
    assert {"pg", "entropy", "off_ratio_mean", "off_prob_mean", "offpolicy/expert_frac"} <= set(metrics)
    assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values())
    assert float(metrics["offpolicy/expert_frac"]) == 0.25

"""DAPO (polrl.algorithms.dapo): clip-higher, token-mean, dynamic sampling, overlong shaping."""
import jax
import numpy as np
import pytest

from polrl import algorithms
from polrl.algorithms.dapo import overlong_penalty
from polrl.core import total_loss
from alg_testing import (
    apply, assert_trained, check_algorithm_transforms, check_transform_contract, hand_batch, rollout_batch,
    scored, train_once,
)


DAPO = algorithms.dapo(learning_rate=1e-2)  # one object: its jitted train step compiles once


def _lengths_batch(lengths, t=10, reward=None):
    mask = (np.arange(t)[None, :] < np.array(lengths)[:, None]).astype(np.float32)
    return hand_batch(mask, reward_b=np.ones(len(lengths)) if reward is None else reward)


def test_overlong_penalty_by_hand():
    # L_max = 8, L_buf = 4: no penalty up to 4 tokens, linear to −1 at 8, −1 beyond
    out = apply(overlong_penalty(max_len=8, buffer=4), _lengths_batch([3, 4, 6, 8, 10]))
    # lengths 3, 4 → 0;  6 → (4 − 6)/4 = −0.5;  8 → −1;  10 → −1 (floor)
    np.testing.assert_allclose(out.reward_b, [1.0, 1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(out.metrics["overlong_frac"], 0.6)
    np.testing.assert_allclose(out.metrics["overlong_penalty"], -0.5)  # (0 + 0 − 0.5 − 1 − 1)/5
    half = apply(overlong_penalty(max_len=8, buffer=4, factor=0.5), _lengths_batch([6, 10]))
    np.testing.assert_allclose(half.reward_b, [0.75, 0.5])
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(max_len=4, buffer=5)


def test_clip_higher_by_hand():
    # one A = +1 token with ρ = e^0.22 = 1.246077: GRPO's ε = 0.2 clips it to 1.2, DAPO's ε_high = 0.28 does not
    batch = hand_batch([[1]], logp_bt=[[0.22]], old_logp_bt=[[0.0]], adv_bt=[[1.0]])
    np.testing.assert_allclose(apply(algorithms.dapo().objective, batch).losses["pg"], -1.246077, rtol=1e-5)
    np.testing.assert_allclose(apply(algorithms.grpo(kl_coef=0.0).objective, batch).losses["pg"], -1.2, rtol=1e-6)
    # ε_low stays 0.2 for A < 0: ρ = e^−0.3 = 0.740818 is clipped to 0.8
    low = hand_batch([[1]], logp_bt=[[-0.3]], old_logp_bt=[[0.0]], adv_bt=[[-1.0]])
    np.testing.assert_allclose(apply(algorithms.dapo().objective, low).losses["pg"], 0.8, rtol=1e-6)


def _grpo_equivalent():
    return algorithms.grpo(eps_high=0.28, aggregation="token_mean", filter_zero_variance=True, kl_coef=0.0, learning_rate=1e-2)


def test_dapo_is_grpo_with_clip_higher_token_mean_and_filtering():
    dapo, grpo = DAPO, _grpo_equivalent()
    assert dapo.collector is not None and grpo.collector is None  # dynamic sampling
    assert dapo.needs == grpo.needs == frozenset()  # no KL, no reference
    batch = scored(rollout_batch()).replace(reward_b=np.array([1, 0, 0, 1, 1, 1, 1, 1], np.float32))  # group 1 flat
    outs = []
    for alg in (dapo, grpo):
        prepared = apply(alg.prepare, batch)
        loss = lambda lp: total_loss(apply(alg.objective, prepared.replace(logp_bt=lp)))
        outs.append((prepared, loss(prepared.logp_bt), jax.grad(loss)(prepared.logp_bt)))
    (p_dapo, l_dapo, g_dapo), (p_grpo, l_grpo, g_grpo) = outs
    np.testing.assert_array_equal(p_dapo.mask_bt, p_grpo.mask_bt)
    assert float(np.asarray(p_dapo.mask_bt)[4:].sum()) == 0.0  # the flat group is filtered out
    np.testing.assert_allclose(p_dapo.adv_bt, p_grpo.adv_bt)
    np.testing.assert_allclose(l_dapo, l_grpo, rtol=1e-6)
    np.testing.assert_allclose(g_dapo, g_grpo, rtol=1e-6)
    assert np.abs(np.asarray(g_dapo)).max() > 1e-3
    # and a whole training step on the tiny model lands on the same parameters
    s_dapo, m_dapo, _ = train_once(dapo)
    s_grpo, m_grpo, _ = train_once(grpo)
    for a, b in zip(jax.tree.leaves(s_dapo.params), jax.tree.leaves(s_grpo.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(m_dapo["loss"], m_grpo["loss"], rtol=1e-5)


def test_overlong_keywords():
    alg = algorithms.dapo(overlong_max_len=8, overlong_buffer=4)
    out = apply(alg.prepare, _lengths_batch([3, 6, 3, 3], reward=[1.0, 1.0, 0.0, 0.0]).replace(group_b=np.array([0, 0, 1, 1], np.int32)))
    # shaped rewards [1, 0.5 | 0, 0]: group 0 now varies (A = ±0.707107), group 1 is flat and masked
    np.testing.assert_allclose(np.asarray(out.adv_bt)[:2, 0], [0.707106, -0.707106], rtol=1e-5)
    assert float(np.asarray(out.mask_bt)[2:].sum()) == 0.0
    with pytest.raises(ValueError, match="overlong"):
        algorithms.dapo(overlong_max_len=8)
    with pytest.raises(ValueError, match="oversample"):
        algorithms.dapo(oversample=0)


def test_contract_and_train_step():
    make = lambda seed: rollout_batch(seed=seed)
    check_transform_contract(overlong_penalty(max_len=4, buffer=2), make(0), make(1))
    check_algorithm_transforms(algorithms.dapo(overlong_max_len=4, overlong_buffer=2, correction="token_mask"))
    assert_trained(DAPO, ["pg", "clip_frac", "zero_variance_frac"])

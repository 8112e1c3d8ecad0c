"""Clip-Cov (polrl.algorithms.entropy_cov): a random few high-covariance tokens leave PPO's loss."""
import jax
import numpy as np
import pytest

from polrl import algorithms, objectives
from polrl.algorithms.entropy_cov import clip_cov_policy_gradient
from alg_testing import apply, assert_trained, assert_trees_close, check_transform_contract, hand_batch, rollout_batch, scored

MASK = [[1, 1, 1, 1], [1, 1, 0, 0]]
# valid A: 2, 2, 2, 2, −1, −1 → mean 1, A − mean = [1, 1, 1, 1, −2, −2]
ADV = [[2.0, 2.0, 2.0, 2.0], [-1.0, -1.0, 0.0, 0.0]]
# valid log π: −.5, −4, −1, −2.5, −3, −1 → mean −2, log π − mean = [1.5, −2, 1, −.5, −1, 1]
LOGP = [[-0.5, -4.0, -1.0, -2.5], [-3.0, -1.0, 7.0, 7.0]]  # 7 on padding must not count
# Cov = [1.5, −2, 1, −.5, 2, −2]: strictly inside (1, 5) only (0, 0) → 1.5 and (1, 0) → 2
CANDIDATES = [(0, 0), (1, 0)]
KEY = jax.random.key(0)


def _batch(old=LOGP):
    return hand_batch(MASK, logp_bt=LOGP, old_logp_bt=old, adv_bt=ADV)


def _chosen(out):
    """The valid tokens whose loss was zeroed although −A·ρ ≠ 0 there (ρ = 1: −A)."""
    pg = np.asarray(out.terms["pg"])
    return {(b, t) for b in range(2) for t in range(4) if MASK[b][t] and pg[b, t] == 0.0 and ADV[b][t] != 0.0}


def test_candidates_by_hand():
    # a budget of ⌊0.5 · 6⌋ = 3 ≥ 2 candidates: both leave the loss, every other token keeps −A
    out = apply(clip_cov_policy_gradient(clip_cov_ratio=0.5), _batch(), rng=KEY)
    np.testing.assert_array_equal(out.terms["pg"], [[0.0, -2.0, -2.0, -2.0], [0.0, 1.0, 0.0, 0.0]])
    assert _chosen(out) == set(CANDIDATES)
    np.testing.assert_allclose(out.metrics["cov_clip_frac"], 2 / 6, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["clip_frac"], 0.0)
    # their gradient is 0, the others' is REINFORCE's −A (ρ = 1)
    t = clip_cov_policy_gradient(clip_cov_ratio=0.5)
    grad = jax.grad(lambda lp: apply(t, _batch().replace(logp_bt=lp), rng=KEY).terms["pg"].sum())(_batch().logp_bt)
    np.testing.assert_allclose(grad, [[0.0, -2.0, -2.0, -2.0], [0.0, 1.0, 0.0, 0.0]], rtol=1e-6)
    # the bounds are strict: lb = 1.5 drops (0, 0) (Cov exactly 1.5) and keeps (1, 0)
    out = apply(clip_cov_policy_gradient(clip_cov_ratio=0.5, clip_cov_lb=1.5), _batch(), rng=KEY)
    assert _chosen(out) == {(1, 0)}


def test_budget_is_one_random_candidate():
    # ⌊2e-4 · 6⌋ = 0 → at least 1; which of the two candidates is drawn depends on the key
    t = clip_cov_policy_gradient()
    drawn = [_chosen(apply(t, _batch(), rng=jax.random.key(s))) for s in range(60)]
    assert all(len(d) == 1 and d <= set(CANDIDATES) for d in drawn)
    first = sum(d == {CANDIDATES[0]} for d in drawn)
    assert 15 <= first <= 45, first  # uniform draw: Binomial(60, ½), P(outside) < 1e-4
    # the same key draws the same token, under jit too
    jitted = jax.jit(lambda b, k: apply(t, b, rng=k))(_batch(), jax.random.key(3))
    assert_trees_close(jitted, apply(t, _batch(), rng=jax.random.key(3)), rtol=1e-6, atol=1e-7)


def test_ppo_clipped_tokens_are_not_candidates():
    # (0, 0) with ρ = e^0.5 > 1.2 and A > 0 is already clipped by PPO (loss −1.2·2, no gradient)
    old = np.array(LOGP) - np.array([[0.5, 0, 0, 0], [0, 0, 0, 0]])
    out = apply(clip_cov_policy_gradient(clip_cov_ratio=0.5), _batch(old), rng=KEY)
    np.testing.assert_allclose(np.asarray(out.terms["pg"])[0, 0], -2.4, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out.terms["pg"])[1, 0], 0.0)
    np.testing.assert_allclose(out.metrics["clip_frac"], 1 / 6, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["cov_clip_frac"], 1 / 6, rtol=1e-6)


def test_empty_covariance_window_is_ppo():
    batch = scored(rollout_batch())
    batch = batch.replace(adv_bt=batch.mask_bt * np.linspace(-1.5, 1.5, 8, dtype=np.float32)[:, None])
    ppo = objectives.clipped_policy_gradient(eps_low=0.2, eps_high=0.28)
    for lb, ub in ((5.0, 1.0), (100.0, 200.0)):
        t = clip_cov_policy_gradient(eps_low=0.2, eps_high=0.28, clip_cov_lb=lb, clip_cov_ub=ub, clip_cov_ratio=1.0)
        loss = lambda lp, t: apply(t, batch.replace(logp_bt=lp), rng=KEY).terms["pg"].sum()
        np.testing.assert_array_equal(apply(t, batch, rng=KEY).terms["pg"], apply(ppo, batch).terms["pg"])
        np.testing.assert_allclose(jax.grad(loss)(batch.logp_bt, t), jax.grad(loss)(batch.logp_bt, ppo), rtol=1e-6)


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="clip_cov_ratio"):
        clip_cov_policy_gradient(clip_cov_ratio=0.0)
    with pytest.raises(ValueError, match="clip_cov_ratio"):
        algorithms.clip_cov(clip_cov_ratio=1.5)
    with pytest.raises(ValueError, match="rng"):
        apply(clip_cov_policy_gradient(), _batch())
    with pytest.raises(TypeError, match="clip_cov"):
        algorithms.clip_cov(clip_ratio=0.2)


def test_contract_and_train_step():
    alg = algorithms.clip_cov(kl_coef=0.05)
    assert algorithms.clip_cov().needs == frozenset()
    check_transform_contract(alg.prepare, scored(rollout_batch(seed=0)), scored(rollout_batch(seed=1)))
    prepared = apply(alg.prepare, scored(rollout_batch()))
    jitted = jax.jit(lambda b, k: apply(alg.objective, b, rng=k))(prepared, KEY)
    assert_trees_close(jitted, apply(alg.objective, prepared, rng=KEY), rtol=1e-5, atol=1e-6)
    assert jitted.terms == {} and set(jitted.losses) == {"pg", "kl"}
    metrics = assert_trained(
        algorithms.clip_cov(learning_rate=1e-2, clip_cov_lb=0.0, clip_cov_ub=100.0, clip_cov_ratio=0.1),
        ["pg", "cov_clip_frac", "clip_frac"],
    )
    assert metrics["cov_clip_frac"] > 0
    assert_trained(algorithms.clip_cov(learning_rate=1e-2, num_minibatches=2))

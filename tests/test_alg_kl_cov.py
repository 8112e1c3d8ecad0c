"""KL-Cov (polrl.algorithms.entropy_cov): a |log ρ| penalty on the top-covariance tokens."""
import jax
import numpy as np
import pytest

from polrl import algorithms
from polrl.algorithms.entropy_cov import kl_cov_policy_gradient
from alg_testing import (
    apply, assert_trained, check_algorithm_transforms, check_transform_contract, hand_batch, rollout_batch, scored,
)

MASK = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], np.float64)
ADV = np.array([[2.0, 2.0, 2.0, 2.0], [-1.0, -1.0, 0.0, 0.0]])
LOGP = np.array([[-0.5, -4.0, -1.0, -2.5], [-3.0, -1.0, 7.0, 7.0]])
# Cov over the valid tokens (means 1 and −2, see test_alg_clip_cov.py): [[1.5, −2, 1, −.5], [2, −2]]
# log ρ = D (padding junk must not count)
D = np.array([[0.1, -0.2, 0.3, 0.0], [-0.4, 0.2, 9.0, 9.0]])


def _batch():
    return hand_batch(MASK, logp_bt=LOGP, old_logp_bt=LOGP - D, adv_bt=ADV)


def _expected(selected, beta):
    """−A e^D + β |D| on the selected tokens, and its gradient −A e^D + β sign(D), in float64."""
    sel = np.zeros_like(MASK)
    for b, t in selected:
        sel[b, t] = 1.0
    value = (-ADV * np.exp(D) + beta * np.abs(D) * sel) * MASK
    grad = (-ADV * np.exp(D) + beta * np.sign(D) * sel) * MASK
    return value, grad


@pytest.mark.parametrize("ratio, selected", [
    (2e-4, [(1, 0)]),                     # ⌊2e-4 · 6⌋ = 0 → k = 1: the largest Cov, 2
    (0.5, [(1, 0), (0, 0), (0, 2)]),      # k = 3: Cov 2, 1.5, 1
])
def test_top_covariance_penalty_by_hand(ratio, selected):
    t = kl_cov_policy_gradient(kl_cov_ratio=ratio, kl_coef=0.1)
    out = apply(t, _batch())
    value, grad = _expected(selected, 0.1)
    np.testing.assert_allclose(np.asarray(out.terms["pg"]) * MASK, value, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.metrics["kl_cov_frac"], len(selected) / 6, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["kl_abs_mean"], (0.1 + 0.2 + 0.3 + 0.0 + 0.4 + 0.2) / 6, rtol=1e-5)
    g = jax.grad(lambda lp: (apply(t, _batch().replace(logp_bt=lp)).terms["pg"] * MASK).sum())(_batch().logp_bt)
    np.testing.assert_allclose(g, grad, rtol=1e-5, atol=1e-7)


def test_no_clip_and_reinforce_at_ratio_one():
    # far outside any PPO clip range the loss stays −A·ρ (the penalty replaces the clip)
    big = hand_batch([[1.0]], logp_bt=[[0.0]], old_logp_bt=[[-2.0]], adv_bt=[[1.0]])
    np.testing.assert_allclose(apply(kl_cov_policy_gradient(kl_coef=0.0), big).terms["pg"], [[-np.exp(2.0)]], rtol=1e-6)
    # π_old = sg(π_θ): ρ = 1, |log ρ| = 0 with gradient 0, so the gradient is −A even on selected tokens
    t = kl_cov_policy_gradient(kl_cov_ratio=1.0, kl_coef=5.0)
    on = hand_batch(MASK, logp_bt=LOGP, adv_bt=ADV)
    g = jax.grad(lambda lp: (apply(t, on.replace(logp_bt=lp)).terms["pg"] * MASK).sum())(on.logp_bt)
    np.testing.assert_allclose(g, -ADV * MASK, rtol=1e-6)


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="kl_cov_ratio"):
        kl_cov_policy_gradient(kl_cov_ratio=0.0)
    with pytest.raises(ValueError, match="kl_coef"):
        algorithms.kl_cov(ppo_kl_coef=-1.0)


def test_contract_and_train_step():
    def make(seed):
        b = scored(rollout_batch(seed=seed), seed=seed)
        return b.replace(adv_bt=b.mask_bt * np.linspace(-1, 1, 8, dtype=np.float32)[:, None] * (1 - 2 * seed))

    check_transform_contract(kl_cov_policy_gradient(kl_cov_ratio=0.1), make(0), make(1))
    check_algorithm_transforms(algorithms.kl_cov(kl_coef=0.05, kl_estimator="k3+"))
    metrics = assert_trained(algorithms.kl_cov(learning_rate=1e-2, num_minibatches=2, kl_cov_ratio=0.1),
                             ["pg", "kl_cov_frac", "kl_abs_mean"])
    assert metrics["kl_cov_frac"] > 0

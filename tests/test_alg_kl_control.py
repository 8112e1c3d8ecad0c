"""polrl.kl_control: KL in the reward, adaptive KL coefficients (Ziegler et al. 2019)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import advantages, kl_control, ops
from polrl.core import chain
from alg_testing import apply, check_transform_contract, hand_batch, rollout_batch, scored


def test_adaptive_kl_coef_two_updates_by_hand():
    # β₀ = 0.1, target 6, K_β = 0.1
    # KL = 9:   e = clip(9/6 − 1, ±0.2) = clip(0.5) = 0.2    → β₁ = 0.1 · (1 + 0.02)   = 0.102
    # KL = 5.4: e = 5.4/6 − 1 = −0.1 (inside the clip)      → β₂ = 0.102 · (1 − 0.01) = 0.10098
    b1 = kl_control.adaptive_kl_coef(jnp.float32(0.1), jnp.float32(9.0), target=6.0, rate=0.1)
    b2 = kl_control.adaptive_kl_coef(b1, jnp.float32(5.4), target=6.0, rate=0.1)
    np.testing.assert_allclose([b1, b2], [0.102, 0.10098], rtol=1e-6)
    # KL = 0 hits the lower clip: β · (1 − 0.02)
    np.testing.assert_allclose(kl_control.adaptive_kl_coef(0.5, 0.0, target=6.0), 0.49, rtol=1e-6)


# k1 = log π_old − log π_ref: row 0 [0.5, 0, −0.5], row 1 [0, 1, (pad)]; sequence KL = mean(0, 1) = 0.5
MASK = [[1, 1, 1], [1, 1, 0]]
OLD = [[-1.0, -1.0, -1.0], [-2.0, -2.0, 0.0]]
REF = [[-1.5, -1.0, -0.5], [-2.0, -3.0, 7.0]]
ADV = [[1.0, 1.0, 1.0], [2.0, 2.0, 0.0]]


def _batch(**kw):
    return hand_batch(MASK, old_logp_bt=OLD, ref_logp_bt=REF, adv_bt=ADV, **kw)


def test_kl_reward_fixed_coefficient():
    t = kl_control.kl_reward(coef=0.1, estimator="k1")
    assert t.needs == {"ref_logp", "old_logp"}
    assert t.init() == ()
    out = apply(t, _batch(return_bt=ADV))
    # token rewards −0.1·kl: row 0 [−0.05, 0, 0.05], row 1 [0, −0.1]
    # sums to go: row 0 [0, 0.05, 0.05], row 1 [−0.1, −0.1]
    expected = [[1.0, 1.05, 1.05], [1.9, 1.9, 0.0]]
    np.testing.assert_allclose(out.adv_bt, expected, rtol=1e-6)
    np.testing.assert_allclose(out.return_bt, expected, rtol=1e-6)  # the same term on the returns
    np.testing.assert_allclose(out.metrics["kl_reward/kl"], 0.2, rtol=1e-6)  # (0.5 + 0 − 0.5 + 0 + 1)/5
    np.testing.assert_allclose(out.metrics["kl_reward/seq_kl"], 0.5, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["kl_reward/coef"], 0.1, rtol=1e-6)


def test_kl_reward_discount():
    out = apply(kl_control.kl_reward(coef=0.1, estimator="k1", discount=0.5), _batch())
    # row 0: t2 0.05; t1 0 + 0.5·0.05 = 0.025; t0 −0.05 + 0.5·0.025 = −0.0375;  row 1: t1 −0.1, t0 −0.05
    np.testing.assert_allclose(out.adv_bt, [[0.9625, 1.025, 1.05], [1.95, 1.9, 0.0]], rtol=1e-6)
    assert out.return_bt is None


def test_kl_reward_k2():
    out = apply(kl_control.kl_reward(coef=1.0, estimator="k2"), _batch())
    # k2 = ½ d²: row 0 [0.125, 0, 0.125] → to go [0.25, 0.125, 0.125]; row 1 [0, 0.5] → [0.5, 0.5]
    np.testing.assert_allclose(out.adv_bt, [[0.75, 0.875, 0.875], [1.5, 1.5, 0.0]], rtol=1e-6)


def test_kl_reward_adaptive_over_two_batches():
    t = kl_control.kl_reward(coef=0.1, estimator="k1", target=0.25)
    state = t.init()
    np.testing.assert_allclose(state, 0.1)
    out, state = t.apply(_batch(), state)
    # measured KL 0.5, target 0.25: e = clip(1) = 0.2 → β = 0.1·1.02 = 0.102 for the next batch
    np.testing.assert_allclose(out.adv_bt[1, 0], 1.9, rtol=1e-6)  # this batch used β = 0.1
    np.testing.assert_allclose(state, 0.102, rtol=1e-6)
    out, state = t.apply(_batch(), state)
    np.testing.assert_allclose(out.adv_bt[1, 0], 2.0 - 0.102, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["kl_reward/coef"], 0.102, rtol=1e-6)
    np.testing.assert_allclose(state, 0.10404, rtol=1e-6)


def test_kl_reward_composes_with_gae_exactly():
    # GAE is linear in the token rewards: GAE(R at the last token − β kl_t) =
    # GAE(R) + Σ_k (γλ)^k (−β kl_{t+k}); the returns A + V follow.
    gamma, lam, beta = 0.9, 0.8, 0.3
    value = [[0.5, 0.2, 0.1], [0.3, 0.4, 9.9]]
    batch = hand_batch(MASK, reward_b=[1.0, 2.0], old_value_bt=value, old_logp_bt=OLD, ref_logp_bt=REF)
    out = apply(chain(advantages.gae_advantage(gamma=gamma, lambda_=lam),
                      kl_control.kl_reward(coef=beta, estimator="k1", discount=gamma * lam)), batch)
    m = np.array(MASK, np.float32)
    kl = (np.array(OLD) - np.array(REF)) * m
    token_reward = -beta * kl
    token_reward[0, 2] += 1.0
    token_reward[1, 1] += 2.0
    expected = ops.gae_bt(jnp.asarray(token_reward, jnp.float32), jnp.asarray(value, jnp.float32), m, gamma=gamma, lambda_=lam)
    np.testing.assert_allclose(out.adv_bt, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.return_bt, (np.asarray(expected) + np.array(value)) * m, rtol=1e-5, atol=1e-6)


def test_adaptive_kl_penalty():
    # log π = [−1, −2, −1], log π_ref = [−2, −1, −1]: k3 = [e⁻¹, e − 2, 0] = [0.367879, 0.718282, 0]
    batch = hand_batch([[1, 1, 1]], logp_bt=[[-1.0, -2.0, -1.0]], ref_logp_bt=[[-2.0, -1.0, -1.0]])
    t = kl_control.adaptive_kl_penalty(coef=0.1, target=0.5, estimator="k3")
    assert t.needs == {"ref_logp"}
    out, beta = t.apply(batch, t.init())
    np.testing.assert_allclose(out.terms["kl"], [[0.0367879, 0.0718282, 0.0]], rtol=1e-5)
    # sequence KL 1.086161 > target 0.5: e = 0.2 (clipped) → β = 0.102
    np.testing.assert_allclose(out.metrics["kl_seq"], 1.086161, rtol=1e-5)
    np.testing.assert_allclose(out.metrics["kl_coef"], 0.1)
    np.testing.assert_allclose(beta, 0.102, rtol=1e-6)
    # the term is differentiable, the coefficient is not: d(β k3)/d log π = β (1 − π_ref/π)
    grad = jax.grad(lambda lp: t.apply(batch.replace(logp_bt=lp), t.init())[0].terms["kl"].sum())(batch.logp_bt)
    np.testing.assert_allclose(grad, [[0.1 * (1 - np.exp(-1.0)), 0.1 * (1 - np.e), 0.0]], rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="k4"):
        kl_control.kl_reward(coef=0.1, estimator="k4")
    with pytest.raises(ValueError, match="target"):
        kl_control.adaptive_kl_penalty(coef=0.1, target=0.0)
    with pytest.raises(ValueError, match="coef"):
        kl_control.kl_reward(coef=0.0, target=1.0)
    with pytest.raises(ValueError, match="kl_in"):
        kl_control.kl_in_reward(placement="value", coef=0.1, estimator="k1", target=None)
    assert kl_control.kl_in_reward(placement="loss", coef=0.1, estimator="k1", target=None) == []
    assert kl_control.kl_in_reward(placement="reward", coef=0.0, estimator="k1", target=None) == []
    with pytest.raises(ValueError, match="kl_reward"):
        apply(kl_control.kl_reward(coef=0.1), hand_batch(MASK, adv_bt=ADV))


@pytest.mark.parametrize("target", [None, 0.1])
def test_contract(target):
    def make(seed):
        b = scored(rollout_batch(seed=seed), seed=seed)
        return b.replace(adv_bt=b.mask_bt * (seed + 1.0))

    check_transform_contract(kl_control.kl_reward(coef=0.05, target=target), make(0), make(1))
    check_transform_contract(kl_control.adaptive_kl_penalty(coef=0.05, target=0.1), make(0), make(1))

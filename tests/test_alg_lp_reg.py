"""Lp-Reg (polrl.algorithms.lp_reg) and its min-p proxy kernel (polrl.ops.min_p_log_prob):
hand values, the selection rule, the no-selection equivalence with PPO-clip, and a prepare +
update on a tiny model."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms, ops
from polrl.algorithms.lp_reg import lowest_fraction, lp_reg_policy_gradient
from polrl.core import total_loss
from alg_testing import apply, assert_trained, check_transform_contract, hand_batch

# one next-token distribution used at every position: p = (.5, .3, .15, .05)
PROBS = np.array([0.5, 0.3, 0.15, 0.05], np.float32)
LOGITS = np.log(PROBS) + 1.7  # logits are defined up to a constant


def test_min_p_relative_and_absolute():
    logits = np.broadcast_to(LOGITS, (1, 3, 4))
    tokens = np.array([[0, 2, 3]], np.int32)
    # relative κ = .2: keep p ≥ .2·.5 = .1 → {0, 1, 2}, kept mass .95
    logp, kept = ops.min_p_log_prob(logits, tokens, threshold=0.2)
    np.testing.assert_array_equal(kept, [[True, True, False]])
    np.testing.assert_allclose(logp[:, :2], [[math.log(0.5 / 0.95), math.log(0.15 / 0.95)]], rtol=1e-5)
    assert np.isneginf(np.asarray(logp)[0, 2])
    # absolute κ = .2: keep p ≥ .2 → {0, 1}, kept mass .8
    logp, kept = ops.min_p_log_prob(logits, tokens, threshold=0.2, mode="absolute")
    np.testing.assert_array_equal(kept, [[True, False, False]])
    np.testing.assert_allclose(logp[0, 0], math.log(0.5 / 0.8), rtol=1e-5)
    # κ = 1 (relative) keeps only the most probable token: its proxy log-prob is 0
    logp, kept = ops.min_p_log_prob(logits, tokens, threshold=1.0)
    np.testing.assert_array_equal(kept, [[True, False, False]])
    np.testing.assert_allclose(logp[0, 0], 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="threshold"):
        ops.min_p_log_prob(logits, tokens, threshold=0.0)
    with pytest.raises(ValueError, match="mode"):
        ops.min_p_log_prob(logits, tokens, threshold=0.1, mode="top")


def test_lowest_fraction():
    x = jnp.array([[-3.0, -1.0, -5.0, -2.0], [-4.0, -0.5, -6.0, -2.0]])
    cand = jnp.array([[1, 1, 1, 0], [1, 1, 0, 1]], bool)  # six candidates; −6 is not one
    # k = ⌊.5·6⌋ = 3: the three smallest candidates are −5, −4, −3
    np.testing.assert_array_equal(lowest_fraction(x, cand, 0.5), [[1, 0, 1, 0], [1, 0, 0, 0]])
    # k = max(1, ⌊.2·6⌋) = 1 → the rule selects nothing; k = 6 → every candidate
    assert not np.asarray(lowest_fraction(x, cand, 0.2)).any()
    np.testing.assert_array_equal(lowest_fraction(x, cand, 1.0), cand)
    # ⌊100·.03⌋ = 3 exactly (no float32 rounding down to 2)
    many = jnp.arange(100.0).reshape(4, 25)
    assert int(lowest_fraction(many, jnp.ones((4, 25), bool), 0.03).sum()) == 3
    # ties go to the earlier position
    np.testing.assert_array_equal(lowest_fraction(jnp.zeros((1, 4)), jnp.ones((1, 4), bool), 0.5), [[1, 1, 0, 0]])


def _batch():
    # row 0 (A = −1) takes tokens with p = .5, .15, .05, .3; row 1 (A = +1) tokens 0..3
    tokens = np.array([[0, 2, 3, 1], [0, 1, 2, 3]], np.int32)
    logits = np.broadcast_to(LOGITS, (2, 4, 4)).astype(np.float32)
    logp = np.log(PROBS)[tokens]
    adv = np.array([[-1.0] * 4, [1.0] * 4], np.float32)
    return hand_batch(np.ones((2, 4)), logp_bt=logp, adv_bt=adv, logits_btv=logits).replace(response_bt=jnp.asarray(tokens))


def test_lp_reg_hand_values_and_gradient():
    # negatives: N = 4, ρ = .5 → the two rarest: p = .05 (filtered out by κ = .2 → never
    # regularized) and p = .15 (kept, and log .15 < log π_proxy = log(.15/.95)) → one token in R.
    # R: L = −A·ρ + β(1/.95 + log .95 − 1) with ρ = 1, A = −1, β = 2; dL/dlog π = −A + β(1 − 1/.95)
    t = lp_reg_policy_gradient(neg_frac=0.5, beta=2.0, min_p=0.2)
    batch = _batch()
    out = apply(t, batch)
    k3 = 1 / 0.95 + math.log(0.95) - 1  # = 0.0013383
    expected = np.array([[1.0, 1.0 + 2 * k3, 1.0, 1.0], [-1.0] * 4], np.float32)
    np.testing.assert_allclose(out.terms["pg"], expected, rtol=1e-5)
    np.testing.assert_allclose(out.metrics["lp_reg_frac"], 1 / 8)
    grad = jax.grad(lambda lp: apply(t, batch.replace(logp_bt=lp)).terms["pg"].sum())(batch.logp_bt)
    np.testing.assert_allclose(grad, [[1.0, 1.0 + 2 * (1 - 1 / 0.95), 1.0, 1.0], [-1.0] * 4], rtol=1e-5)


def test_positive_selection_is_symmetric():
    # ρ⁺ = .5 selects the two rarest positive tokens (p = .15 kept, .05 filtered): one more token
    t = lp_reg_policy_gradient(neg_frac=0.0, pos_frac=0.5, beta=1.0, min_p=0.2)
    out = apply(t, _batch())
    k3 = 1 / 0.95 + math.log(0.95) - 1
    np.testing.assert_allclose(out.terms["pg"][1], [-1.0, -1.0, -1.0 + k3, -1.0], rtol=1e-5)
    np.testing.assert_allclose(out.metrics["lp_reg_frac"], 1 / 8)


def test_without_selection_it_is_ppo_clip():
    # ρ⁻ = 0 (k = 1 → no token) : the objective is GRPO's clipped surrogate with the same clip range
    batch = _batch().replace(old_logp_bt=jnp.asarray(np.log(PROBS)[np.array([[0, 2, 3, 1], [0, 1, 2, 3]])] - 0.3))
    lp = algorithms.lp_reg(neg_frac=0.0)
    grpo = algorithms.grpo(kl_coef=0.0, eps_low=1.0, eps_high=9.0, aggregation="token_mean")

    def loss(objective, logp):
        out, _ = objective.apply(batch.replace(logp_bt=logp), objective.init())
        return total_loss(out)

    for a, b in zip(jax.value_and_grad(lambda x: loss(lp.objective, x))(batch.logp_bt),
                    jax.value_and_grad(lambda x: loss(grpo.objective, x))(batch.logp_bt)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_contract_needs_and_restrictions():
    alg = algorithms.lp_reg()
    assert alg.needs == {"logits"} and alg.updates_per_batch == 1
    other = _batch().replace(adv_bt=-_batch().adv_bt)
    check_transform_contract(lp_reg_policy_gradient(neg_frac=0.5, min_p=0.2), _batch(), other)
    with pytest.raises(ValueError, match="one update per batch"):
        algorithms.lp_reg(num_epochs=2)
    with pytest.raises(ValueError, match="neg_frac"):
        lp_reg_policy_gradient(neg_frac=1.5)
    with pytest.raises(ValueError, match="logits_btv"):
        apply(lp_reg_policy_gradient(), _batch().replace(logits_btv=None))


def test_lp_reg_prepare_and_update_on_a_tiny_model():
    # κ = .9 keeps only near-argmax tokens, so some sampled tokens are regularized
    assert_trained(algorithms.lp_reg(learning_rate=1e-2, neg_frac=0.5, min_p=0.9),
                   expected_metrics={"pg", "lp_reg_frac", "clip_frac", "loss", "grad_norm"})

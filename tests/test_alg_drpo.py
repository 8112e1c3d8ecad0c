"""Tests for DRPO (polrl.algorithms.drpo): the decoupled objective by hand, its gradient equals the
reference code's value-1 surrogate, the length weights, the squared-hinge trust region, jit ==
no-jit, and a train step on the tiny model."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms
from polrl.algorithms.drpo import decoupled_reward_loss, squared_hinge_trust_region
from polrl.core import Batch
from polrl.models import TransformerConfig
from polrl.train import steps
from tiny_models import tiny_params

RNG = np.random.default_rng(0)
LOGP = -RNG.uniform(0.1, 3.0, (8, 4)).astype(np.float32)
MASK = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0],
                 [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]], np.float32)
REWARD = np.array([1, 0, 1, 0, 1, 1, 1, 1], np.float32)  # group 1 has no wrong answer: skipped
GROUP = np.arange(8) // 4


def _batch(logp=LOGP, mask=MASK, reward=REWARD, old=None) -> Batch:
    return Batch(prompt_bp=np.ones((8, 1), np.int32), prompt_valid_bp=np.ones((8, 1), bool),
                 response_bt=np.ones((8, 4), np.int32), mask_bt=mask, reward_b=reward,
                 group_b=GROUP.astype(np.int32), logp_bt=jnp.asarray(logp),
                 old_logp_bt=None if old is None else jnp.asarray(old), group_size=4)


def _drpo_loss(lp, tau=10.0, lam=0.1, **kw):
    out, _ = decoupled_reward_loss(tau=tau, length_lambda=lam).apply(_batch(logp=lp, **kw), ())
    return out.losses["drpo"], out


def test_objective_by_hand():
    tau, lam = 2.0, 0.5
    s = (LOGP * MASK).sum(1) / MASK.sum(1)
    length = MASK.sum(1) / 4
    # group 0: positives rows 0, 2; negatives rows 1, 3
    lse = tau * np.log(np.exp(s[1] / tau) + np.exp(s[3] / tau))
    w = np.exp((1 - length[[0, 2]]) / lam)
    j0 = (w * (s[[0, 2]] - lse)).sum() / w.sum()
    loss, out = _drpo_loss(jnp.asarray(LOGP), tau=tau, lam=lam)
    np.testing.assert_allclose(loss, -j0 / 2, rtol=1e-5)  # two groups in the denominator
    assert float(out.metrics["drpo_valid_frac"]) == 0.5
    # no length preference: plain mean over the positives
    flat, _ = _drpo_loss(jnp.asarray(LOGP), tau=tau, lam=None)
    np.testing.assert_allclose(flat, -(s[[0, 2]] - lse).mean() / 2, rtol=1e-5)


def _reference_surrogate(lp, tau, lam):
    """DRPO's code path (valid groups only, value-1 surrogate S/sg(S) for the negative term)."""
    s = (lp * MASK).sum(1) / MASK.sum(1)
    length = jnp.asarray(MASK.sum(1) / 4)
    scores, lengths = s.reshape(2, 4)[:1], length.reshape(2, 4)[:1]  # only group 0 is valid
    pos, neg = jnp.asarray(REWARD.reshape(2, 4)[:1] == 1), jnp.asarray(REWARD.reshape(2, 4)[:1] == 0)
    neg_max = jax.lax.stop_gradient(jnp.max(jnp.where(neg, scores / tau, -jnp.inf), -1, keepdims=True))
    neg_sum = (jnp.exp((scores / tau - neg_max) * neg) * neg).sum(-1, keepdims=True)
    surrogate = neg_sum / jax.lax.stop_gradient(neg_sum)
    w = jnp.exp((1 - lengths) / lam)
    per_q = (w * (scores - tau * surrogate) * pos).sum(1) / (w * pos).sum(1)
    return -per_q.sum() / 2


def test_gradient_matches_reference_surrogate():
    tau, lam = 10.0, 0.1
    ours = jax.grad(lambda lp: _drpo_loss(lp, tau=tau, lam=lam)[0])(jnp.asarray(LOGP))
    ref = jax.grad(lambda lp: _reference_surrogate(lp, tau, lam))(jnp.asarray(LOGP))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)
    assert np.abs(np.asarray(ours)[4:]).max() == 0.0  # the all-correct group gets no gradient


def test_masked_rows_are_neither_positive_nor_negative():
    mask = MASK.copy()
    mask[3] = 0.0  # a negative row dropped: group 0 keeps one negative
    loss, _ = _drpo_loss(jnp.asarray(LOGP), tau=2.0, lam=None, mask=mask)
    s = (LOGP * MASK).sum(1) / MASK.sum(1)
    np.testing.assert_allclose(loss, -(s[[0, 2]] - s[1]).mean() / 2, rtol=1e-5)  # τ log e^{s/τ} = s


def test_trust_region_hinge():
    old = LOGP + 0.02 * RNG.normal(size=LOGP.shape).astype(np.float32)
    t = squared_hinge_trust_region(delta=1e-4, beta=1e3, kl_type="k1")

    def f(lp):
        out, _ = t.apply(_batch(logp=lp, old=old), ())
        return out.losses["trust_region"], out

    d = ((old - LOGP) * MASK).sum() / MASK.sum()  # k1, token mean
    loss, out = f(jnp.asarray(LOGP))
    np.testing.assert_allclose(out.metrics["trust_region_kl"], d, rtol=1e-4, atol=1e-7)
    coef = max(1e3 * (d - 1e-4), 0.0)
    np.testing.assert_allclose(loss, coef * d, rtol=1e-4, atol=1e-8)
    grad = jax.grad(lambda lp: f(lp)[0])(jnp.asarray(LOGP))
    np.testing.assert_allclose(grad, -coef * MASK / MASK.sum(), rtol=1e-4, atol=1e-8)
    # k3 = ρ − 1 − log ρ with ρ = π_θ/π_old
    t3 = squared_hinge_trust_region(delta=0.0, beta=1.0, kl_type="k3")
    out3, _ = t3.apply(_batch(old=old), ())
    r = np.exp(LOGP - old)
    np.testing.assert_allclose(out3.metrics["trust_region_kl"], ((r - 1 - np.log(r)) * MASK).sum() / MASK.sum(), rtol=1e-3)
    # on-policy (π_old = π_θ): D = 0, no loss, no gradient
    on = jax.grad(lambda lp: t.apply(_batch(logp=lp), ())[0].losses["trust_region"])(jnp.asarray(LOGP))
    assert np.abs(np.asarray(on)).max() == 0.0


def test_jit_matches_no_jit_and_errors():
    f = lambda lp: _drpo_loss(lp)[0]
    lp = jnp.asarray(LOGP)
    np.testing.assert_allclose(f(lp), jax.jit(f)(lp), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(f)(lp), jax.jit(jax.grad(f))(lp), rtol=1e-5, atol=1e-8)
    assert algorithms.drpo().needs == frozenset()
    with pytest.raises(ValueError, match="tau"):
        decoupled_reward_loss(tau=0.0)
    with pytest.raises(ValueError, match="kl_type"):
        squared_hinge_trust_region(kl_type="k2")


def test_train_step_on_tiny_model():
    cfg = TransformerConfig(vocab_size=8, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16)
    graphdef, params = tiny_params(cfg)
    rng = np.random.default_rng(1)
    batch = Batch(prompt_bp=np.repeat(rng.integers(1, 7, (2, 2)), 4, 0).astype(np.int32),
                  prompt_valid_bp=np.ones((8, 2), bool), response_bt=rng.integers(1, 7, (8, 4)).astype(np.int32),
                  mask_bt=MASK, reward_b=np.array([1, 0, 0, 1, 0, 1, 1, 0], np.float32),
                  group_b=GROUP.astype(np.int32), group_size=4)
    alg = algorithms.drpo(learning_rate=1e-2, num_minibatches=2)
    state = steps.init_state(params, alg, jax.random.key(0))
    train = jax.jit(functools.partial(steps.train_on_batch, algorithm=alg, graphdef=graphdef))
    state, metrics = train(state, batch)
    assert int(state.step) == 1
    assert {"drpo", "trust_region", "trust_region_kl", "drpo_valid_frac"} <= set(metrics)
    assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values())
    assert float(metrics["drpo_valid_frac"]) == 1.0

"""Tests for OTR (polrl.algorithms.otr): the sampled loss by hand, the exact expectation's
gradient (1+β)·∇π(y), Monte Carlo → expectation, the greedy limit = SFT, jit == no-jit, and a
train step on demonstrations with the tiny model."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms
from polrl.algorithms.otr import _candidates, one_token_rollout
from polrl.core import Batch
from polrl.models import TransformerConfig
from polrl import collectors
from polrl.train import steps
from tiny_models import tiny_params

LOGITS = np.array([[[1.0, 0.0, -1.0, 0.5], [0.2, 2.0, -0.3, 0.0]],
                   [[-1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]], np.float32)  # [B=2, T=2, V=4]
TARGET = np.array([[0, 1], [3, 2]], np.int32)
MASK = np.array([[1, 1], [1, 0]], np.float32)


def _batch(logits=LOGITS) -> Batch:
    return Batch(prompt_bp=np.zeros((2, 1), np.int32), prompt_valid_bp=np.ones((2, 1), bool),
                 response_bt=TARGET, mask_bt=MASK, logits_btv=jnp.asarray(logits))


def _term(t, logits, rng=None):
    out, _ = t.apply(_batch(logits), (), rng=rng)
    return out.terms["otr"], out.metrics["otr_match_frac"]


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_sampled_loss_by_hand():
    rng, k, beta, tau = jax.random.key(7), 5, 0.3, 0.8
    a = np.asarray(_candidates(rng, jnp.asarray(LOGITS), k, tau))  # the draws the transform makes
    assert a.shape == (k, 2, 2)
    logp = _log_softmax(LOGITS.astype(np.float64))
    expected = np.zeros((2, 2))
    for b in range(2):
        for t in range(2):
            r = np.where(a[:, b, t] == TARGET[b, t], 1.0, -beta)
            expected[b, t] = -(r * logp[b, t, a[:, b, t]]).mean()
    term, match = _term(one_token_rollout(num_samples=k, temperature=tau, negative_reward=beta), LOGITS, rng)
    np.testing.assert_allclose(term, expected, rtol=1e-5)
    hits = (a == TARGET[None]).mean(0)
    np.testing.assert_allclose(match, (hits * MASK).sum() / MASK.sum(), rtol=1e-6)


def test_draws_follow_the_tempered_policy():
    a = np.asarray(_candidates(jax.random.key(0), jnp.asarray(LOGITS), 4000, 0.5))
    p = np.exp(_log_softmax(LOGITS / 0.5))
    freq = np.stack([(a == v).mean(0) for v in range(4)], -1)
    np.testing.assert_allclose(freq, p, atol=0.03)


def test_exact_expectation_gradient_is_scaled_probability_gradient():
    """At τ_s = 1: ∇_z L_t = −(1+β) ∇_z π(y_t) = −(1+β) π_y (e_y − π)."""
    beta = 0.4
    t = one_token_rollout(num_samples=None, negative_reward=beta)
    grad = jax.grad(lambda z: (_term(t, z)[0] * MASK).sum())(jnp.asarray(LOGITS))
    p = np.exp(_log_softmax(LOGITS.astype(np.float64)))
    onehot = np.eye(4)[TARGET]
    p_y = (p * onehot).sum(-1, keepdims=True)
    expected = -(1 + beta) * p_y * (onehot - p) * MASK[..., None]
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_monte_carlo_approaches_the_expectation():
    beta = 0.2
    exact = jax.grad(lambda z: (_term(one_token_rollout(num_samples=None, negative_reward=beta), z)[0] * MASK).sum())
    mc = jax.grad(lambda z: (_term(one_token_rollout(num_samples=20000, negative_reward=beta), z, jax.random.key(3))[0] * MASK).sum())
    np.testing.assert_allclose(mc(jnp.asarray(LOGITS)), exact(jnp.asarray(LOGITS)), atol=0.015)


def test_greedy_limit_is_sft_where_the_argmax_is_right():
    """τ_s → 0 draws the argmax: at positions whose argmax is y_t the loss is −log π(y_t) (SFT);
    elsewhere it pushes the wrong argmax down with weight β."""
    term, _ = _term(one_token_rollout(num_samples=3, temperature=1e-4, negative_reward=0.5), LOGITS, jax.random.key(0))
    logp = _log_softmax(LOGITS.astype(np.float64))
    argmax = LOGITS.argmax(-1)
    nll = -np.take_along_axis(logp, TARGET[..., None], -1)[..., 0]
    wrong = 0.5 * np.take_along_axis(logp, argmax[..., None], -1)[..., 0]
    np.testing.assert_allclose(term * MASK, np.where(argmax == TARGET, nll, wrong) * MASK, rtol=1e-5)  # the masked position is a tie


def test_jit_matches_no_jit_and_errors():
    t = one_token_rollout(num_samples=6)
    eager = _term(t, LOGITS, jax.random.key(1))
    jitted = jax.jit(lambda z, r: _term(t, z, r))(jnp.asarray(LOGITS), jax.random.key(1))
    np.testing.assert_allclose(eager[0], jitted[0], rtol=1e-6)
    assert t.needs == frozenset({"logits"})
    with pytest.raises(ValueError, match="rng"):
        _term(t, LOGITS)
    with pytest.raises(ValueError, match="logits"):
        t.apply(_batch().replace(logits_btv=None), (), rng=jax.random.key(0))
    with pytest.raises(ValueError, match="num_samples"):
        one_token_rollout(num_samples=0)


def test_train_step_on_demonstrations():
    cfg = TransformerConfig(vocab_size=8, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16)
    graphdef, params = tiny_params(cfg)
    data = {
        "prompt_bp": np.array([[1, 2, 3], [0, 4, 5], [2, 2, 6], [0, 0, 3]], np.int32),
        "prompt_valid_bp": np.array([[1, 1, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]], bool),
        "answer_ba": np.array([[3, 2, 1, 7], [5, 4, 7, 0], [6, 2, 2, 7], [3, 7, 0, 0]], np.int32),
        "answer_valid_ba": np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]], bool),
    }
    batch = collectors.demonstration_batch(data, pad_id=0)
    alg = algorithms.otr(learning_rate=1e-2)
    assert alg.needs == frozenset({"logits"})
    state = steps.init_state(params, alg, jax.random.key(0))
    train = jax.jit(functools.partial(steps.train_on_batch, algorithm=alg, graphdef=graphdef))
    losses = []
    for _ in range(3):
        state, metrics = train(state, batch)
        losses.append(float(metrics["otr"]))
        assert 0.0 <= float(metrics["otr_match_frac"]) <= 1.0
    assert all(np.isfinite(losses)) and int(state.step) == 3

"""Tests for CoPG (polrl.algorithms.copg): all-pairs loss by hand, IPO equivalence, the β → 0
gradient is RLOO's, masked rows, jit == no-jit, and a train step on the tiny model."""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms, objectives, ops
from polrl.algorithms.copg import contrastive_policy_gradient
from polrl.core import Batch
from polrl.models import TransformerConfig
from polrl.train import steps
from tiny_models import tiny_params


def _batch(logp, ref, reward, group, mask) -> Batch:
    mask = np.asarray(mask, np.float32)
    b, t = mask.shape
    return Batch(prompt_bp=np.ones((b, 1), np.int32), prompt_valid_bp=np.ones((b, 1), bool),
                 response_bt=np.ones((b, t), np.int32), mask_bt=mask,
                 logp_bt=jnp.asarray(logp, jnp.float32), ref_logp_bt=jnp.asarray(ref, jnp.float32),
                 reward_b=np.asarray(reward, np.float32), group_b=np.asarray(group, np.int32))


def _loss(t, batch):
    out, _ = t.apply(batch, ())
    return out.losses["copg"], out


RNG = np.random.default_rng(0)
LOGP = -RNG.uniform(0.1, 2.0, (5, 3))
REF = -RNG.uniform(0.1, 2.0, (5, 3))
MASK = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]], np.float32)
REWARD = [1.0, 0.0, 0.5, 1.0, 0.0]
GROUP = [0, 0, 0, 1, 1]


@pytest.mark.parametrize("aggregation", ["token_sum", "token_mean"])
def test_all_pairs_by_hand(aggregation):
    beta = 0.3
    reduce = np.sum if aggregation == "token_sum" else np.mean
    s = [reduce((LOGP[i] - REF[i])[MASK[i] > 0]) for i in range(5)]
    a = np.asarray(REWARD) - beta * np.asarray(s)
    per_group = []
    for rows in ([0, 1, 2], [3, 4]):
        pairs = list(itertools.combinations(rows, 2))
        per_group.append(np.mean([(a[i] - a[j]) ** 2 / (2 * beta) for i, j in pairs]))
    loss, out = _loss(contrastive_policy_gradient(beta=beta, aggregation=aggregation), _batch(LOGP, REF, REWARD, GROUP, MASK))
    np.testing.assert_allclose(loss, np.mean(per_group), rtol=1e-5)
    np.testing.assert_allclose(out.metrics["copg_logratio"], np.mean(s), rtol=1e-5)
    np.testing.assert_allclose(out.metrics["copg_regularized_reward"], np.mean(a), rtol=1e-5)


def test_ipo_equivalence():
    """Pairs whose rewards differ by 1/2: CoPG = (β/2)·IPO (one-token responses, where IPO's
    length-normalised log-ratio equals the summed one); values and gradients."""
    beta = 0.2
    logp = -RNG.uniform(0.1, 2.0, (4, 1))
    ref = -RNG.uniform(0.1, 2.0, (4, 1))
    batch = _batch(logp, ref, [0.5, 0.0, 0.5, 0.0], [0, 0, 1, 1], np.ones((4, 1)))
    copg = contrastive_policy_gradient(beta=beta)
    ipo = objectives.preference_loss(beta=beta, loss_type="ipo")
    f_copg = lambda lp: _loss(copg, batch.replace(logp_bt=lp))[0]
    f_ipo = lambda lp: ipo.apply(batch.replace(logp_bt=lp), ())[0].losses["dpo"]
    lp = jnp.asarray(logp, jnp.float32)
    np.testing.assert_allclose(f_copg(lp), beta / 2 * f_ipo(lp), rtol=1e-5)
    np.testing.assert_allclose(jax.grad(f_copg)(lp), beta / 2 * jax.grad(f_ipo)(lp), rtol=1e-4, atol=1e-7)


def test_small_beta_gradient_is_rloo():
    """β → 0: ∂L/∂log π(y_i,t) = −(2/n)(R_i − b_i) with b_i the leave-one-out mean (RLOO)."""
    mask = np.ones((5, 3), np.float32)
    batch = _batch(LOGP, REF, REWARD, GROUP, mask)
    grad = jax.grad(lambda lp: _loss(contrastive_policy_gradient(beta=1e-4), batch.replace(logp_bt=lp))[0])(jnp.asarray(LOGP, jnp.float32))
    r, g = jnp.asarray(REWARD), jnp.asarray(GROUP)
    rloo = r - ops.leave_one_out_baseline(r, g, 5)
    n = np.array([3, 3, 3, 2, 2], np.float32)
    expected = -(2.0 / n)[:, None] * np.asarray(rloo)[:, None] * mask / 2  # averaged over the 2 groups
    np.testing.assert_allclose(grad, expected, rtol=1e-3, atol=1e-4)  # O(β·s) off the limit


def test_masked_rows_and_singletons_are_left_out():
    beta = 0.5
    mask = MASK.copy()
    mask[2] = 0.0  # row 2 fully masked: group 0 keeps rows 0, 1
    mask[4] = 0.0  # group 1 keeps one valid row: no pair
    loss, _ = _loss(contrastive_policy_gradient(beta=beta), _batch(LOGP, REF, REWARD, GROUP, mask))
    s = [((LOGP[i] - REF[i]) * mask[i]).sum() for i in range(2)]
    a = np.asarray(REWARD[:2]) - beta * np.asarray(s)
    np.testing.assert_allclose(loss, (a[0] - a[1]) ** 2 / (2 * beta), rtol=1e-5)
    empty, _ = _loss(contrastive_policy_gradient(beta=beta), _batch(LOGP, REF, REWARD, GROUP, np.zeros_like(MASK)))
    assert float(empty) == 0.0


def test_jit_matches_no_jit_and_errors():
    t = contrastive_policy_gradient(beta=0.1)
    batch = _batch(LOGP, REF, REWARD, GROUP, MASK)
    f = lambda lp: _loss(t, batch.replace(logp_bt=lp))[0]
    lp = jnp.asarray(LOGP, jnp.float32)
    np.testing.assert_allclose(f(lp), jax.jit(f)(lp), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(f)(lp), jax.jit(jax.grad(f))(lp), rtol=1e-5, atol=1e-8)
    assert algorithms.copg().needs == frozenset({"ref_logp"})
    with pytest.raises(ValueError, match="beta"):
        contrastive_policy_gradient(beta=0.0)
    with pytest.raises(ValueError, match="aggregation"):
        contrastive_policy_gradient(beta=0.1, aggregation="seq_mean")


def test_train_step_on_tiny_model():
    cfg = TransformerConfig(vocab_size=8, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16)
    graphdef, params = tiny_params(cfg)
    rng = np.random.default_rng(1)
    batch = Batch(prompt_bp=np.repeat(rng.integers(1, 7, (2, 2)), 4, 0).astype(np.int32),
                  prompt_valid_bp=np.ones((8, 2), bool), response_bt=rng.integers(1, 7, (8, 3)).astype(np.int32),
                  mask_bt=np.ones((8, 3), np.float32), reward_b=np.array([1, 0, 0, 1, 0, 1, 1, 0], np.float32),
                  group_b=(np.arange(8) // 4).astype(np.int32), group_size=4)
    alg = algorithms.copg(learning_rate=1e-2)
    state = steps.init_state(params, alg, jax.random.key(0), ref_params=params)
    train = jax.jit(functools.partial(steps.train_on_batch, algorithm=alg, graphdef=graphdef))
    state, metrics = train(state, batch)
    assert int(state.step) == 1 and np.isfinite(float(metrics["copg"]))
    # at the reference s = 0, so the loss is the rewards' spread: 2/(n−1) Σ (R − R̄)² / (2β) = 2/3 · 1 / 0.2
    assert float(metrics["copg"]) == pytest.approx(2 / 3 / 0.2, rel=1e-5)

"""Tests for T-PPO (polrl.algorithms.tppo): Extended GAE by hand (emulated windows over complete
rows, and real windows of partial rollouts), the finished rows' value loss by hand, one window =
GAE / PPO, jit == no-jit, and a prepare+update on the tiny model with a value head."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import advantages, algorithms
from polrl.algorithms.tppo import egae_advantage, finished_value_loss
from polrl.core import Batch
from polrl.models import TransformerConfig
from polrl.train import steps
from tiny_models import tiny_params


def _batch(values, reward, mask) -> Batch:
    mask = np.asarray(mask, np.float32)
    b, t = mask.shape
    return Batch(prompt_bp=np.ones((b, 1), np.int32), prompt_valid_bp=np.ones((b, 1), bool),
                 response_bt=np.ones((b, t), np.int32), mask_bt=mask,
                 reward_b=np.asarray(reward, np.float32), old_value_bt=np.asarray(values, np.float32) * mask)


def test_egae_hand_values():
    # V = [.1, .2, .3, .4], R = 1 at the last token, γ = 1, λ = 0.5, windows of 2 tokens:
    #   δ = [.1, .1, .1, 1 − .4 = .6];  λ_t = [.5, 0, .5, 0]
    #   Â_3 = .6, Â_2 = .1 + .5·.6 = .4, Â_1 = .1 (cut at the window end), Â_0 = .1 + .5·.1 = .15
    # Row 2 is 3 tokens long: δ = [.1, .1, 1 − .3 = .7], Â_2 = .7, Â_1 = .1, Â_0 = .15.
    # Value targets with λ_v = 1, γ = 1: G_t = R on every valid token.
    batch = _batch([[.1, .2, .3, .4], [.1, .2, .3, .9]], [1.0, 1.0], [[1, 1, 1, 1], [1, 1, 1, 0]])
    out, _ = egae_advantage(window=2, gamma=1.0, lambda_=0.5).apply(batch, ())
    np.testing.assert_allclose(out.adv_bt, [[.15, .1, .4, .6], [.15, .1, .7, 0.0]], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.return_bt, [[1, 1, 1, 1], [1, 1, 1, 0]], rtol=1e-6)
    # one window: plain GAE, Â_1 = .1 + .5·.4 = .3, Â_0 = .1 + .5·.3 = .25
    whole, _ = egae_advantage(window=None, gamma=1.0, lambda_=0.5).apply(batch, ())
    np.testing.assert_allclose(whole.adv_bt[0], [.25, .3, .4, .6], rtol=1e-5)


def _partial_batch():
    """Three rows of a step of partial rollouts (T = 5, this step's window = tokens 2–3):
    row 0 still running (bootstrap V(s_4) = 1), row 1 finished at token 3 with R = 2, row 2
    finished at an earlier step (nothing drawn now)."""
    mask = np.array([[0, 0, 1, 1, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 0]], np.float32)
    full = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], np.float32)
    values = np.array([[0, 0, .2, .4, 0], [0, 0, .5, 1.0, 0], [0, 0, 0, 0, 0]], np.float32)
    return Batch(prompt_bp=np.ones((3, 1), np.int32), prompt_valid_bp=np.ones((3, 1), bool),
                 response_bt=np.ones((3, 5), np.int32), mask_bt=mask, reward_b=np.array([0, 2, 0], np.float32),
                 old_value_bt=values,
                 aux={"finished_b": np.array([0, 1, 0], np.float32), "response_mask_bt": full,
                      "bootstrap_value_b": np.array([1.0, 0, 0], np.float32)})


def test_egae_on_partial_rollouts_by_hand():
    # γ = 0.9, λ = 0.5 (γλ = 0.45).
    # Row 0 (running): δ_3 = γ·1 − .4 = .5, δ_2 = γ·.4 − .2 = .16; Â_3 = .5, Â_2 = .16 + .45·.5 = .385.
    # Row 1 (finished, R = 2): δ_3 = 2 − 1 = 1, δ_2 = γ·1 − .5 = .4; Â_3 = 1, Â_2 = .4 + .45 = .85;
    #   Monte-Carlo targets on its whole response: G_t = γ^{3−t}·2 = [1.458, 1.62, 1.8, 2].
    # Row 2: nothing drawn, not finished now: Â = G = 0.
    out, _ = egae_advantage(window=None, gamma=0.9, lambda_=0.5).apply(_partial_batch(), ())
    np.testing.assert_allclose(out.adv_bt, [[0, 0, .385, .5, 0], [0, 0, .85, 1, 0], [0] * 5], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out.return_bt, [[0] * 5, [1.458, 1.62, 1.8, 2, 0], [0] * 5], rtol=1e-6, atol=1e-7)


def test_finished_value_loss_by_hand():
    # Row 1 only (the finished one), its 4 tokens; clip 0.1 on this step's tokens 2–3 only:
    #   t = 0: V = 1.0, G = 1.458 → .458² ;  t = 1: V = 1.7, G = 1.62 → .08²
    #   t = 2: V = .9, V_old = .5, G = 1.8: max(.9², (.6 − 1.8)² = 1.44) = 1.44
    #   t = 3: V = 1.05, V_old = 1.0, G = 2: max(.95², (1.05 − 2)²) = .9025
    # L = 0.5 · 0.5 · mean of the four.
    batch = _partial_batch()
    prepared, _ = egae_advantage(window=None, gamma=0.9, lambda_=0.5).apply(batch, ())
    value = np.array([[5, 5, 5, 5, 5], [1.0, 1.7, .9, 1.05, 9], [5] * 5], np.float32)
    out, _ = finished_value_loss(coef=0.5, clip=0.1).apply(prepared.replace(value_bt=value), ())
    errs = [.458 ** 2, .08 ** 2, 1.44, .95 ** 2]
    np.testing.assert_allclose(out.losses["value"], 0.25 * np.mean(errs), rtol=1e-5)
    np.testing.assert_allclose(out.metrics["value_error"], np.mean(errs), rtol=1e-5)
    assert not out.terms


def test_partial_rollouts_errors():
    batch = _partial_batch()
    with pytest.raises(ValueError, match="window=None"):
        egae_advantage(window=2).apply(batch, ())
    with pytest.raises(ValueError, match="value_lambda=1.0"):
        egae_advantage(window=None, value_lambda=0.9).apply(batch, ())
    aux = {k: v for k, v in batch.aux.items() if k != "bootstrap_value_b"}
    with pytest.raises(ValueError, match=r"partial_groups\(values=True\)"):
        egae_advantage(window=None).apply(batch.replace(aux=aux), ())


def test_egae_discount_at_window_end():
    # γ = 0.5, λ = 1, W = 1: every token is its own window, Â_t = δ_t = r_t + γ V_{t+1} − V_t
    batch = _batch([[1.0, 2.0, 4.0]], [3.0], [[1, 1, 1]])
    out, _ = egae_advantage(window=1, gamma=0.5, lambda_=1.0, value_lambda=1.0).apply(batch, ())
    np.testing.assert_allclose(out.adv_bt, [[0.5 * 2 - 1, 0.5 * 4 - 2, 3 - 4]], rtol=1e-6)
    # Monte-Carlo targets: G = [γ² R, γ R, R]
    np.testing.assert_allclose(out.return_bt, [[0.75, 1.5, 3.0]], rtol=1e-6)


@pytest.mark.parametrize("window", [None, 4, 9])
def test_one_window_is_gae(window):
    rng = np.random.default_rng(0)
    mask = np.ones((3, 4), np.float32)
    mask[1, 2:] = 0
    batch = _batch(rng.normal(size=(3, 4)), rng.normal(size=3), mask)
    ours, _ = egae_advantage(window=window, gamma=0.9, lambda_=0.8, value_lambda=0.8).apply(batch, ())
    ref, _ = advantages.gae_advantage(gamma=0.9, lambda_=0.8).apply(batch, ())
    np.testing.assert_allclose(ours.adv_bt, ref.adv_bt, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours.return_bt, ref.return_bt, rtol=1e-6, atol=1e-7)


def test_tppo_without_window_is_ppo():
    """Same prepare and objective outputs as ``ppo`` when value targets use the policy's λ."""
    rng = np.random.default_rng(1)
    batch = _batch(rng.normal(size=(4, 3)), [1, 0, 1, 0], np.ones((4, 3)))
    scored = lambda b: b.replace(logp_bt=jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) - 1.0,
                                 old_logp_bt=jnp.full((4, 3), -1.0), entropy_bt=jnp.ones((4, 3)),
                                 value_bt=jnp.asarray(rng.normal(size=(4, 3)), jnp.float32))
    t_alg, p_alg = algorithms.tppo(window=None, value_lambda=0.95), algorithms.ppo()
    t_b, _ = t_alg.prepare.apply(batch, t_alg.prepare.init())
    p_b, _ = p_alg.prepare.apply(batch, p_alg.prepare.init())
    np.testing.assert_allclose(t_b.adv_bt, p_b.adv_bt, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(t_b.return_bt, p_b.return_bt, rtol=1e-6)
    s = scored(t_b)
    t_out, _ = t_alg.objective.apply(s, t_alg.objective.init())
    p_out, _ = p_alg.objective.apply(s.replace(adv_bt=p_b.adv_bt, return_bt=p_b.return_bt), p_alg.objective.init())
    assert t_out.losses.keys() == p_out.losses.keys() == {"pg", "value"}
    for k in t_out.losses:
        np.testing.assert_allclose(t_out.losses[k], p_out.losses[k], rtol=1e-6)


def test_jit_matches_no_jit():
    rng = np.random.default_rng(2)
    batch = _batch(rng.normal(size=(3, 5)), rng.normal(size=3), np.ones((3, 5)))
    t = egae_advantage(window=2, gamma=0.95, lambda_=0.9)
    eager, _ = t.apply(batch, ())
    jitted, _ = jax.jit(lambda b: t.apply(b, ()))(batch)
    np.testing.assert_allclose(eager.adv_bt, jitted.adv_bt, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(eager.return_bt, jitted.return_bt, rtol=1e-6, atol=1e-7)


def test_noun_and_errors():
    alg = algorithms.tppo(window=2)
    assert alg.needs == frozenset({"values"})
    assert algorithms.tppo(kl_coef=0.1).needs == frozenset({"values", "ref_logp"})
    with pytest.raises(ValueError, match="window"):
        egae_advantage(window=0)
    # the sampler/trainer correction is taken (it weighs the window's tokens); a KL in the reward is not
    assert "old_logp" in algorithms.tppo(correction="token_truncate").needs
    with pytest.raises(TypeError, match="kl_in"):
        algorithms.tppo(kl_in="reward")


def test_tiny_model_prepare_and_update():
    cfg = TransformerConfig(vocab_size=8, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1,
                            mlp_dim=32, max_len=16, value_head=True)
    graphdef, params = tiny_params(cfg)
    alg = algorithms.tppo(window=2, learning_rate=1e-2)
    rng = np.random.default_rng(3)
    mask = np.ones((8, 3), np.float32)
    mask[2, 2:] = 0
    batch = Batch(prompt_bp=rng.integers(1, 7, (8, 2)).astype(np.int32), prompt_valid_bp=np.ones((8, 2), bool),
                  response_bt=rng.integers(1, 7, (8, 3)).astype(np.int32), mask_bt=mask,
                  reward_b=np.array([1, 0, 1, 1, 0, 0, 1, 0], np.float32),
                  group_b=(np.arange(8) // 4).astype(np.int32), group_size=4)
    state = steps.init_state(params, alg, jax.random.key(0))
    train = jax.jit(functools.partial(steps.train_on_batch, algorithm=alg, graphdef=graphdef))
    new_state, metrics = train(state, batch)
    assert int(new_state.step) == 1
    assert {"pg", "value", "value_error", "clip_frac"} <= set(metrics)
    assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values())
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), new_state.params, params)
    assert max(jax.tree.leaves(moved)) > 0

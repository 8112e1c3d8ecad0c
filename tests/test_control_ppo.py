"""Control PPO: the LLM side's transforms (identity), learning CartPole, vmap over seeds and
hyper-parameters (continuous actions run in tests/test_control_experiments.py)."""
import collections

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import polrl
from polrl import advantages, objectives, ops
from polrl.control import algorithms as control_algorithms
from polrl.control import make_train
from polrl.control import advantages as control_advantages


def config(**over):
    c = ml_collections.ConfigDict(dict(
        env_name="CartPole-v1", env_params={}, num_envs=4, num_steps=128, total_timesteps=50_000,
        gamma=0.99, bootstrap_truncation=True, hidden=(64, 64), activation="tanh",
        algorithm="ppo", algorithm_kwargs={},
    ))
    c.update(over)
    return c


SHARED = {
    objectives: ["clipped_policy_gradient", "value_loss", "entropy_bonus", "aggregate"],
    advantages: ["whiten_advantage"],
}


def test_control_ppo_builds_its_loss_from_the_llm_transforms(monkeypatch):
    calls = collections.Counter()
    for module, names in SHARED.items():
        for name in names:
            original = getattr(module, name)

            def spy(*args, _original=original, _name=name, **kwargs):
                calls[_name] += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(module, name, spy)
    polrl.algorithms.ppo(entropy_coef=0.01)
    llm = set(calls)
    calls.clear()
    control_algorithms.ppo(num_updates=1)
    # every factory the LLM noun uses for its loss builds the control loss too (same objects)
    assert {"clipped_policy_gradient", "value_loss", "entropy_bonus", "aggregate"} <= llm & set(calls)
    assert "whiten_advantage" in calls
    assert control_algorithms.objectives is polrl.objectives
    assert control_algorithms.advantages is polrl.advantages


def test_control_advantages_are_ops_gae(monkeypatch):
    seen = []
    original = ops.gae

    def spy(*args, **kwargs):
        seen.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(ops, "gae", spy)
    assert control_advantages.ops is polrl.ops
    from polrl.control.batch import ControlBatch

    n, t = 3, 5
    batch = ControlBatch(
        prompt_bp=jnp.zeros((n, 0), jnp.int32), prompt_valid_bp=jnp.zeros((n, 0), bool),
        response_bt=jnp.zeros((n, t), jnp.int32), mask_bt=jnp.ones((n, t)),
        reward_bt=jnp.ones((n, t)), discount_bt=jnp.full((n, t), 0.9), old_value_bt=jnp.zeros((n, t)),
    )
    out, _ = control_advantages.stepwise_gae(lambda_=1.0).apply(batch, ())
    assert seen == [(t,)]  # one trace, vmapped over the n rows
    # λ = 1, V = 0, γ = 0.9 and the last step's discount as given: A_t = Σ_k 0.9^k over the tail
    expected = [sum(0.9**k for k in range(t - i)) for i in range(t)]
    np.testing.assert_allclose(out.adv_bt, np.tile(expected, (n, 1)), rtol=1e-6)


def test_ppo_learns_cartpole_in_50k_steps():
    _, metrics = jax.jit(make_train(config()))(jax.random.key(0))
    ret = np.asarray(metrics["mean_return"])
    assert ret.shape == (97,)  # 50 000 // (4 × 128) updates
    assert ret[:3].max() < 60
    assert ret[-10:].mean() > 120, ret[-10:]
    assert np.isfinite(np.asarray(metrics["loss"])).all()
    assert 0.0 <= float(metrics["clip_frac"].max()) <= 1.0


def _small(**over):
    return config(num_steps=16, total_timesteps=3 * 4 * 16, algorithm_kwargs=dict(num_minibatches=2, num_epochs=2), **over)


def _allclose(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=2e-6)


def test_vmap_over_seeds_and_hyperparameters_equals_separate_runs():
    train = make_train(_small())
    keys = jax.random.split(jax.random.key(3), 4)
    lrs = jnp.array([2.5e-4, 2.5e-4, 1e-3, 1e-3])
    (state, _), metrics = jax.jit(jax.vmap(train))(keys, {"learning_rate": lrs})
    one = jax.jit(train)
    for i in range(4):
        (s_i, _), m_i = one(keys[i], {"learning_rate": lrs[i]})
        _allclose(jax.tree.map(lambda x: x[i], state.params), s_i.params)
        _allclose({k: v[i] for k, v in metrics.items()}, m_i)
    leaf = jax.tree.leaves(state.params)[0]
    assert not np.allclose(leaf[0], leaf[1])  # different seeds, different runs
    assert not np.allclose(leaf[1], leaf[3])


def test_bad_configs_fail_clearly():
    with pytest.raises(ValueError, match="algorithm='grpo' is not a control algorithm"):
        make_train(config(algorithm="grpo"))
    with pytest.raises(ValueError, match="less than one update"):
        make_train(config(total_timesteps=100))
    with pytest.raises(ValueError, match="not divisible by num_minibatches=3"):
        make_train(config(algorithm_kwargs=dict(num_minibatches=3)))
    with pytest.raises(TypeError, match="clip"):
        make_train(config(algorithm_kwargs=dict(clip=0.1)))

"""polrl.control distributions and NNX actor-critic: hand values for log-prob, entropy, KL."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl.control import envs, policies
from polrl.control.distributions import Categorical, DiagGaussian


def test_categorical_by_hand():
    p = np.array([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]])
    q = np.array([[0.25, 0.25, 0.5], [0.3, 0.3, 0.4]])
    dp, dq = Categorical(jnp.log(p)), Categorical(jnp.log(q) + 7.0)  # logits up to a constant
    np.testing.assert_allclose(dp.log_prob(jnp.array([0, 2])), np.log([0.5, 0.3]), rtol=1e-6)
    np.testing.assert_allclose(dp.entropy(), -(p * np.log(p)).sum(-1), rtol=1e-6)
    # first row: 0.5 ln 2 + 0 + 0.25 ln ½
    np.testing.assert_allclose(dp.kl(dq)[0], 0.5 * math.log(2) + 0.25 * math.log(0.5), rtol=1e-6)
    np.testing.assert_allclose(dp.kl(dq), (p * np.log(p / q)).sum(-1), rtol=1e-5)
    np.testing.assert_allclose(dp.kl(dp), 0.0, atol=1e-7)
    np.testing.assert_allclose(dp.probs(), p, rtol=1e-6)


def test_categorical_samples_follow_probs():
    d = Categorical(jnp.log(jnp.array([[0.2, 0.8]])).repeat(20000, 0))
    freq = d.sample(jax.random.key(0)).mean()
    assert abs(float(freq) - 0.8) < 0.01


def test_gaussian_by_hand():
    mean, log_std = jnp.array([[0.0, 1.0]]), jnp.log(jnp.array([[1.0, 2.0]]))
    d = DiagGaussian(mean, log_std)
    a = jnp.array([[1.0, 0.0]])
    # N(1; 0, 1) and N(0; 1, 4)
    expected = -0.5 - 0.5 * math.log(2 * math.pi) + (-0.5 * 0.25 - math.log(2) - 0.5 * math.log(2 * math.pi))
    np.testing.assert_allclose(d.log_prob(a), [expected], rtol=1e-6)
    np.testing.assert_allclose(d.entropy(), [0.5 * math.log(2 * math.pi * math.e) * 2 + math.log(2)], rtol=1e-6)
    other = DiagGaussian(jnp.array([[1.0, 1.0]]), jnp.log(jnp.array([[2.0, 2.0]])))
    # dim 0: log 2 + (1 + 1)/8 − ½; dim 1: 0 + 4/8 − ½
    np.testing.assert_allclose(d.kl(other), [math.log(2) + 0.25 - 0.5], rtol=1e-6)
    np.testing.assert_allclose(d.kl(d), [0.0], atol=1e-7)


def test_gaussian_samples_moments():
    d = DiagGaussian(jnp.full((50000, 1), 2.0), jnp.full((50000, 1), math.log(0.5)))
    x = d.sample(jax.random.key(0))
    assert abs(float(x.mean()) - 2.0) < 0.01 and abs(float(x.std()) - 0.5) < 0.01


@pytest.mark.parametrize("name", ["CartPole-v1", "Pendulum-v1", "Breakout-MinAtar"])
def test_actor_critic_shapes_and_init(name):
    env = envs.make(name, 1)
    model = policies.build(policies.ActorCritic, env.obs_shape, env.action)
    params = model.init(jax.random.key(0))
    obs = jnp.ones((5, *env.obs_shape))
    dist, value = model.apply(params, obs)
    assert value.shape == (5,)
    if env.action.discrete:
        assert dist.logits.shape == (5, env.action.num_actions)
        # the 0.01-gain policy head starts near uniform
        np.testing.assert_allclose(dist.probs(), 1.0 / env.action.num_actions, atol=0.02)
    else:
        assert dist.mean.shape == (5, 1)
        np.testing.assert_allclose(dist.log_std, 0.0)  # state-independent, initialised at σ = 1
    same = model.init(jax.random.key(0))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), params, same))
    widths = [int(x.shape[-1]) for x in jax.tree.leaves(params) if x.ndim == 2]
    assert widths.count(64) == 4  # tanh 64 × 64, actor and critic


def test_unknown_activation():
    env = envs.make("CartPole-v1", 1)
    with pytest.raises(ValueError, match="activation='gelu'"):
        policies.build(policies.ActorCritic, env.obs_shape, env.action, activation="gelu")


def test_vmapped_init_is_per_key_init_with_unbatched_qr():
    # vmap(init) runs the keys one at a time (lax.map): bit-identical to calling init per key,
    # and every LAPACK QR of the orthogonal initialisers stays unbatched (batched QRs can
    # deadlock XLA:CPU's thread pool), also under nested vmaps (seeds × hyper-parameters)
    env = envs.make("CartPole-v1", 2)
    model = policies.build(policies.ActorCritic, env.obs_shape, env.action)
    keys = jax.random.split(jax.random.key(3), 3)
    batched = jax.jit(jax.vmap(model.init))(keys)
    for i, key in enumerate(keys):
        one = model.init(key)
        for x, y in zip(jax.tree.leaves(batched), jax.tree.leaves(one)):
            np.testing.assert_array_equal(np.asarray(x[i]), np.asarray(y))
    nested = jax.jit(jax.vmap(jax.vmap(model.init))).lower(jnp.stack([keys, keys])).as_text()
    qr_calls = [line for line in nested.splitlines() if "geqrf" in line]
    assert qr_calls and all('num_batch_dims = "0"' in line for line in qr_calls)

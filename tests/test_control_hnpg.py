"""HNPG: the combination lock by hand, the NPG step against a dense natural-gradient solve (the
surrogate is the LLM side's clipped_policy_gradient with ε = ∞), per-step offline data, and the
:smoke config through the launcher entry."""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import polrl
from polrl.control import combination_lock, envs, hnpg, offline_data, policies
from control_testing import run_smoke_config


def test_hadamard_is_orthogonal_up_to_scale():
    h = combination_lock.hadamard(8)
    np.testing.assert_array_equal(h @ h.T, 8 * np.eye(8))
    with pytest.raises(ValueError, match="power of two"):
        combination_lock.hadamard(6)


def lock_env(**overrides):
    params = dict(p_switch=0.0, p_anti_reward=1.0, noise=0.0)
    return combination_lock.make(1, horizon=3, action_dim=4, lock_seed=2, **{**params, **overrides})


def run_episode(env, digits):
    """Plays the digits (as ±20 one-hot logits: the env's softmax picks them surely)."""
    obs, state = env.reset(jax.random.key(0))
    rewards, observations = [], [obs]
    for h, d in enumerate(digits):
        obs, state, out = env.step(jax.random.key(h + 1), state, 40.0 * jax.nn.one_hot(jnp.array([d]), 4) - 20.0)
        rewards.append(float(out.reward[0]))
        observations.append(out.final_obs)
    return rewards, observations, out


def test_lock_pays_one_for_the_combination_and_the_distractor_otherwise():
    env = lock_env()
    latent = int(env.reset(jax.random.key(0))[1].latent[0])  # p_switch = 0: starts in B and stays
    assert latent == 1
    right = [int(d) for d in env.params.opt_b]
    rewards, observations, out = run_episode(env, right)
    assert rewards == [0.0, 0.0, 1.0] and bool(out.terminated[0]) and not bool(out.truncated[0])
    # noise-free observation at step h: R (e_latent + e_{3+h}), R the 8 × 8 Hadamard matrix
    r = combination_lock.hadamard(8)
    for h, obs in enumerate(observations):
        np.testing.assert_allclose(obs[0], r @ (np.eye(8)[1] + np.eye(8)[3 + h]), atol=1e-6)
    wrong = [(right[0] + 1) % 4] + right[1:]
    rewards, observations, _ = run_episode(env, wrong)
    assert rewards == [0.0, 0.0, pytest.approx(0.1)]  # dead after step 0; anti-reward w.p. 1
    np.testing.assert_allclose(observations[1][0], r @ (np.eye(8)[2] + np.eye(8)[4]), atol=1e-6)


def test_epsilon_optimal_behaviour_plays_the_combination():
    env = lock_env()
    _, state = env.reset(jax.random.key(0))
    state = jax.tree.map(lambda x: x[0], state)
    action = combination_lock.epsilon_optimal_action(jax.random.key(1), env.env, state, env.params, 0.0)
    np.testing.assert_array_equal(action, jax.nn.one_hot(env.params.opt_b[0], 4))


def tiny_actor():
    spec = envs.ActionSpec(dim=1, low=-1.0, high=1.0)
    return policies.build(policies.Actor, (2,), spec, hidden=(2,))


def test_npg_step_is_the_damped_natural_gradient_scaled_to_the_kl_radius():
    actor = tiny_actor()
    params = actor.init(jax.random.key(0))
    obs = jax.random.normal(jax.random.key(1), (32, 2))
    action = jax.random.normal(jax.random.key(2), (32, 1))
    adv = jax.random.normal(jax.random.key(3), (32,))
    new, stats = jax.jit(lambda p: hnpg.npg_step(actor.apply, p, obs, action, adv, max_kl=0.01, damping=0.1))(params)

    flat, unravel = ravel_pytree(params)  # 10 parameters: 10 CG iterations solve exactly
    fixed = actor.apply(params, obs)

    def loss(x):
        ratio = jnp.exp(actor.apply(unravel(x), obs).log_prob(action) - fixed.log_prob(action))
        return -(adv * ratio).mean()

    kl = lambda x: fixed.kl(actor.apply(unravel(x), obs)).mean()
    fisher = np.asarray(jax.jit(jax.hessian(kl))(flat), np.float64) + 0.1 * np.eye(flat.size)
    g = np.asarray(jax.jit(jax.grad(loss))(flat), np.float64)
    x = np.linalg.solve(fisher, -g)
    full = x * np.sqrt(0.01 / (0.5 * x @ fisher @ x))
    step = np.asarray(ravel_pytree(new)[0] - flat, np.float64)
    assert float(stats["step_frac"]) > 0
    np.testing.assert_allclose(step, float(stats["step_frac"]) * full, rtol=2e-3, atol=1e-6)
    assert float(stats["loss_after"]) < float(stats["loss_before"])
    assert float(stats["kl"]) <= 0.01 * 1.05


def test_npg_step_without_signal_does_not_move():
    actor = tiny_actor()
    params = actor.init(jax.random.key(0))
    obs, action = jnp.ones((4, 2)), jnp.zeros((4, 1))
    new, stats = jax.jit(lambda p: hnpg.npg_step(actor.apply, p, obs, action, jnp.zeros((4,))))(params)
    assert float(stats["step_frac"]) == 0.0
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)


def test_surrogate_is_the_shared_unclipped_policy_gradient():
    from polrl.control.state_batch import transition_batch

    batch = transition_batch(jnp.zeros((2,), jnp.int32), jnp.log(jnp.array([0.5, 0.5])), jnp.array([2.0, -1.0]))
    batch = batch.replace(logp_bt=jnp.log(jnp.array([[0.9], [0.1]])))
    objective = hnpg.surrogate_objective()
    out, _ = objective.apply(batch, objective.init())
    # −mean(A·ρ) with ρ = [1.8, 0.2], no clip
    np.testing.assert_allclose(out.losses["pg"], -(2.0 * 1.8 - 1.0 * 0.2) / 2, rtol=1e-6)
    assert hnpg.objectives is polrl.objectives


def test_per_step_data_groups_whole_episodes():
    n, horizon = 6, 3
    data = offline_data.Transitions(
        obs=np.arange(n, dtype=np.float32)[:, None], action=np.zeros((n, 2), np.float32),
        reward=np.arange(n, dtype=np.float32), next_obs=np.zeros((n, 1), np.float32),
        terminated=np.tile([False, False, True], 2), truncated=np.zeros(n, bool),
        time=np.tile(np.arange(3, dtype=np.int32), 2), expert=np.zeros(n, bool),
    )
    grouped = hnpg.per_step_data(data, horizon)
    np.testing.assert_array_equal(grouped.reward, [[0, 3], [1, 4], [2, 5]])
    assert grouped.obs.shape == (3, 2, 1) and grouped.action.shape == (3, 2, 2)
    with pytest.raises(ValueError, match="whole episodes"):
        hnpg.per_step_data(data._replace(time=np.arange(n, dtype=np.int32)), horizon)


def test_config_must_use_the_data_lock():
    config = importlib.import_module("experiments.lock_hnpg").get_config("smoke")
    config.offline_data.env_kwargs.lock_seed = 7
    with pytest.raises(ValueError, match="same lock"):
        hnpg.make_run(config)


@pytest.mark.slow
def test_smoke_config_runs_through_the_launcher_entry(tmp_path):
    _, records = run_smoke_config("lock_hnpg", tmp_path, data_dir=True)
    assert [r["step"] for r in records] == [20, 40] and all(r["phase"] == "control" for r in records)
    assert all(0.0 <= r["mean_return"] <= 1.0 and r["kl"] <= 0.0105 for r in records)

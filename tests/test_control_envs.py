"""polrl.control.envs / rollout: auto-reset, terminated vs truncated, bootstrapped streams."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl.control import batch as batch_lib
from polrl.control import envs, policies, rollout
from polrl.control.advantages import stepwise_gae


def test_unknown_env_and_param_fail_clearly():
    with pytest.raises(ValueError, match=r"env_name='Pong'.*CartPole-v1"):
        envs.make("Pong", 2)
    with pytest.raises(ValueError, match=r"unknown env_params \['max_step'\]"):
        envs.make("CartPole-v1", 2, max_step=3)
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        envs.make("CartPole-v1", 0)


@pytest.mark.parametrize(
    "name,obs_shape,discrete",
    [("CartPole-v1", (4,), True), ("Acrobot-v1", (6,), True), ("Pendulum-v1", (3,), False),
     ("Breakout-MinAtar", (10, 10, 4), True)],
)
def test_spaces_and_shapes(name, obs_shape, discrete):
    env = envs.make(name, 3)
    assert env.obs_shape == obs_shape and env.action.discrete == discrete
    obs, state = env.reset(jax.random.key(0))
    assert obs.shape == (3, *obs_shape) and obs.dtype == jnp.float32
    action = jnp.zeros((3,), jnp.int32) if discrete else jnp.zeros((3, env.action.dim))
    obs2, _, out = env.step(jax.random.key(1), state, action)
    assert obs2.shape == obs.shape and out.reward.shape == (3,) and out.final_obs.shape == obs.shape


def test_time_limit_truncates_and_auto_resets():
    env = envs.make("CartPole-v1", 2, max_steps_in_episode=3)
    obs, state = env.reset(jax.random.key(0))
    action = jnp.array([0, 1])
    for i in range(3):
        prev = obs
        obs, state, out = env.step(jax.random.key(i + 1), state, action)
        # three small steps from the centre never reach CartPole's terminal conditions
        assert not out.terminated.any()
        assert bool(out.truncated.all()) == (i == 2)
    # the step reached final_obs (continuing from prev), then the env restarted elsewhere
    assert not np.allclose(out.final_obs, obs)
    assert np.all(np.abs(obs) <= 0.05)  # CartPole's reset draws every coordinate in ±0.05
    assert np.allclose(out.final_obs[:, 0], prev[:, 0] + 0.02 * prev[:, 1], atol=1e-6)  # Euler step
    assert (state.time == 0).all()


def test_terminal_step_is_not_truncation():
    # a pole that starts past CartPole's 12° limit terminates at once, even at the time limit
    env = envs.make("CartPole-v1", 1, max_steps_in_episode=1)
    _, state = env.reset(jax.random.key(0))
    state = state.replace(theta=jnp.array([0.5]))
    _, _, out = env.step(jax.random.key(1), state, jnp.array([0]))
    assert bool(out.terminated[0]) and not bool(out.truncated[0])


def _traj(reward, terminated, truncated, value, final_value):
    f = lambda x: jnp.asarray(x, jnp.float32)[:, None]  # T steps of 1 env
    b = lambda x: jnp.asarray(x, bool)[:, None]
    t = len(reward)
    return rollout.Trajectory(
        obs=jnp.zeros((t, 1, 1)), action=jnp.zeros((t, 1), jnp.int32), logp=jnp.zeros((t, 1)),
        value=f(value), reward=f(reward), terminated=b(terminated), truncated=b(truncated),
        final_value=f(final_value), episode_return=jnp.zeros((t, 1)),
    )


def test_bootstrapped_streams_and_gae_by_hand():
    g, lam = 0.9, 0.5
    # steps: 0 plain, 1 truncated (V(final)=10), 2 terminated, 3 plain (rollout end, V(s_T)=4)
    traj = _traj([1, 1, 1, 1], [0, 0, 1, 0], [0, 1, 0, 0], [2, 3, 5, 7], [0, 10, 0, 0])
    reward, discount = rollout.bootstrapped_streams(traj, jnp.array([4.0]), g)
    np.testing.assert_allclose(reward[0], [1, 1 + g * 10, 1, 1 + g * 4], rtol=1e-6)
    np.testing.assert_allclose(discount[0], [g, 0, 0, 0], rtol=1e-6)
    batch = batch_lib.from_trajectory(traj, jnp.array([4.0]), g)
    out, _ = stepwise_gae(lambda_=lam).apply(batch, ())
    # δ by hand: the truncated step bootstraps V(final)=10, not V(s_2)=5
    d3 = 1 + g * 4 - 7
    d2 = 1 - 5
    d1 = 1 + g * 10 - 3
    d0 = 1 + g * 3 - 2
    expected = [d0 + g * lam * d1, d1, d2, d3]
    np.testing.assert_allclose(out.adv_bt[0], expected, rtol=1e-6)
    np.testing.assert_allclose(out.return_bt[0], np.array(expected) + [2, 3, 5, 7], rtol=1e-6)


def test_bootstrap_matches_plain_gae_with_next_values():
    # Without truncation, folding V(s_T) into the last reward equals GAE with V_T = V(s_T).
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=6), rng.normal(size=6)
    done = np.array([0, 0, 1, 0, 0, 0], bool)
    last = 0.7
    traj = _traj(r, done, np.zeros(6, bool), v, np.zeros(6))
    out, _ = stepwise_gae(lambda_=0.95).apply(batch_lib.from_trajectory(traj, jnp.array([last]), 0.99), ())
    adv, nxt = np.zeros(6), 0.0
    values = np.append(v, last)
    for t in reversed(range(6)):
        nonterminal = 1.0 - done[t]
        delta = r[t] + 0.99 * values[t + 1] * nonterminal - values[t]
        nxt = delta + 0.99 * 0.95 * nonterminal * nxt
        adv[t] = nxt
    np.testing.assert_allclose(out.adv_bt[0], adv, rtol=1e-5, atol=1e-6)


def test_rollout_returns_and_episode_bookkeeping():
    env = envs.make("CartPole-v1", 3, max_steps_in_episode=4)
    model = policies.build(policies.ActorCritic, env.obs_shape, env.action)
    params = model.init(jax.random.key(0))
    carry = rollout.reset(env, jax.random.key(1))
    fn = lambda o: model.apply(params, o)
    carry, traj, last_value = jax.jit(
        lambda c, k: rollout.rollout(env, fn, lambda o: fn(o)[1], c, k, 10, keep_dist=True)
    )(carry, jax.random.key(2))
    assert traj.obs.shape == (10, 3, 4) and traj.dist.logits.shape == (10, 3, 2)
    assert last_value.shape == (3,)
    # every episode ends by step 4 at the latest, its return is its length (reward 1 per step)
    done = np.asarray(traj.done)
    assert done[3].all() and done[7].all()
    ends = np.asarray(traj.episode_return)[done]
    assert ((ends >= 1) & (ends <= 4)).all()
    np.testing.assert_allclose(np.asarray(traj.final_value)[~np.asarray(traj.truncated)], 0.0)
    truncated = np.asarray(traj.truncated)
    assert truncated.any() and (np.asarray(traj.final_value)[truncated] != 0).all()
    np.testing.assert_allclose(traj.logp, jax.vmap(lambda d, a: d.log_prob(a))(traj.dist, traj.action), rtol=1e-6)


def test_truncation_values_gathers_only_the_possible_truncations():
    env = envs.make("CartPole-v1", 3, max_steps_in_episode=4)
    obs = jax.random.normal(jax.random.key(0), (10, 3, 4))
    truncated = np.zeros((10, 3), bool)
    truncated[[3, 7], 0] = True  # at most ⌈10/4⌉ = 3 per environment
    truncated[[1, 5, 9], 1] = True
    value_fn = lambda o: o.sum(-1) + 1.0
    calls = []
    out = rollout.truncation_values(env, lambda o: calls.append(o.shape) or value_fn(o), obs, jnp.asarray(truncated))
    assert calls == [(9, 4)]  # N·⌈T/L⌉ rows, not T·N = 30
    np.testing.assert_allclose(out, np.where(truncated, value_fn(obs), 0.0), rtol=1e-6)

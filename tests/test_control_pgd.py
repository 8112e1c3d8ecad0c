"""PGD trainer: episode windows and their decoding by hand, the AWR loss against hand values, the
relaxed log-likelihood equal to log π at one-hot actions, config refusals, and the :smoke config
through the launcher entry."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from polrl.control import envs, offline_data, pgd, policies
from control_testing import run_smoke_config


def _data():
    # two episodes: times 0 1 2 (terminal at 2), then 0 1; obs = row index, action alternates
    n = 5
    return offline_data.Transitions(
        obs=np.arange(n, dtype=np.float32)[:, None], action=np.array([0, 1, 0, 1, 0], np.int32),
        reward=np.ones(n, np.float32), next_obs=np.arange(1, n + 1, dtype=np.float32)[:, None],
        terminated=np.array([0, 0, 1, 0, 0], bool), truncated=np.zeros(n, bool),
        time=np.array([0, 1, 2, 0, 1], np.int32), expert=np.ones(n, bool),
    )


def test_episode_windows_stay_inside_one_episode_and_decode_back():
    w = pgd.episode_windows(_data(), 2, 2)
    # starts 0, 1 (first episode) and 3 (second); start 2 would cross the episode boundary
    np.testing.assert_array_equal(w[:, 0, 0], [0, 1, 3])
    # row = [s, one-hot(a), r, terminal, s']
    np.testing.assert_array_equal(w[1], [[1, 0, 1, 1, 0, 2], [2, 1, 0, 1, 1, 3]])
    out = pgd.decode(jnp.asarray(w.reshape(-1, 6)), 1, 2)
    np.testing.assert_array_equal(out.obs[:, 0], [0, 1, 1, 2, 3, 4])
    np.testing.assert_array_equal(out.action, [0, 1, 1, 0, 1, 0])
    np.testing.assert_array_equal(out.terminated, [0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(out.next_obs[:, 0], [1, 2, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="config.pgd.horizon"):
        pgd.episode_windows(_data(), 4, 2)


def test_awr_loss_hand_values_and_detached_advantage():
    logp, adv = jnp.array([-1.0, -2.0]), jnp.array([0.0, 10.0])
    # weights min(exp(3·0), 100) = 1 and min(exp(30), 100) = 100: −mean(1·(−1), 100·(−2)) = 100.5
    np.testing.assert_allclose(pgd.awr_loss(logp, adv, 3.0), 100.5, rtol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda a: pgd.awr_loss(logp, a, 3.0))(adv), [0.0, 0.0])
    np.testing.assert_allclose(jax.grad(lambda l: pgd.awr_loss(l, adv, 3.0))(logp), [-0.5, -50.0], rtol=1e-6)


def test_relaxed_log_policy_is_log_pi_at_one_hot_actions():
    env = envs.make("CartPole-v1", 1)
    actor = policies.build(policies.Actor, env.obs_shape, env.action, hidden=(8,))
    params = actor.init(jax.random.key(0))
    obs = jax.random.normal(jax.random.key(1), (3, 4))
    action = jnp.array([1, 0, 1])
    rows = jnp.concatenate([obs, jax.nn.one_hot(action, 2)], axis=1)
    mean, std = jnp.full(6, 0.5), jnp.full(6, 2.0)
    log_policy = pgd.relaxed_log_policy(actor.apply, params, 4, 2, mean, std)
    expected = actor.apply(params, obs).log_prob(action).sum()
    np.testing.assert_allclose(log_policy((rows - mean) / std), expected, rtol=1e-5)
    # the gradient on the action columns is log π(k|s)·(std of the column)
    grad = jax.grad(log_policy)((rows - mean) / std)
    logp_all = jnp.stack([actor.apply(params, obs).log_prob(jnp.full(3, k)) for k in range(2)], -1)
    np.testing.assert_allclose(grad[:, 4:6], 2.0 * logp_all, rtol=1e-5)


@pytest.mark.parametrize("field, value, match", [
    ("synthetic_fraction", 1.0, "synthetic_fraction"), ("eval_every", 7, "multiple"), ("horizonn", 2, "unknown"),
])
def test_bad_config_is_refused_in_one_line(field, value, match):
    config = ml_collections.ConfigDict(dict(pgd={field: value}, total_timesteps=3_000))
    with pytest.raises(ValueError, match=match) as error:
        pgd.hyper(config)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="config.total_timesteps=0"):
        pgd.hyper(ml_collections.ConfigDict(dict(pgd={})))


@pytest.mark.slow
def test_smoke_config_runs_through_the_launcher_entry(tmp_path):
    summary, records = run_smoke_config("cartpole_pgd", tmp_path, data_dir=True)
    assert [r["step"] for r in records] == [2, 4] and all(r["phase"] == "control" for r in records)
    assert all(np.isfinite(r["mean_return"]) and np.isfinite(r["target_return"]) for r in records)
    assert np.isfinite(summary["synthetic_logp"]) and summary["synthetic_logp"] <= 0

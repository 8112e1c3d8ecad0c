"""Offline control datasets: the TFDS builder round trip (array_record, as_data_source), the cache,
the transitions' consistency, the expert/noisy mix, the episode returns and config validation."""
import dataclasses

import numpy as np
import pytest

from polrl.control import offline_data

LOCK = dict(env_name="CombinationLock", env_kwargs={"horizon": 3, "action_dim": 4, "lock_seed": 1},
            train_timesteps=0, num_envs=2, num_steps=12, expert_fraction=0.5, noise=0.5, seed=3)


def config(**kwargs):
    return offline_data.OfflineControlConfig(**offline_data.config_kwargs(kwargs))


def check_next_obs(data, num_envs, num_steps):
    """next_obs[t] is obs[t+1] of the same environment wherever the episode goes on."""
    done = data.terminated | data.truncated
    for e in range(num_envs):
        rows = slice(e * num_steps, (e + 1) * num_steps - 1)
        cont = ~done[rows]
        np.testing.assert_array_equal(data.next_obs[rows][cont], data.obs[e * num_steps + 1:(e + 1) * num_steps][cont])


def test_lock_dataset_round_trip_and_cache(tmp_path, monkeypatch):
    data = offline_data.load(str(tmp_path), **LOCK)
    direct = offline_data.collect(config(**LOCK))
    for name in offline_data.Transitions._fields:
        np.testing.assert_array_equal(getattr(data, name), getattr(direct, name), err_msg=name)
    assert data.obs.shape == (24, 8) and data.action.shape == (24, 4) and data.action.dtype == np.float32
    # episodes of H = 3: time indices 0 1 2 repeat, reward only on the last step, which terminates
    np.testing.assert_array_equal(data.time, np.tile([0, 1, 2], 8))
    assert np.all(data.reward[data.time < 2] == 0) and np.all(data.terminated == (data.time == 2))
    assert set(np.unique(data.reward[data.time == 2])) <= {0.0, 0.1, 1.0} and not data.truncated.any()
    np.testing.assert_array_equal(data.expert, np.repeat([True, False], 12))
    # the expert rows (ε = 0) always open the lock
    assert np.all(data.reward[data.expert & (data.time == 2)] == 1.0)
    check_next_obs(data, 2, 12)

    def no_collect(cfg):
        raise AssertionError("the second load must read the prepared dataset")

    monkeypatch.setattr(offline_data, "collect", no_collect)
    again = offline_data.load(str(tmp_path), **LOCK)
    np.testing.assert_array_equal(again.obs, data.obs)


def test_cartpole_mixture_trains_ppo_and_mixes_behaviours():
    cfg = config(env_name="CartPole-v1", env_kwargs={}, train_timesteps=512, num_envs=4, num_steps=40,
                 expert_fraction=0.5, noise=1.0, seed=0)
    data = offline_data.collect(cfg)
    assert data.obs.shape == (160, 4) and data.action.shape == (160,)
    assert set(np.unique(data.action)) <= {0, 1}
    np.testing.assert_array_equal(data.expert, np.repeat([True, True, False, False], 40))
    np.testing.assert_array_equal(data.reward, np.ones(160, np.float32))  # CartPole pays 1 per step
    check_next_obs(data, 4, 40)
    for e in range(4):  # each environment's clock restarts after every episode end
        t = data.time[e * 40:(e + 1) * 40]
        done = (data.terminated | data.truncated)[e * 40:(e + 1) * 40]
        assert t[0] == 0 and np.all(t[1:] == np.where(done[:-1], 0, t[:-1] + 1))


def test_episode_returns_by_hand():
    # 2 environments × 4 steps; env 0: episode [1, 2] ends, then [3, 4] is unfinished;
    # env 1: [5] ends at once, then [6, 7, 8] ends at the last row.
    n = 8
    data = offline_data.Transitions(
        obs=np.zeros((n, 1)), action=np.zeros(n, np.int32),
        reward=np.array([1, 2, 3, 4, 5, 6, 7, 8], np.float32), next_obs=np.zeros((n, 1)),
        terminated=np.array([0, 1, 0, 0, 1, 0, 0, 1], bool), truncated=np.zeros(n, bool),
        time=np.array([0, 1, 0, 1, 0, 0, 1, 2], np.int32), expert=np.zeros(n, bool),
    )
    np.testing.assert_allclose(offline_data.episode_returns(data), [3.0, 5.0, 21.0])
    # an episode that began before the data (time ≠ 0 at its first row) is not counted
    late = data._replace(time=np.array([5, 6, 0, 1, 0, 0, 1, 2], np.int32))
    np.testing.assert_allclose(offline_data.episode_returns(late), [5.0, 21.0])


def test_config_names_and_validation():
    base = config(**LOCK)
    assert base.name.startswith("CombinationLock-")
    reordered = config(**{**LOCK, "env_kwargs": {"lock_seed": 1, "action_dim": 4, "horizon": 3}})
    assert reordered.name == base.name
    assert config(**{**LOCK, "seed": 4}).name != base.name
    for field, value in [("env_name", "Nope-v0"), ("noise", 1.5), ("num_envs", 0), ("expert_fraction", -0.1)]:
        with pytest.raises(ValueError, match=field):
            config(**{**LOCK, field: value})
    with pytest.raises(ValueError, match="train_timesteps"):
        config(**{**LOCK, "env_name": "CartPole-v1", "env_kwargs": {}, "train_timesteps": 100})
    assert dataclasses.fields(base)  # a dataclass TFDS can build from

"""MAPPO / IPPO on JaxMARL MPE: the row layout by hand, time-limit truncation with the reached
observation, which inputs the centralised and independent critics read, the PPO noun and shared
transforms, and both :smoke configs through the launcher entry."""
import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import polrl
from polrl.control import algorithms as control_algorithms
from polrl.control import marl, policies
from polrl.control.envs import ActionSpec
from control_testing import run_smoke_config


def test_rows_pad_observations_and_append_ids_and_the_global_state():
    env = marl.MultiAgentVecEnv("fake", None, 1, ("a", "b"), 2, 2, (2 + 2 + 4 + 2,), ActionSpec(num_actions=3))
    rows = env.rows({"a": jnp.array([[1.0, 2.0]]), "b": jnp.array([[3.0]])})
    np.testing.assert_array_equal(rows, [
        [1, 2, 1, 0, 1, 2, 3, 0, 1, 0],
        [3, 0, 0, 1, 1, 2, 3, 0, 0, 1],
    ])
    assert env.agent_width == 4


@pytest.fixture(scope="module")
def spread():
    return marl.make_env("MPE_simple_spread_v3", 2)


def test_episode_end_is_a_truncation_with_the_reached_observation(spread):
    assert spread.num_envs == 6 and spread.obs_shape == (18 + 3 + 54 + 3,) and spread.action.num_actions == 5
    obs, state = spread.reset(jax.random.key(0))
    step = jax.jit(spread.step)
    truncations = []
    for t in range(spread.env.max_steps + 1):
        obs, state, out = step(jax.random.key(t + 1), state, jnp.zeros((6,), jnp.int32))
        assert bool(out.truncated.any()) == bool(out.truncated.all()) and not out.terminated.any()
        truncations.append(bool(out.truncated.all()))
    # the episode lasts max_steps + 1 steps; then every row of both environments is truncated at once
    assert truncations == [False] * spread.env.max_steps + [True]
    assert not np.allclose(out.final_obs, obs)  # the reached observation, not the next episode's first
    assert spread.params.max_steps_in_episode <= spread.env.max_steps + 1


def test_mappo_critic_reads_every_agent_and_ippo_critic_only_its_own(spread):
    rows = spread.reset(jax.random.key(0))[0]
    # agent 1 of env 0 sees something else: its own part, and its section of env 0's global state
    other = rows.at[1, :18].add(1.0).at[0:3, 21 + 18:21 + 36].add(1.0)
    for centralised in (True, False):
        module = functools.partial(marl.SplitActorCritic, agent_width=spread.agent_width, centralised=centralised)
        model = policies.build(module, spread.obs_shape, spread.action)
        params = model.init(jax.random.key(1))
        (dist0, v0), (dist1, v1) = model.apply(params, rows), model.apply(params, other)
        np.testing.assert_allclose(dist0.logits[0], dist1.logits[0])  # agent 0's actor: own part only
        changed = not np.allclose(v0[0], v1[0])
        assert changed == centralised


def test_marl_runs_the_ppo_noun_of_the_shared_transforms():
    config = importlib.import_module("experiments.mpe_spread_mappo").get_config("smoke")
    s = marl.setup(config)
    assert s.algorithm is control_algorithms.ppo and control_algorithms.objectives is polrl.objectives
    config.algorithm = "qmix"
    with pytest.raises(ValueError, match="mappo"):
        marl.setup(config)
    with pytest.raises(ValueError, match="env_name"):
        marl.make_env("MPE_simple_crypto_v3", 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mpe_spread_mappo", "mpe_spread_ippo"])
def test_smoke_config_runs_through_the_launcher_entry(name, tmp_path):
    _, records = run_smoke_config(name, tmp_path)
    assert [r["step"] for r in records] == [16, 32] and all(np.isfinite(r["loss"]) for r in records)

"""Policy evaluation by rollouts: the mean return of the episodes a policy finishes."""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from polrl.control.envs import VecEnv

Array = jax.Array


def mean_episode_return(
    env: VecEnv, act: Callable[[Array, Array, Any], Array], key: Array, num_steps: int
) -> tuple[Array, Array]:
    """Runs ``num_steps`` steps of every environment from a reset; ``(mean return, episodes)``.

    ``act(key, obs [N, ...], env_state) -> action [N, ...]`` (the state lets a per-step policy
    read the time index). The mean is over the episodes that finish inside the window (0 when
    none does), so ``num_steps`` should cover a few episodes.
    """

    def step(carry, step_key):
        obs, state, ret, total, count = carry
        key_act, key_env = jax.random.split(step_key)
        obs, state, out = env.step(key_env, state, act(key_act, obs, state))
        ret = ret + out.reward
        done = out.terminated | out.truncated
        total = total + jnp.sum(jnp.where(done, ret, 0.0))
        count = count + jnp.sum(done)
        return (obs, state, jnp.where(done, 0.0, ret), total, count), None

    key_reset, key_run = jax.random.split(key)
    obs, state = env.reset(key_reset)
    zeros = jnp.zeros((env.num_envs,), jnp.float32)
    init = (obs, state, zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
    (_, _, _, total, count), _ = jax.lax.scan(step, init, jax.random.split(key_run, num_steps))
    return total / jnp.maximum(count, 1), count

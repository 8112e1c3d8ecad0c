"""Vectorized gymnax environments: N copies stepped together, with auto-reset and truncation.

``make(name, num_envs)`` returns a ``VecEnv`` whose ``reset``/``step`` are pure, jittable
functions over a batch of N environments (``vmap`` of gymnax's single-env functions). gymnax ≥ 1.0
splits the end of an episode in two flags:

* ``terminated`` — the MDP reached a terminal state: the value after it is 0;
* ``truncated`` — the time limit cut the episode: the state after it still has a value, so the
  return must be bootstrapped with V(``final_obs``) (Pardo et al. 2018, arXiv 1712.00378).

Both end the episode and the environment resets itself in the same call: the returned ``obs`` is
the first observation of the next episode, and ``final_obs`` the observation the step actually
reached (equal to ``obs`` when the episode goes on). Observations are float32 arrays of
``obs_shape`` (MinAtar's boolean grids are cast).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import gymnax
import jax
import jax.numpy as jnp

Array = jax.Array

# Environments tested here; any other gymnax name is refused with this list.
SUPPORTED = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "Breakout-MinAtar")


class ActionSpec(NamedTuple):
    """The action space: ``num_actions`` > 0 for a discrete one, else ``dim`` bounded floats."""

    num_actions: int = 0
    dim: int = 0
    low: float = 0.0
    high: float = 0.0

    @property
    def discrete(self) -> bool:
        return self.num_actions > 0


class Step(NamedTuple):
    """What one vectorized step returns besides the next observation and state ([N] each)."""

    reward: Array
    terminated: Array
    truncated: Array
    final_obs: Array  # [N, *obs_shape]: the observation reached, before any auto-reset


class VecEnv(NamedTuple):
    """N copies of one gymnax environment; ``reset`` and ``step`` act on all of them at once.

    Attributes:
      name: the gymnax id.
      env: the gymnax environment (static).
      params: its ``EnvParams`` (time limit ``params.max_steps_in_episode``).
      num_envs: N.
      obs_shape: shape of one observation.
      action: the ``ActionSpec``.
    """

    name: str
    env: Any
    params: Any
    num_envs: int
    obs_shape: tuple
    action: ActionSpec

    def reset(self, key: Array) -> tuple[Array, Any]:
        """Starts N episodes: ``(obs [N, *obs_shape], state)``."""
        keys = jax.random.split(key, self.num_envs)
        obs, state = jax.vmap(self.env.reset, in_axes=(0, None))(keys, self.params)
        return _as_float(obs), state

    def step(self, key: Array, state: Any, action: Array) -> tuple[Array, Any, Step]:
        """Steps every environment with ``action`` [N, ...]; finished episodes restart at once.

        Returns ``(obs, state, Step)``: ``obs`` is the next observation the policy acts on (a new
        episode's first one where the episode ended).
        """
        keys = jax.random.split(key, self.num_envs)
        obs, state, reward, terminated, truncated, info = jax.vmap(
            self.env.step, in_axes=(0, 0, 0, None)
        )(keys, state, action, self.params)
        # gymnax reports truncated=True also on a terminal step at the time limit; a terminal
        # step is terminal (no bootstrap), so truncation counts only when not terminated.
        terminated = terminated.astype(bool)
        truncated = truncated.astype(bool) & ~terminated
        step = Step(
            reward=reward.astype(jnp.float32),
            terminated=terminated,
            truncated=truncated,
            final_obs=_as_float(info["final_observation"]),
        )
        return _as_float(obs), state, step


def _as_float(obs: Array) -> Array:
    return obs.astype(jnp.float32)


def make(name: str, num_envs: int, **env_params) -> VecEnv:
    """Builds ``num_envs`` copies of the gymnax environment ``name`` (see ``SUPPORTED``).

    ``env_params`` override fields of the environment's default ``EnvParams``, e.g.
    ``max_steps_in_episode=50`` for a shorter time limit.
    """
    if name not in SUPPORTED:
        raise ValueError(f"env_name={name!r} is not supported; use one of {list(SUPPORTED)}")
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    env, params = gymnax.make(name)
    unknown = set(env_params) - set(params.__dataclass_fields__)
    if unknown:
        raise ValueError(
            f"unknown env_params {sorted(unknown)} for {name}; its EnvParams fields are "
            f"{sorted(params.__dataclass_fields__)}"
        )
    params = params.replace(**env_params)
    space = env.action_space(params)
    if hasattr(space, "n"):
        action = ActionSpec(num_actions=int(space.n))
    else:
        action = ActionSpec(dim=int(space.shape[0]), low=float(space.low), high=float(space.high))
    obs_shape = tuple(env.observation_space(params).shape)
    return VecEnv(name, env, params, num_envs, obs_shape, action)

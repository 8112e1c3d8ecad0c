"""The continuous combination lock of HNPG (Song et al. 2023, arXiv 2210.06718) as a gymnax env.

A finite-horizon exploration benchmark (the "Lock" of ``YifeiZhou02/HNPG : lock_continuous.py``).
H steps; a latent state z ∈ {A=0, B=1, dead=2}; two secret combinations ``opt_a``, ``opt_b`` ∈
{0 … K−1}^H drawn from ``lock_seed``.

* action: a vector u ∈ R^K; the env draws a discrete k ~ softmax(u / τ) (τ = 0.1), so a
  policy has to put a clear margin on the right coordinate;
* transition at step h: in A (B) with k = opt_a[h] (opt_b[h]) the lock stays open and moves to
  A or B (the switch happens with probability ``p_switch``); any other k, or the dead state,
  leads to dead (absorbing);
* reward, paid only at the last step h = H−1: 1 if the lock is still open and the last digit is
  right; otherwise ``anti_reward`` (0.1) with probability ``p_anti_reward`` (0.5) — a
  distractor that a myopic learner settles for. Intermediate steps pay 0 (the reference
  computes an anti-reward there too and then returns 0: reproduced);
* observation: x = R·(e_z + e_{3+h} + ε), ε ~ N(0, σ² I) on the first H+3 coordinates (σ = 0.1),
  in dimension D = 2^⌈log₂(H+4)⌉, R the D×D (unnormalised, ±1) Sylvester–Hadamard matrix;
* start: A or B with probability ½ each (``p_switch``); the episode terminates after step H−1.

A uniformly random policy opens the lock with probability K^−H, so on-policy exploration alone
fails; HNPG's offline data (an ε-greedy optimal policy, ``epsilon_optimal_action``) covers it.

The combination is part of ``EnvParams`` (arrays), the sizes H and K are static attributes of
the ``CombinationLock`` instance. ``make(num_envs, ...)`` returns a ``polrl.control.envs.VecEnv``.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from polrl.control.envs import ActionSpec, VecEnv

Array = jax.Array

DEAD = 2


@struct.dataclass
class EnvState(environment.EnvState):
    """``latent`` ∈ {0 (A), 1 (B), 2 (dead)}; ``time`` = h, the step about to be taken."""

    latent: Array
    time: Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    """The secret combinations and the noise levels (defaults: the reference's)."""

    opt_a: Array = None
    opt_b: Array = None
    p_switch: float = 0.5
    p_anti_reward: float = 0.5
    anti_reward: float = 0.1
    noise: float = 0.1
    temperature: float = 0.1
    max_steps_in_episode: int = 5


def hadamard(dim: int) -> np.ndarray:
    """The unnormalised Sylvester–Hadamard matrix of order ``dim`` (a power of two), entries ±1."""
    if dim < 1 or dim & (dim - 1):
        raise ValueError(f"hadamard: dim={dim} must be a power of two")
    h = np.ones((1, 1), np.float32)
    while h.shape[0] < dim:
        h = np.block([[h, h], [h, -h]])
    return h


class CombinationLock(environment.Environment[EnvState, EnvParams]):
    """HNPG's continuous combination lock with ``horizon`` H and ``action_dim`` K (static)."""

    def __init__(self, horizon: int = 5, action_dim: int = 10):
        super().__init__()
        if horizon < 1:
            raise ValueError(f"CombinationLock: horizon={horizon} must be >= 1")
        if action_dim < 2:
            raise ValueError(f"CombinationLock: action_dim={action_dim} must be >= 2")
        self.horizon = horizon
        self.action_dim = action_dim
        self.obs_dim = 2 ** int(np.ceil(np.log2(horizon + 4)))
        self.rotation = hadamard(self.obs_dim)

    def params_for(self, lock_seed: int = 0, **overrides) -> EnvParams:
        """``EnvParams`` with the combinations drawn from ``lock_seed`` (uniform digits)."""
        key_a, key_b = jax.random.split(jax.random.key(lock_seed))
        opt_a = jax.random.randint(key_a, (self.horizon,), 0, self.action_dim)
        opt_b = jax.random.randint(key_b, (self.horizon,), 0, self.action_dim)
        return EnvParams(opt_a=opt_a, opt_b=opt_b, max_steps_in_episode=self.horizon).replace(**overrides)

    @property
    def default_params(self) -> EnvParams:
        return self.params_for(0)

    def observe_latent(self, key: Array, latent: Array, time: Array, params: EnvParams) -> Array:
        """x = R (e_latent + e_{3+time} + ε), ε ~ N(0, σ²) on the first H+3 coordinates."""
        d = self.obs_dim
        live = jnp.arange(d) < self.horizon + 3
        x = jnp.where(live, params.noise * jax.random.normal(key, (d,)), 0.0)
        x = x + jax.nn.one_hot(latent, d) + jax.nn.one_hot(3 + time, d)
        return jnp.asarray(self.rotation) @ x

    def step_env(self, key: Array, state: EnvState, action: Array, params: EnvParams):
        key_digit, key_switch, key_anti, key_obs = jax.random.split(key, 4)
        digit = jax.random.categorical(key_digit, action / params.temperature)
        h = state.time
        right = jnp.where(state.latent == 0, params.opt_a[h], params.opt_b[h])
        open_ = (state.latent != DEAD) & (digit == right)
        switch = jax.random.bernoulli(key_switch, params.p_switch)
        latent = jnp.where(open_, jnp.where(switch, 1 - state.latent, state.latent), DEAD)
        last = h == self.horizon - 1
        anti = params.anti_reward * jax.random.bernoulli(key_anti, params.p_anti_reward)
        reward = jnp.where(last, jnp.where(open_, 1.0, anti), 0.0).astype(jnp.float32)
        # at the last step the reference keeps the latent of an open lock (no switch)
        latent = jnp.where(last & open_, state.latent, latent)
        state = EnvState(latent=latent.astype(jnp.int32), time=h + 1)
        obs = self.observe_latent(key_obs, state.latent, state.time, params)
        return obs, state, reward, last, {}

    def reset_env(self, key: Array, params: EnvParams):
        key_latent, key_obs = jax.random.split(key)
        latent = jnp.where(jax.random.bernoulli(key_latent, params.p_switch), 0, 1).astype(jnp.int32)
        state = EnvState(latent=latent, time=jnp.zeros((), jnp.int32))
        return self.observe_latent(key_obs, latent, state.time, params), state

    def is_terminated(self, state: EnvState, params: EnvParams) -> Array:
        return state.time >= self.horizon

    @property
    def name(self) -> str:
        return "CombinationLock"

    @property
    def num_actions(self) -> int:
        return self.action_dim

    def action_space(self, params: EnvParams | None = None):
        return spaces.Box(-jnp.inf, jnp.inf, (self.action_dim,), jnp.float32)

    def observation_space(self, params: EnvParams | None = None):
        return spaces.Box(-jnp.inf, jnp.inf, (self.obs_dim,), jnp.float32)


def epsilon_optimal_action(key: Array, env: CombinationLock, state: EnvState, params: EnvParams, epsilon) -> Array:
    """HNPG's offline behaviour (``collect_offline.py``): the right digit's one-hot, else noise.

    With probability 1 − ε the action is e_{opt[h]} (A or B's digit; in the dead state A's), which
    the env's softmax(u/τ) turns into the right digit with probability e^{10}/(e^{10} + K − 1);
    with probability ε it is u ~ U[0, 1]^K. The reference uses ε = 1/H.
    """
    key_eps, key_u = jax.random.split(key)
    h = jnp.minimum(state.time, env.horizon - 1)
    right = jnp.where(state.latent == 1, params.opt_b[h], params.opt_a[h])
    noise = jax.random.uniform(key_u, (env.action_dim,))
    return jnp.where(jax.random.uniform(key_eps) < epsilon, noise, jax.nn.one_hot(right, env.action_dim))


def make(num_envs: int, *, horizon: int = 5, action_dim: int = 10, lock_seed: int = 0, **param_overrides: Any) -> VecEnv:
    """``num_envs`` copies of one lock (same combinations, from ``lock_seed``) as a ``VecEnv``."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    env = CombinationLock(horizon, action_dim)
    unknown = set(param_overrides) - set(EnvParams.__dataclass_fields__)
    if unknown:
        raise ValueError(
            f"unknown env_params {sorted(unknown)} for CombinationLock; use horizon, action_dim, "
            f"lock_seed or fields of EnvParams {sorted(EnvParams.__dataclass_fields__)}"
        )
    params = env.params_for(lock_seed, **param_overrides)
    action = ActionSpec(dim=action_dim, low=-float("inf"), high=float("inf"))
    return VecEnv("CombinationLock", env, params, num_envs, (env.obs_dim,), action)

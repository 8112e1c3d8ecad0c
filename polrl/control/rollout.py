"""Rollouts: ``lax.scan`` over T steps of N environments stepped together (``VecEnv``).

``rollout`` samples actions from a policy, steps the environments (which auto-reset) and returns
the ``Trajectory`` [T, N, ...] with everything an on-policy update needs. ``to_batch`` turns it into
the per-step reward / discount / value streams that ``polrl.ops.gae`` consumes, with the two cuts
a rollout has bootstrapped in the reward (see its docstring).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from polrl.control.envs import VecEnv

Array = jax.Array


class EnvCarry(NamedTuple):
    """What the environments carry from one rollout to the next ([N] each, or pytrees of [N]).

    ``episode_return`` is the return of the running episode so far, ``last_return`` the return of
    each environment's most recently finished episode (0 before the first one ends).
    """

    state: Any
    obs: Array
    episode_return: Array
    last_return: Array


class Trajectory(NamedTuple):
    """T steps of N environments, time-major ([T, N, ...]).

    ``value`` is V(s_t) of the acting observation; ``final_value`` is V(final_obs_t) where the step
    was truncated by the time limit (0 elsewhere, and everywhere when truncation is not
    bootstrapped); ``done`` = terminated ∨ truncated; ``episode_return`` is the finished episode's
    return on steps where one ended (0 elsewhere); ``dist`` the acting distribution (``None``
    unless ``keep_dist``).
    """

    obs: Array
    action: Array
    logp: Array
    value: Array
    reward: Array
    terminated: Array
    truncated: Array
    final_value: Array
    episode_return: Array
    dist: Any = None

    @property
    def done(self) -> Array:
        return self.terminated | self.truncated


def reset(env: VecEnv, key: Array) -> EnvCarry:
    """Starts N episodes."""
    obs, state = env.reset(key)
    zeros = jnp.zeros((env.num_envs,), jnp.float32)
    return EnvCarry(state, obs, zeros, zeros)


def rollout(
    env: VecEnv,
    policy_fn: Callable[[Array], tuple[Any, Array]],
    value_fn: Callable[[Array], Array],
    carry: EnvCarry,
    key: Array,
    num_steps: int,
    *,
    bootstrap_truncation: bool = True,
    keep_dist: bool = False,
) -> tuple[EnvCarry, Trajectory, Array]:
    """Runs ``num_steps`` steps of every environment with actions sampled from ``policy_fn``.

    Args:
      env: the vectorized environment.
      policy_fn: ``obs [N, ...] -> (dist, value [N])``; actions are ``dist.sample``.
      value_fn: ``obs [M, ...] -> value [M]``, evaluated once on all T·N ``final_obs`` after the
        scan to bootstrap truncated episodes
        (not called when ``bootstrap_truncation`` is False).
      carry: ``EnvCarry`` from ``reset`` or the previous rollout.
      key: PRNG key.
      num_steps: T (static).
      bootstrap_truncation: bootstrap time-limit truncations with V(final_obs); False treats them
        as terminal (as PureJaxRL does).
      keep_dist: also return the acting distribution per step (for exact KLs to it).

    Returns:
      ``(carry, trajectory, last_value)``: ``last_value`` [N] is V of the observation after the
      last step, the bootstrap of the unfinished episodes.
    """

    def step(c: EnvCarry, step_key):
        act_key, env_key = jax.random.split(step_key)
        dist, value = policy_fn(c.obs)
        action = dist.sample(act_key)
        logp = dist.log_prob(action)
        obs, state, out = env.step(env_key, c.state, action)
        truncated = out.truncated if bootstrap_truncation else jnp.zeros_like(out.truncated)
        terminated = out.terminated | (out.truncated & ~truncated)
        done = terminated | truncated
        ret = c.episode_return + out.reward
        new = EnvCarry(
            state=state,
            obs=obs,
            episode_return=jnp.where(done, 0.0, ret),
            last_return=jnp.where(done, ret, c.last_return),
        )
        traj = Trajectory(
            obs=c.obs,
            action=action,
            logp=logp,
            value=value,
            reward=out.reward,
            terminated=terminated,
            truncated=truncated,
            final_value=jnp.zeros_like(out.reward),
            episode_return=jnp.where(done, ret, 0.0),
            dist=dist if keep_dist else None,
        )
        return new, (traj, out.final_obs if bootstrap_truncation else None)

    carry, (traj, final_obs) = jax.lax.scan(step, carry, jax.random.split(key, num_steps))
    if bootstrap_truncation:
        traj = traj._replace(final_value=truncation_values(env, value_fn, final_obs, traj.truncated))
    _, last_value = policy_fn(carry.obs)
    return carry, traj, last_value


def truncation_values(env: VecEnv, value_fn, final_obs: Array, truncated: Array) -> Array:
    """V(final_obs) where ``truncated`` [T, N], else 0, with one batched forward after the scan.

    An environment is truncated at most once per ``max_steps_in_episode`` = L steps (its clock
    restarts with each episode), so a rollout of T steps holds at most K = N·⌈T/L⌉ truncations:
    the critic runs on those K gathered observations only (K = 4 for CartPole's 4 × 128 steps),
    not on all T·N. Exact; with a traced time limit it falls back to all T·N.
    """
    t, n = truncated.shape
    flat_obs = final_obs.reshape((t * n,) + final_obs.shape[2:])
    flat = truncated.reshape(t * n)
    try:
        limit = int(env.params.max_steps_in_episode)
    except (TypeError, jax.errors.ConcretizationTypeError):
        limit = 1
    k = min(t * n, n * -(-t // max(limit, 1)))
    if k == t * n:
        values = value_fn(flat_obs)
    else:
        (index,) = jnp.nonzero(flat, size=k, fill_value=0)
        values = jnp.zeros((t * n,), jnp.float32).at[index].set(value_fn(flat_obs[index]))
    return jnp.where(flat, values, 0.0).reshape(t, n)


def bootstrapped_streams(traj: Trajectory, last_value: Array, gamma) -> tuple[Array, Array]:
    """Per-step rewards and discounts [N, T] for ``polrl.ops.gae``, with the cuts bootstrapped.

    A stream is cut in two ways that are not terminal: a time-limit truncation (V(final_obs)
    still counts) and the end of the rollout (V(s_T) still counts). Both are folded into the
    reward and the discount set to 0 there, which gives exactly the advantages of GAE with the
    bootstrap value in place (δ_t = r_t + γ V' − V_t and the recursion stops):

        r'_t = r_t + γ · V(final_obs_t)                  where truncated_t
        r'_{T−1} += γ · (1 − done_{T−1}) · V(s_T)        (the rollout's end)
        γ_t  = γ · (1 − done_t),  γ_{T−1} = 0

    Values are then V_0 … V_{T−1} followed by 0.
    """
    done = traj.done.astype(jnp.float32)
    reward = traj.reward + gamma * traj.final_value
    reward = reward.at[-1].add(gamma * (1.0 - done[-1]) * last_value)
    discount = gamma * (1.0 - done)
    discount = discount.at[-1].set(0.0)
    return reward.T, discount.T

"""MAPPO and IPPO on JaxMARL's multi-agent particle environments (MPE).

* **IPPO** (de Witt et al. 2020, arXiv 2011.09533): every agent runs PPO on its own
  observation with its own critic V(o_i); parameters are shared across agents.
* **MAPPO** (Yu et al. 2022, arXiv 2103.01955): the same actors, and a centralised critic
  V(s, i) on the global state — here the concatenation of all agents' observations plus the
  agent's one-hot (the MAPPO paper's agent-specific global state; JaxMARL's MPE world state is
  the same concatenation).

Both are the repo's PPO unchanged (``polrl.control.train.run_on_policy``: rollout, per-step GAE
``stepwise_gae``, the shared clipped surrogate / clipped value loss / entropy bonus, the shared
update loop ``polrl.train.update.epochs``). What is multi-agent lives in two pieces:

* ``MultiAgentVecEnv``: E parallel JaxMARL environments with A agents seen as E·A rows (row
  e·A + i = agent i of environment e), each row's observation the concatenation
  [o_i padded to the largest agent observation, one-hot(i) ‖ global state] (the agent one-hot
  lets shared parameters tell roles apart, e.g. predators and prey in ``MPE_simple_tag_v3``).
  MPE episodes end only at the time limit (``max_steps``), which the observation does not show,
  so episode ends are ``truncated`` and bootstrapped from the observation reached (Pardo et al.
  2018), unlike JaxMARL's baselines which treat them as terminal; an environment whose step
  reports ``info["terminated"]`` (``polrl.control.volleyball``: a decided rally) has those ends
  terminal.
* ``SplitActorCritic``: the actor reads the agent part of a row, the critic the agent part
  (IPPO) or the global part (MAPPO).

Rewards are per agent (``simple_spread``: ½ global coverage + ½ own collisions), so the logged
``mean_return`` is the mean per-agent episode return.
"""
from __future__ import annotations

import sys

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from polrl.control import algorithms as control_algorithms
from polrl.control import policies
from polrl.control import train as control_train
from polrl.control.envs import ActionSpec, Step
from polrl.control.seeds import Run

Array = jax.Array

SUPPORTED = ("MPE_simple_spread_v3", "MPE_simple_tag_v3", "Volleyball")


class EpisodeLimit(NamedTuple):
    """``max_steps_in_episode``: a lower bound on MPE's episode length (``max_steps``; an episode
    ends on the step whose counter reaches it, so it lasts ``max_steps + 1`` steps)."""

    max_steps_in_episode: int


class MultiAgentVecEnv(NamedTuple):
    """E JaxMARL environments as E·A rows with ``VecEnv``'s ``reset`` / ``step`` interface.

    Attributes:
      name: the JaxMARL id.
      env: the JaxMARL environment (static).
      num_parallel: E.
      agents: agent names, in row order.
      obs_dim: the padded per-agent observation width.
      num_envs: E·A (rows: what ``polrl.control.rollout`` treats as environments).
      obs_shape: (row width,) = (obs_dim + A + A·obs_dim + A,).
      action: the (shared, discrete) action space.
    """

    name: str
    env: Any
    num_parallel: int
    agents: tuple
    obs_dim: int
    num_envs: int
    obs_shape: tuple
    action: ActionSpec

    @property
    def num_agents(self) -> int:
        return len(self.agents)

    @property
    def params(self) -> "EpisodeLimit":
        """What ``polrl.control.rollout`` reads of a ``VecEnv``'s params (the time limit)."""
        return EpisodeLimit(int(self.env.max_steps))

    @property
    def agent_width(self) -> int:
        """Width of the agent part of a row: padded o_i and one-hot(i)."""
        return self.obs_dim + self.num_agents

    def rows(self, obs: dict) -> Array:
        """[E·A, width]: per agent [pad(o_i), one-hot(i)] then the global [all pad(o_j), one-hot(i)]."""
        a = self.num_agents
        padded = jnp.stack(
            [jnp.pad(obs[name], ((0, 0), (0, self.obs_dim - obs[name].shape[-1]))) for name in self.agents], axis=1
        )  # [E, A, obs_dim]
        e = padded.shape[0]
        ids = jnp.broadcast_to(jnp.eye(a, dtype=jnp.float32), (e, a, a))
        world = jnp.broadcast_to(padded.reshape(e, 1, a * self.obs_dim), (e, a, a * self.obs_dim))
        row = jnp.concatenate([padded, ids, world, ids], axis=-1)
        return row.reshape(e * a, -1).astype(jnp.float32)

    def reset(self, key: Array) -> tuple[Array, Any]:
        obs, state = jax.vmap(self.env.reset)(jax.random.split(key, self.num_parallel))
        return self.rows(obs), state

    def step(self, key: Array, state: Any, action: Array) -> tuple[Array, Any, Step]:
        """Steps all E environments with the rows' actions [E·A]; finished ones restart at once."""
        keys = jax.random.split(key, 2 * self.num_parallel).reshape(2, self.num_parallel)
        per_env = action.reshape(self.num_parallel, self.num_agents)
        acts = {name: per_env[:, i] for i, name in enumerate(self.agents)}
        obs_st, state_st, reward, dones, info = jax.vmap(self.env.step_env)(keys[0], state, acts)
        obs_re, state_re = jax.vmap(self.env.reset)(keys[1])
        done = dones["__all__"]

        def pick(reset, stepped):
            return jnp.where(done.reshape((-1,) + (1,) * (stepped.ndim - 1)), reset, stepped)

        state = jax.tree.map(pick, state_re, state_st)
        obs = jax.tree.map(pick, obs_re, obs_st)
        terminal = done & info.get("terminated", jnp.zeros_like(done))
        rows_terminal = jnp.repeat(terminal, self.num_agents)
        out = Step(
            reward=jnp.stack([reward[name] for name in self.agents], axis=1).reshape(-1).astype(jnp.float32),
            terminated=rows_terminal,
            truncated=jnp.repeat(done, self.num_agents) & ~rows_terminal,
            final_obs=self.rows(obs_st),
        )
        return self.rows(obs), state, out


def make_env(name: str, num_parallel: int, **env_kwargs) -> MultiAgentVecEnv:
    """``num_parallel`` copies of the JaxMARL MPE task ``name``, or of ``polrl.control.volleyball``'s
    court for ``"Volleyball"`` (see ``SUPPORTED``)."""
    if name not in SUPPORTED:
        raise ValueError(f"env_name={name!r} is not supported by polrl.control.marl; use one of {list(SUPPORTED)}")
    if num_parallel < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_parallel}")
    if name == "Volleyball":
        from polrl.control import volleyball  # noqa: PLC0415 (it imports this module)

        env = volleyball.Volleyball(**env_kwargs)
    else:
        streams = sys.stdout, sys.stderr
        import jaxmarl  # noqa: PLC0415 (an optional heavy import, only for multi-agent runs)

        sys.stdout, sys.stderr = streams  # its import rebinds them (silencing a dependency): a notebook's output stays
        env = jaxmarl.make(name, **env_kwargs)
    agents = tuple(env.agents)
    spaces = [env.action_space(a) for a in agents]
    if any(not hasattr(s, "n") or s.n != spaces[0].n for s in spaces):
        raise ValueError(f"{name}: shared parameters need one discrete action space for every agent")
    obs_dim = max(int(env.observation_space(a).shape[0]) for a in agents)
    a = len(agents)
    width = obs_dim + a + a * obs_dim + a
    return MultiAgentVecEnv(name, env, num_parallel, agents, obs_dim, num_parallel * a, (width,),
                            ActionSpec(num_actions=int(spaces[0].n)))


class SplitActorCritic(nnx.Module):
    """Actor on ``obs[:, :agent_width]``; critic on the same slice (IPPO) or the global one (MAPPO)."""

    def __init__(self, obs_dim: int, action: ActionSpec, *, agent_width: int, centralised: bool,
                 hidden=(64, 64), activation="tanh", rngs: nnx.Rngs):
        self.agent_width = agent_width
        self.centralised = centralised
        critic_dim = obs_dim - agent_width if centralised else agent_width
        self.actor = policies.Actor(agent_width, action, hidden=hidden, activation=activation, rngs=rngs)
        self.critic = policies.Critic(critic_dim, hidden=hidden, activation=activation, rngs=rngs)

    def __call__(self, obs: Array):
        own = obs[:, : self.agent_width]
        return self.actor(own), self.critic(obs[:, self.agent_width:] if self.centralised else own)


def setup(config) -> control_train.Setup:
    """The PPO ``Setup`` of a MAPPO/IPPO config (``algorithm`` = ``"mappo"`` or ``"ippo"``).

    Config: ``env_name`` (``SUPPORTED``), ``env_params`` (JaxMARL keyword arguments), ``num_envs``
    (parallel environments E; rows = E·A), ``num_steps``, ``total_timesteps`` (environment steps,
    counted per environment as JaxMARL does: updates = total // (E · num_steps)), ``gamma``,
    ``hidden``, ``activation``, ``algorithm_kwargs`` (keywords of ``polrl.control.algorithms.ppo``).
    """
    if config.algorithm not in ("mappo", "ippo"):
        raise ValueError(f"algorithm={config.algorithm!r}: polrl.control.marl runs 'mappo' or 'ippo'")
    env = make_env(config.env_name, int(config.num_envs), **dict(config.get("env_params", {}) or {}))
    num_steps = int(config.num_steps)
    num_updates = int(config.total_timesteps) // (env.num_parallel * num_steps)
    if num_updates < 1:
        raise ValueError(
            f"total_timesteps={config.total_timesteps} is less than one update of num_envs × num_steps = "
            f"{env.num_parallel * num_steps} environment steps; raise total_timesteps"
        )
    kwargs = dict(config.get("algorithm_kwargs", {}) or {})
    algorithm = control_algorithms.ppo(num_updates=num_updates, **kwargs)
    if (env.num_envs * num_steps) % algorithm.num_minibatches:
        raise ValueError(f"rows × num_steps = {env.num_envs * num_steps} is not divisible by num_minibatches")
    module = functools.partial(SplitActorCritic, agent_width=env.agent_width, centralised=config.algorithm == "mappo")
    model = policies.build(module, env.obs_shape, env.action, hidden=tuple(config.get("hidden", (64, 64))),
                           activation=config.get("activation", "tanh"))
    return control_train.Setup(
        env=env, model=model, num_updates=num_updates, num_steps=num_steps, gamma=float(config.gamma),
        bootstrap_truncation=bool(config.get("bootstrap_truncation", True)),
        algorithm=control_algorithms.ppo, algorithm_kwargs=kwargs,
    )


def make_run(config) -> Run:
    """The launcher's ``Run`` (``config.run = "marl"``): ``init(rng)`` = the model's parameters
    (eager), ``train(rng, params) -> ((PolicyState, EnvCarry), metrics)`` = the repo's PPO loop
    on the rows; one update is num_envs × num_steps environment steps."""
    s = setup(config)

    def train(rng, params):
        return control_train.run_on_policy(s, rng, params=params)

    return Run(s.model.init, train, steps_per_update=s.env.num_parallel * s.num_steps)


__all__ = ["MultiAgentVecEnv", "SplitActorCritic", "make_env", "make_run", "setup"]

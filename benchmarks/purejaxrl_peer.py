"""PEER, not polrl: a re-implementation of PureJaxRL's ``ppo.py`` for speed comparisons.

PureJaxRL (Lu et al. 2022, arXiv 2210.05639; github.com/luchris429/purejaxrl) is not on PyPI, so
``benchmarks/ppo_control.py`` compares polrl against this file: PureJaxRL's structure and
numerics written out from its published description (``make_train(config) -> train(rng)``; scan
over updates ⊃ {scan over env steps of vmapped gymnax envs with a LogWrapper, reverse-scan GAE,
scan over epochs ⊃ scan over shuffled minibatches}; linen ``ActorCritic`` with separate tanh
64×64 torsos and ``distrax.Categorical``; flax ``TrainState``; clipped value loss, clipped
surrogate on per-minibatch-normalised advantages, entropy bonus; Adam ε 1e-5 with linear
annealing and global-norm clipping). No polrl code is used here.

One adaptation: gymnax ≥ 1.0 returns ``terminated, truncated`` from ``step``; PureJaxRL (written
for the older API) sees one ``done`` = terminated ∨ truncated and does not bootstrap truncations.
"""
from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.linen.initializers import constant, orthogonal
from flax.training.train_state import TrainState

try:
    import distrax
except ImportError as e:  # pragma: no cover - the peer needs it, polrl does not
    raise ImportError("the PureJaxRL peer needs distrax: pip install distrax") from e

CARTPOLE_CONFIG = dict(
    LR=2.5e-4, NUM_ENVS=4, NUM_STEPS=128, TOTAL_TIMESTEPS=5e5, UPDATE_EPOCHS=4, NUM_MINIBATCHES=4,
    GAMMA=0.99, GAE_LAMBDA=0.95, CLIP_EPS=0.2, ENT_COEF=0.01, VF_COEF=0.5, MAX_GRAD_NORM=0.5,
    ACTIVATION="tanh", ENV_NAME="CartPole-v1", ANNEAL_LR=True,
)


class ActorCritic(nn.Module):
    action_dim: int
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x):
        act = nn.relu if self.activation == "relu" else nn.tanh
        a = act(nn.Dense(64, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(x))
        a = act(nn.Dense(64, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(a))
        logits = nn.Dense(self.action_dim, kernel_init=orthogonal(0.01), bias_init=constant(0.0))(a)
        c = act(nn.Dense(64, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(x))
        c = act(nn.Dense(64, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(c))
        c = nn.Dense(1, kernel_init=orthogonal(1.0), bias_init=constant(0.0))(c)
        return distrax.Categorical(logits=logits), jnp.squeeze(c, axis=-1)


class LogState(NamedTuple):
    env_state: object
    episode_returns: jax.Array
    episode_lengths: jax.Array
    returned_episode_returns: jax.Array
    returned_episode_lengths: jax.Array


class LogWrapper:
    """Tracks episode returns like PureJaxRL's ``LogWrapper`` (single env; vmapped outside)."""

    def __init__(self, env):
        self.env = env

    def reset(self, key, params):
        obs, env_state = self.env.reset(key, params)
        return obs, LogState(env_state, 0.0, 0, 0.0, 0)

    def step(self, key, state, action, params):
        obs, env_state, reward, terminated, truncated, info = self.env.step(key, state.env_state, action, params)
        done = jnp.logical_or(terminated, truncated)
        new_return = state.episode_returns + reward
        new_length = state.episode_lengths + 1
        state = LogState(
            env_state=env_state,
            episode_returns=new_return * (1 - done),
            episode_lengths=new_length * (1 - done),
            returned_episode_returns=state.returned_episode_returns * (1 - done) + new_return * done,
            returned_episode_lengths=state.returned_episode_lengths * (1 - done) + new_length * done,
        )
        info = {"returned_episode_returns": state.returned_episode_returns, "returned_episode": done}
        return obs, state, reward, done, info


class Transition(NamedTuple):
    done: jax.Array
    action: jax.Array
    value: jax.Array
    reward: jax.Array
    log_prob: jax.Array
    obs: jax.Array
    info: dict


def make_train(config):
    config = dict(config)
    config["NUM_UPDATES"] = int(config["TOTAL_TIMESTEPS"] // config["NUM_STEPS"] // config["NUM_ENVS"])
    config["MINIBATCH_SIZE"] = config["NUM_ENVS"] * config["NUM_STEPS"] // config["NUM_MINIBATCHES"]
    base, env_params = gymnax.make(config["ENV_NAME"])
    env = LogWrapper(base)
    num_actions = base.action_space(env_params).n
    obs_shape = base.observation_space(env_params).shape

    def linear_schedule(count):
        frac = 1.0 - (count // (config["NUM_MINIBATCHES"] * config["UPDATE_EPOCHS"])) / config["NUM_UPDATES"]
        return config["LR"] * frac

    def train(rng):
        network = ActorCritic(num_actions, activation=config["ACTIVATION"])
        rng, init_rng = jax.random.split(rng)
        params = network.init(init_rng, jnp.zeros(obs_shape))
        lr = linear_schedule if config["ANNEAL_LR"] else config["LR"]
        tx = optax.chain(optax.clip_by_global_norm(config["MAX_GRAD_NORM"]), optax.adam(lr, eps=1e-5))
        train_state = TrainState.create(apply_fn=network.apply, params=params, tx=tx)
        rng, reset_rng = jax.random.split(rng)
        obsv, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_rng, config["NUM_ENVS"]), env_params)

        def update_step(runner_state, unused):
            def env_step(runner_state, unused):
                train_state, env_state, last_obs, rng = runner_state
                rng, act_rng = jax.random.split(rng)
                pi, value = network.apply(train_state.params, last_obs)
                action = pi.sample(seed=act_rng)
                log_prob = pi.log_prob(action)
                rng, step_rng = jax.random.split(rng)
                obsv, env_state, reward, done, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                    jax.random.split(step_rng, config["NUM_ENVS"]), env_state, action, env_params
                )
                transition = Transition(done, action, value, reward, log_prob, last_obs, info)
                return (train_state, env_state, obsv, rng), transition

            runner_state, traj_batch = jax.lax.scan(env_step, runner_state, None, config["NUM_STEPS"])
            train_state, env_state, last_obs, rng = runner_state
            _, last_val = network.apply(train_state.params, last_obs)

            def get_advantages(gae_and_next_value, transition):
                gae, next_value = gae_and_next_value
                delta = transition.reward + config["GAMMA"] * next_value * (1 - transition.done) - transition.value
                gae = delta + config["GAMMA"] * config["GAE_LAMBDA"] * (1 - transition.done) * gae
                return (gae, transition.value), gae

            _, advantages = jax.lax.scan(
                get_advantages, (jnp.zeros_like(last_val), last_val), traj_batch, reverse=True, unroll=16
            )
            targets = advantages + traj_batch.value

            def update_epoch(update_state, unused):
                def update_minibatch(train_state, batch_info):
                    traj, gae, targets = batch_info

                    def loss_fn(params):
                        pi, value = network.apply(params, traj.obs)
                        log_prob = pi.log_prob(traj.action)
                        value_clipped = traj.value + (value - traj.value).clip(-config["CLIP_EPS"], config["CLIP_EPS"])
                        value_loss = 0.5 * jnp.maximum(jnp.square(value - targets), jnp.square(value_clipped - targets)).mean()
                        ratio = jnp.exp(log_prob - traj.log_prob)
                        gae_n = (gae - gae.mean()) / (gae.std() + 1e-8)
                        loss_actor = -jnp.minimum(
                            ratio * gae_n, jnp.clip(ratio, 1.0 - config["CLIP_EPS"], 1.0 + config["CLIP_EPS"]) * gae_n
                        ).mean()
                        entropy = pi.entropy().mean()
                        total = loss_actor + config["VF_COEF"] * value_loss - config["ENT_COEF"] * entropy
                        return total, (value_loss, loss_actor, entropy)

                    (total, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(train_state.params)
                    return train_state.apply_gradients(grads=grads), (total, aux)

                train_state, traj_batch, advantages, targets, rng = update_state
                rng, perm_rng = jax.random.split(rng)
                batch_size = config["MINIBATCH_SIZE"] * config["NUM_MINIBATCHES"]
                permutation = jax.random.permutation(perm_rng, batch_size)
                batch = jax.tree.map(lambda x: x.reshape((batch_size,) + x.shape[2:]), (traj_batch, advantages, targets))
                shuffled = jax.tree.map(lambda x: jnp.take(x, permutation, axis=0), batch)
                minibatches = jax.tree.map(
                    lambda x: jnp.reshape(x, [config["NUM_MINIBATCHES"], -1] + list(x.shape[1:])), shuffled
                )
                train_state, losses = jax.lax.scan(update_minibatch, train_state, minibatches)
                return (train_state, traj_batch, advantages, targets, rng), losses

            update_state = (train_state, traj_batch, advantages, targets, rng)
            update_state, _ = jax.lax.scan(update_epoch, update_state, None, config["UPDATE_EPOCHS"])
            train_state, rng = update_state[0], update_state[-1]
            return (train_state, env_state, last_obs, rng), traj_batch.info

        rng, run_rng = jax.random.split(rng)
        runner_state, metrics = jax.lax.scan(update_step, (train_state, env_state, obsv, run_rng), None, config["NUM_UPDATES"])
        return {"runner_state": runner_state, "metrics": metrics}

    return train


def final_return(metrics) -> float:
    """Mean return of the episodes that ended during the last update (PureJaxRL's plotted metric)."""
    done = np.asarray(metrics["returned_episode"][-1], bool)
    returns = np.asarray(metrics["returned_episode_returns"][-1])
    return float(returns[done].mean()) if done.any() else float("nan")

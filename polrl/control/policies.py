"""MLP actor-critic policies (flax NNX) for vectorized control.

``Actor`` maps an observation to a distribution (``Categorical`` for discrete actions,
``DiagGaussian`` with a state-independent log-std for continuous ones), ``Critic`` to a value;
``ActorCritic`` holds one of each (separate torsos, as PureJaxRL). Defaults follow PureJaxRL and
CleanRL's PPO: tanh, 64 × 64, orthogonal initialisation with gain √2 on the hidden layers, 0.01
on the policy head, 1 on the value head, zero biases, log-std initialised to 0.

``build(...)`` returns a ``PolicyDef``: the static graphdef plus pure ``init(key) -> params`` and
``apply(params, obs) -> (dist, value)``; training functions close over it and merge the NNX
module inside ``jit`` (the graphdef never enters a pytree that is vmapped or scanned).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax.custom_batching import custom_vmap

from polrl.control.distributions import Categorical, DiagGaussian
from polrl.control.envs import ActionSpec

Array = jax.Array

ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def _dense(din: int, dout: int, gain: float, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(
        din, dout,
        kernel_init=nnx.initializers.orthogonal(gain),
        bias_init=nnx.initializers.zeros_init(),
        rngs=rngs,
    )


class MLP(nnx.Module):
    """Hidden layers with ``activation``, then a linear head with orthogonal gain ``head_gain``."""

    def __init__(self, din: int, hidden: tuple, dout: int, *, activation: str, head_gain: float, rngs: nnx.Rngs):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is unknown; use one of {sorted(ACTIVATIONS)}")
        sizes = (din, *hidden)
        self.hidden = nnx.List(
            [_dense(a, b, math.sqrt(2.0), rngs) for a, b in zip(sizes[:-1], sizes[1:])]
        )
        self.head = _dense(sizes[-1], dout, head_gain, rngs)
        self.activation = activation

    def __call__(self, x: Array) -> Array:
        act = ACTIVATIONS[self.activation]
        for layer in self.hidden:
            x = act(layer(x))
        return self.head(x)


class Actor(nnx.Module):
    """π(·|s): categorical over ``action.num_actions`` logits, or a diagonal Gaussian."""

    def __init__(self, obs_dim: int, action: ActionSpec, *, hidden=(64, 64), activation="tanh", rngs: nnx.Rngs):
        out = action.num_actions if action.discrete else action.dim
        self.torso = MLP(obs_dim, tuple(hidden), out, activation=activation, head_gain=0.01, rngs=rngs)
        self.log_std = None if action.discrete else nnx.Param(jnp.zeros((action.dim,), jnp.float32))

    def __call__(self, obs: Array):
        out = self.torso(obs.reshape(obs.shape[0], -1))
        if self.log_std is None:
            return Categorical(out)
        return DiagGaussian(out, jnp.broadcast_to(self.log_std[...], out.shape))


class Critic(nnx.Module):
    """V(s), a scalar per observation."""

    def __init__(self, obs_dim: int, *, hidden=(64, 64), activation="tanh", rngs: nnx.Rngs):
        self.torso = MLP(obs_dim, tuple(hidden), 1, activation=activation, head_gain=1.0, rngs=rngs)

    def __call__(self, obs: Array) -> Array:
        return self.torso(obs.reshape(obs.shape[0], -1))[:, 0]


class ActorCritic(nnx.Module):
    """An ``Actor`` and a ``Critic`` with separate torsos; ``__call__`` returns ``(dist, value)``."""

    def __init__(self, obs_dim: int, action: ActionSpec, *, hidden=(64, 64), activation="tanh", rngs: nnx.Rngs):
        self.actor = Actor(obs_dim, action, hidden=hidden, activation=activation, rngs=rngs)
        self.critic = Critic(obs_dim, hidden=hidden, activation=activation, rngs=rngs)

    def __call__(self, obs: Array):
        return self.actor(obs), self.critic(obs)


class PolicyDef(NamedTuple):
    """A model's static graphdef with pure ``init`` and ``apply`` around it.

    Attributes:
      graphdef: the NNX graphdef (static).
      init: ``key -> params`` (an ``nnx.State``), traceable, so it vmaps over seeds (a vmapped
        ``init`` runs one key after another, with bit-identical results).
      apply: ``(params, obs [N, *obs_shape]) -> model(obs)``.
    """

    graphdef: Any
    init: Callable[[Array], Any]
    apply: Callable[[Any, Array], Any]


def functional(make: Callable[[Array], nnx.Module]) -> tuple[Any, Callable, Callable]:
    """``(graphdef, init, apply)`` of the module that ``make(key)`` builds: ``init(key) -> params``
    (an ``nnx.State``) and ``apply(params, *inputs) -> module(*inputs)``, both pure.

    A vmapped ``init`` runs one key after another (``lax.map``, bit-identical to calling it per
    key): the orthogonal initialisers' LAPACK QRs stay unbatched, since batched QRs can deadlock
    XLA:CPU (``value_functions.eager_init``). So ``jax.vmap(train)`` over seeds or
    hyper-parameters is safe with parameters initialised inside ``train``.
    """
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: make(jax.random.key(0))))

    @custom_vmap
    def init(key):
        return nnx.split(make(key))[1]

    @init.def_vmap
    def init_one_key_at_a_time(axis_size, in_batched, key):
        del axis_size
        params = jax.lax.map(init, key) if in_batched[0] else init(key)
        return params, jax.tree.map(lambda _: in_batched[0], params)

    def apply(params, *inputs):
        return nnx.merge(graphdef, params)(*inputs)

    return graphdef, init, apply


def build(module: type, obs_shape: tuple, action: ActionSpec, *, hidden=(64, 64), activation="tanh") -> PolicyDef:
    """``PolicyDef`` of ``module`` (``ActorCritic``, ``Actor``…) for the given spaces.

    ``Critic`` takes no action spec; every other module is built as
    ``module(obs_dim, action, hidden=..., activation=...)``.
    """
    obs_dim = int(math.prod(obs_shape))
    hidden = tuple(int(h) for h in hidden)

    def make(key):
        rngs = nnx.Rngs(params=key)
        if module is Critic:
            return Critic(obs_dim, hidden=hidden, activation=activation, rngs=rngs)
        return module(obs_dim, action, hidden=hidden, activation=activation, rngs=rngs)

    return PolicyDef(*functional(make))

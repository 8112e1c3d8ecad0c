"""Action-value networks and the small pieces of fitted evaluation (HNPG, Uni-O4).

* ``QNetwork`` / ``build_q``: Q(s, a) = MLP([s, φ(a)]) with φ(a) the one-hot of a discrete
  action or the action vector itself (the reference Q nets of HNPG and Uni-O4 take the
  concatenation); tanh 64 × 64 and the orthogonal init of ``polrl.control.policies.MLP``, head
  gain 1.
* ``expectile_loss``: IQL's asymmetric square (Kostrikov et al. 2021, arXiv 2110.06169).
* ``polyak``: target-network averaging.
* ``greedy_action``: the mode of an action distribution (argmax logits / Gaussian mean), the
  deterministic action the offline evaluations act with.
* ``eager_init``: the parameters of several independently initialised copies, stacked on axis 0,
  built outside ``jit`` (see there why).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from polrl.control.distributions import Categorical, DiagGaussian
from polrl.control.envs import ActionSpec
from polrl.control.policies import MLP, functional

Array = jax.Array


def action_features(action: Array, spec: ActionSpec) -> Array:
    """φ(a): one-hot [N, A] of a discrete action [N], the float action [N, D] otherwise."""
    if spec.discrete:
        return jax.nn.one_hot(action, spec.num_actions, dtype=jnp.float32)
    return action.astype(jnp.float32)


class QNetwork(nnx.Module):
    """Q(s, a) = MLP([flatten(s), φ(a)]), one scalar per row."""

    def __init__(self, obs_dim: int, action: ActionSpec, *, hidden=(64, 64), activation="tanh", rngs: nnx.Rngs):
        width = action.num_actions if action.discrete else action.dim
        self.spec = action
        self.torso = MLP(obs_dim + width, tuple(hidden), 1, activation=activation, head_gain=1.0, rngs=rngs)

    def __call__(self, obs: Array, action: Array) -> Array:
        x = jnp.concatenate([obs.reshape(obs.shape[0], -1), action_features(action, self.spec)], axis=-1)
        return self.torso(x)[:, 0]


class QDef(NamedTuple):
    """A Q network's pure ``init(key) -> params`` and ``apply(params, obs, action) -> [N]``."""

    init: Callable[[Array], Any]
    apply: Callable[[Any, Array, Array], Array]


def build_q(obs_shape: tuple, action: ActionSpec, *, hidden=(64, 64), activation="tanh") -> QDef:
    """``QDef`` of a ``QNetwork`` for the given spaces (``policies.functional``, as ``policies.build``)."""
    obs_dim = int(math.prod(obs_shape))
    hidden = tuple(int(h) for h in hidden)

    def make(key):
        return QNetwork(obs_dim, action, hidden=hidden, activation=activation, rngs=nnx.Rngs(params=key))

    _, init, apply = functional(make)
    return QDef(init=init, apply=apply)


def expectile_loss(diff: Array, expectile) -> Array:
    """L₂^τ(u) = |τ − 1(u < 0)| · u², elementwise, u = target − prediction.

    τ = ½ gives ½ u² (mean regression: V → E_{a~β} Q, SARSA-style); τ > ½ weighs positive
    errors more and moves V towards an upper expectile of Q (IQL's in-sample max; τ = 0.7 in
    Uni-O4's IQL option).
    """
    weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
    return weight * diff**2


def polyak(target, online, rate):
    """θ̄ ← (1 − rate) θ̄ + rate θ, leaf by leaf."""
    return jax.tree.map(lambda t, o: (1.0 - rate) * t + rate * o, target, online)


def greedy_action(dist) -> Array:
    """The mode: argmax of a ``Categorical``'s logits, the mean of a ``DiagGaussian``."""
    if isinstance(dist, Categorical):
        return jnp.argmax(dist.logits, axis=-1)
    if isinstance(dist, DiagGaussian):
        return dist.mean
    raise ValueError(f"greedy_action: unknown distribution {type(dist).__name__}")


def eager_init(init: Callable[[Array], Any], keys: Array):
    """``init(k)`` for every key of ``keys`` [K], run one at a time outside ``jit``, stacked on axis 0.

    Why not ``jax.vmap(init)`` inside the training program: the orthogonal initialisers of the
    control MLPs call LAPACK QR, and with jaxlib 0.10 on CPU a batched QR runs its batch on the
    intra-op thread pool and blocks its thread until that batch is done; two such QRs scheduled
    concurrently in one XLA:CPU program can occupy every pool thread and wait on each other
    forever (observed: HNPG's H per-step actors and critics, 2 pool threads). One unbatched QR
    per call cannot. Initial parameters are therefore made here and passed to ``train``.
    (The ``init`` of ``policies.functional`` — every ``PolicyDef`` and ``QDef`` — is itself safe
    under ``vmap``; this helper serves a ``Run``'s ``init``, which may build any module.)
    """
    params = [init(k) for k in keys]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *params)

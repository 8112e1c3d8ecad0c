"""Action distributions of control policies: categorical and diagonal Gaussian.

Each is a pytree (``flax.struct``) with ``sample``, ``log_prob``, ``entropy`` and the exact
``kl(other)`` = KL(self ‖ other) between two distributions of the same kind, all per state
(leading dims are the batch). The categorical's log-prob and entropy are the shared kernels of
``polrl.ops`` (the LLM side's), applied with one "token" per state.
"""
from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp

from polrl import ops

Array = jax.Array


@flax.struct.dataclass
class Categorical:
    """π(a|s) = softmax(logits)_a; ``logits`` [N, A]."""

    logits: Array

    def sample(self, key: Array) -> Array:
        return jax.random.categorical(key, self.logits, axis=-1)

    def log_prob(self, action: Array) -> Array:
        """log π(a) = z_a − log Σ_b exp z_b  (``polrl.ops.log_softmax_at``); [N]."""
        return ops.log_softmax_at(self.logits[:, None], action.astype(jnp.int32)[:, None])[:, 0]

    def entropy(self) -> Array:
        """H = −Σ_a π_a log π_a  (``polrl.ops.entropy_from_logits``); [N]."""
        return ops.entropy_from_logits(self.logits[:, None])[:, 0]

    def probs(self) -> Array:
        return jax.nn.softmax(self.logits.astype(jnp.float32), axis=-1)

    def kl(self, other: "Categorical") -> Array:
        """KL(π ‖ q) = Σ_a π_a (log π_a − log q_a), exact; [N]."""
        logp = jax.nn.log_softmax(self.logits.astype(jnp.float32), axis=-1)
        logq = jax.nn.log_softmax(other.logits.astype(jnp.float32), axis=-1)
        return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)


_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@flax.struct.dataclass
class DiagGaussian:
    """π(a|s) = Π_d N(a_d; μ_d, σ_d²); ``mean`` and ``log_std`` [N, D] (σ = exp(log_std))."""

    mean: Array
    log_std: Array

    def sample(self, key: Array) -> Array:
        return self.mean + jnp.exp(self.log_std) * jax.random.normal(key, self.mean.shape)

    def log_prob(self, action: Array) -> Array:
        """Σ_d [−½ ((a_d − μ_d)/σ_d)² − log σ_d − ½ log 2π]; [N]."""
        z = (action - self.mean) * jnp.exp(-self.log_std)
        return jnp.sum(-0.5 * z**2 - self.log_std - _HALF_LOG_2PI, axis=-1)

    def entropy(self) -> Array:
        """Σ_d [½ + ½ log 2π + log σ_d]; [N]."""
        return jnp.sum(0.5 + _HALF_LOG_2PI + self.log_std, axis=-1)

    def kl(self, other: "DiagGaussian") -> Array:
        """KL(p ‖ q) = Σ_d [log σ_q/σ_p + (σ_p² + (μ_p − μ_q)²) / (2 σ_q²) − ½], exact; [N]."""
        var_p = jnp.exp(2.0 * self.log_std)
        var_q = jnp.exp(2.0 * other.log_std)
        return jnp.sum(
            other.log_std - self.log_std + (var_p + (self.mean - other.mean) ** 2) / (2.0 * var_q) - 0.5,
            axis=-1,
        )

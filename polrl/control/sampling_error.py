"""Sampling error of a batch of discrete actions with respect to a target policy.

On-policy policy-gradient estimates are only as good as the match between the actions in the
data and the policy being improved; PROPS (Corrado & Hanna, arXiv 2311.08290) adapts the
behaviour policy to shrink that mismatch. The measure here, for discrete actions and
low-dimensional observations, compares per region of state space the empirical action
distribution with the target policy's average one:

    cells c: each observation coordinate cut at its terciles over the batch (3^d cells)
    n_c,a = #{i ∈ c : a_i = a},   m_c,a = Σ_{i ∈ c} π(a | s_i)
    SE = (1/n) Σ_c Σ_a n_c,a log(n_c,a / m_c,a)  = Σ_c (n_c/n) KL(f_c ‖ p̄_c)

with f_c the empirical and p̄_c the mean target action distribution in cell c (0 log 0 = 0). It is
0 when every cell's action counts match the policy exactly.

Even exact on-policy sampling leaves a count-noise floor of about (#cells · (A − 1)) / (2n) (the
expected multinomial KL), ≈ 0.04 for CartPole's 81 cells at n = 1024, which no sampler can remove
from one buffer. ``pooled=True`` puts every row in one cell, SE = KL(f ‖ p̄) of the buffer's action
frequencies against the target's mean action probabilities: a floor of (A − 1)/(2n) ≈ 0.0005, so
what a behaviour policy corrects (over- and under-sampled actions) is not hidden by count noise.

INFERRED: the paper's measure fits an empirical (maximum-likelihood) policy to the data and
reports KL to the target; the cell discretisation is a closed-form stand-in for discrete actions.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

MAX_OBS_DIM = 8  # 3^8 = 6561 cells; beyond this, discretisation is not meaningful


def state_cells(obs: Array, valid: Array) -> Array:
    """Cell id in [0, 3^d) of each observation [n, d] from the terciles of the valid rows."""
    d = obs.shape[-1]
    masked = jnp.where(valid[:, None], obs, jnp.nan)
    edges = jnp.nanquantile(masked, jnp.array([1 / 3, 2 / 3]), axis=0)  # [2, d]
    bins = (obs[:, None, :] > edges[None]).sum(1)  # [n, d] in {0, 1, 2}
    return (bins * (3 ** jnp.arange(d))).sum(-1)


def sampling_error(obs: Array, action: Array, probs: Array, valid: Array, *, pooled: bool = False) -> Array:
    """SE (module docstring) of ``action`` [n] taken at ``obs`` [n, d] under ``probs`` [n, A].

    ``valid`` [n] selects the rows that count. Observations are flattened to d ≤ 8 coordinates.
    ``pooled`` uses one cell for all rows instead of the 3^d tercile cells.
    """
    obs = obs.reshape(obs.shape[0], -1)
    if obs.shape[-1] > MAX_OBS_DIM:
        raise ValueError(f"sampling_error discretises each coordinate: obs dim {obs.shape[-1]} > {MAX_OBS_DIM}")
    if pooled:
        num_cells, cells = 1, jnp.zeros(obs.shape[:1], jnp.int32)
    else:
        num_cells, cells = 3 ** obs.shape[-1], state_cells(obs, valid)
    w = valid.astype(jnp.float32)[:, None]
    counts = jax.ops.segment_sum(jax.nn.one_hot(action, probs.shape[-1]) * w, cells, num_segments=num_cells)
    expected = jax.ops.segment_sum(probs * w, cells, num_segments=num_cells)
    terms = jnp.where(counts > 0, counts * jnp.log(counts / jnp.where(counts > 0, expected, 1.0)), 0.0)
    return terms.sum() / jnp.maximum(w.sum(), 1.0)

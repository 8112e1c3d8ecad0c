"""Levenshtein distance between token sequences, as a jittable array kernel.

The distance d(a, b) is the fewest single-token insertions, deletions and substitutions turning
a into b. With D[i, j] = d(a_<i, b_<j) (D[0, j] = j, D[i, 0] = i):

    D[i, j] = min(D[i−1, j] + 1, D[i, j−1] + 1, D[i−1, j−1] + [a_{i−1} ≠ b_{j−1}])

Row i is computed from row i − 1 in one vector step: with u[j] = min(D[i−1, j] + 1,
D[i−1, j−1] + [a_{i−1} ≠ b_{j−1}]) (u[0] = i), the insertions chain along the row as
D[i, j] = min_{k ≤ j} (u[k] + j − k) = j + cummin_k (u[k] − k); a scan over the rows of a
(length T_a) gives every D[i, ·], and d(a, b) = D[len_a, len_b].
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

Array = jax.Array


def edit_distance(a_t: Array, a_len: Array, b_t: Array, b_len: Array) -> Array:
    """int32 []: the Levenshtein distance between ``a_t[:a_len]`` and ``b_t[:b_len]`` (token ids;
    entries past each length are ignored). ``jax.vmap`` it for batches of pairs."""
    chex.assert_rank([a_t, b_t], 1)
    a_t, b_t = jnp.asarray(a_t), jnp.asarray(b_t)
    cols = jnp.arange(b_t.shape[0] + 1, dtype=jnp.int32)

    def row(prev, xs):
        i, token = xs
        sub = prev[:-1] + (token != b_t).astype(jnp.int32)
        u = jnp.concatenate([i[None], jnp.minimum(prev[1:] + 1, sub)])
        cur = cols + jax.lax.cummin(u - cols)
        return cur, cur

    steps = (jnp.arange(1, a_t.shape[0] + 1, dtype=jnp.int32), a_t)
    _, rows = jax.lax.scan(row, cols, steps)
    table = jnp.concatenate([cols[None], rows])  # [T_a + 1, T_b + 1]
    return table[jnp.asarray(a_len, jnp.int32), jnp.asarray(b_len, jnp.int32)]


def pairwise_edit_distance(tokens_st: Array, length_s: Array) -> Array:
    """int32 [S, S]: ``edit_distance`` between every pair of the S sequences ``tokens_st`` (each
    of length ``length_s``)."""
    chex.assert_rank(tokens_st, 2)
    one = jax.vmap(edit_distance, in_axes=(None, None, 0, 0))
    return jax.vmap(one, in_axes=(0, 0, None, None))(tokens_st, length_s, tokens_st, length_s)

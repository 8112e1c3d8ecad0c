"""Masked reductions over padded arrays.

``mask`` has the shape of ``x``; it is bool or float (a float mask weighs its entries, any
non-zero entry counts as valid). Entries of ``x`` under a zero mask never reach the result, even
when they are NaN or inf. Every reduction over an all-zero mask returns 0, never NaN.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

Array = jax.Array


def safe_div(num: Array, den: Array) -> Array:
    """num / den, and 0 where den = 0 (NaN-free in value and in gradient)."""
    nonzero = den != 0
    return jnp.where(nonzero, num / jnp.where(nonzero, den, 1), 0)


def _clean(x: Array, mask: Array):
    """(x with 0 under the mask's zeros, the mask as weights of x's dtype)."""
    chex.assert_equal_shape([x, mask])
    m = jnp.asarray(mask).astype(x.dtype)
    return jnp.where(m != 0, x, 0), m


def _sum_and_count(x: Array, mask: Array, axis, keepdims: bool = False):
    x, m = _clean(x, mask)
    return jnp.sum(x * m, axis=axis, keepdims=keepdims), jnp.sum(m, axis=axis, keepdims=keepdims)


def masked_sum(x: Array, mask: Array, axis=None) -> Array:
    """Σ x·m over ``axis`` (every axis when None)."""
    return _sum_and_count(x, mask, axis)[0]


def masked_mean(x: Array, mask: Array, axis=None) -> Array:
    """Σ x·m / Σ m over ``axis`` (every axis when None); 0 where Σ m = 0."""
    return safe_div(*_sum_and_count(x, mask, axis))


def masked_var(x: Array, mask: Array, unbiased: bool = True, axis=None) -> Array:
    """Masked variance  Σ m (x − x̄)² / n,  times n / (n − 1) when ``unbiased``;  n = Σ m.

    The unbiased default matches verl's ``masked_var``. Where n ≤ 1 the unbiased variance is
    undefined and 0 is returned (the biased one is 0 there anyway).
    """
    x, m = _clean(x, mask)
    mean = safe_div(*_sum_and_count(x, m, axis, keepdims=True))
    sq, n = _sum_and_count(jnp.square(x - mean), m, axis)
    var = safe_div(sq, n)
    if unbiased:
        var = jnp.where(n > 1, var * safe_div(n, n - 1), 0)
    return var


def masked_whiten(x: Array, mask: Array, shift_mean: bool = True, *, eps: float = 1e-8) -> Array:
    """Normalizes x over all its valid entries (PPO advantage normalization).

        x̂ = (x − x̄) / √(Var[x] + ε)          (shift_mean=True)
        x̂ = (x − x̄) / √(Var[x] + ε) + x̄     (shift_mean=False: rescale, keep the mean)

    with the masked mean x̄ and the unbiased masked variance over every axis, as verl's
    ``masked_whiten``. Entries under a zero mask are set to 0.
    """
    x, m = _clean(x, mask)
    mean = masked_mean(x, m)
    whitened = (x - mean) * jax.lax.rsqrt(masked_var(x, m, unbiased=True) + eps)
    if not shift_mean:
        whitened = whitened + mean
    return jnp.where(m != 0, whitened, 0)


def _masked_extremum(reduce, fill: float, x: Array, mask: Array, axis) -> Array:
    chex.assert_equal_shape([x, mask])
    valid = jnp.asarray(mask) != 0
    out = reduce(jnp.where(valid, x, fill), axis=axis)
    return jnp.where(jnp.any(valid, axis=axis), out, 0)


def masked_max(x: Array, mask: Array, axis=None) -> Array:
    """max of x over the valid entries along ``axis``; 0 where none is valid."""
    return _masked_extremum(jnp.max, -jnp.inf, x, mask, axis)


def masked_min(x: Array, mask: Array, axis=None) -> Array:
    """min of x over the valid entries along ``axis``; 0 where none is valid."""
    return _masked_extremum(jnp.min, jnp.inf, x, mask, axis)

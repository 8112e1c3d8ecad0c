"""Shared benchmark helper: a measured matmul peak (the transformer FLOP estimate is
``polrl.models.flops``).

FLOP utilization of a benchmark = (model FLOPs / s) / matmul_peak_flops(): the fraction of
what this device reaches on a large dense matmul that the workload turns into model math.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp



def matmul_peak_flops(dtype=jnp.float32, n: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` FLOP/s of a jitted n×n @ n×n matmul (2n³ FLOPs) on the default
    device, at the configured default matmul precision (the one the model runs at)."""
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (n, n), dtype)
    b = jax.random.normal(kb, (n, n), dtype)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n ** 3 / best

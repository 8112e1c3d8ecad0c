"""Shared benchmark helpers: a measured matmul peak and a transformer FLOP estimate.

FLOP utilization of a benchmark = (model FLOPs / s) / matmul_peak_flops(): the fraction of
what this device reaches on a large dense matmul that the workload turns into model math.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from polrl.models import TransformerConfig


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


def matmul_params(config: TransformerConfig) -> int:
    """Weights that take part in a matmul per token: attention, MLP and LM head (not the
    embedding lookup, norms or biases)."""
    d, e = config.d_model, config.head_dim
    attn = d * e * (2 * config.num_heads + 2 * config.num_kv_heads)  # wq, wo, wk, wv
    mlp = 3 * d * config.mlp_dim
    return config.num_layers * (attn + mlp) + d * config.vocab_size


def transformer_forward_flops(config: TransformerConfig, tokens: float, context: float) -> float:
    """Forward FLOPs for ``tokens`` tokens that each attend to ``context`` keys on average.

        FLOPs ≈ 2 · P_matmul · tokens  +  4 · L · H · e · context · tokens

    (2 FLOPs per multiply-add with each matmul weight, then q·kᵀ and A·v: 2 · H · e
    multiply-adds per attended key per layer). Norms, softmax and RoPE are ignored. The
    LM head is counted for every token.
    """
    attn = 4.0 * config.num_layers * config.num_heads * config.head_dim * context
    return (2.0 * matmul_params(config) + attn) * tokens

"""What the decode benchmarks share: the small Llama-style shape they time, and a wall-clock timer."""
from __future__ import annotations

import time

import jax

from polrl.models import TransformerConfig


def decode_model_config(max_len: int) -> TransformerConfig:
    """vocab 512, d_model 256, 4 layers, 8 heads / 2 KV heads, MLP 688, float32, ``max_len``."""
    return TransformerConfig(vocab_size=512, d_model=256, num_layers=4, num_heads=8, num_kv_heads=2, mlp_dim=688,
                             max_len=max_len)


def seconds(fn, *args) -> float:
    """Wall time of ``fn(*args)``, blocked until its result is ready."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start

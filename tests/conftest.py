"""Test set-up: 8 fake CPU devices (for sharding tests) and float32 matmuls.

XLA reads the device count once, when the backend starts, so the flag is set before
anything imports jax.
"""
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "float32")

"""How many XLA devices a CPU run uses.

XLA gives a CPU process one device by default, and one device leaves cores idle: the decode
loop's chain of small matmuls, norms and attention runs on one core at a time. The launcher and
the benchmarks therefore ask for one host device per core, so a data-parallel mesh
(``mesh.data = -1``) puts a slice of every batch on each core. The count is the largest power of
two not above the core count, so the experiments' power-of-two batch sizes split evenly. This
module imports nothing from JAX: it must run before JAX creates its CPU backend.
"""
from __future__ import annotations

import os

FLAG = "--xla_force_host_platform_device_count"


def cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def host_devices_per_core(num_cores: int | None = None) -> int:
    """The largest power of two ≤ ``num_cores`` (default: this process's cores)."""
    n = cores() if num_cores is None else num_cores
    return 1 << (max(n, 1).bit_length() - 1)


def use_every_core() -> int | None:
    """Sets ``XLA_FLAGS`` to one CPU device per core unless it already sets a device count.

    Returns the count it set (None when the user's ``XLA_FLAGS`` decides). Only the CPU
    platform reads the flag; accelerator devices are unaffected. Call it before anything runs
    on a JAX device.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG in flags:
        return None
    count = host_devices_per_core()
    os.environ["XLA_FLAGS"] = f"{flags} {FLAG}={count}".strip()
    return count

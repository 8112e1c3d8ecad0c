"""A bound on the compiled programs a long-lived process keeps.

Every compiled program that a JAX jit cache keeps is a few memory mappings of its machine code
(about 3.5 per program on XLA:CPU), and a process that runs many trainers — a notebook session
trying configs, a test worker — keeps thousands of them (jitted functions cache one program per
model and shape). Linux caps a process's mappings (``vm.max_map_count``, 65530 by default); past
the cap the next compilation cannot map its code and the process dies inside XLA. Clearing the
jit caches (``jax.clear_caches``) unmaps them; what runs next compiles again, nothing else changes.
"""
from __future__ import annotations

import gc


def mapping_counts() -> tuple[int, int] | None:
    """``(memory mappings of this process, the kernel's cap)``, or None where /proc does not tell."""
    try:
        with open("/proc/self/maps") as maps, open("/proc/sys/vm/max_map_count") as cap:
            return sum(1 for _ in maps), int(cap.read())
    except (OSError, ValueError):
        return None


def bound_compiled_programs(fraction: float = 0.5) -> bool:
    """Clears JAX's compiled-program caches when this process holds more than ``fraction`` of its
    mapping cap; returns whether it did."""
    counts = mapping_counts()
    if counts is None or counts[0] <= fraction * counts[1]:
        return False
    import jax

    jax.clear_caches()
    gc.collect()
    return True

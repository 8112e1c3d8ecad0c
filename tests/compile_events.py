"""Counting XLA compilations through jax.monitoring.

A jitted function's ``_cache_size()`` is no evidence: it reads a process-wide LRU of jitted
functions, which drops entries once a long test worker holds more live jitted functions than its
capacity, and then reads 0 although nothing recompiles. The backend-compile event fires once per
compilation (a persistent-cache hit included), whatever else the process holds.
"""
import contextlib

import jax

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def compilations():
    """Yields a list that collects the compiled functions' names while the context is active."""
    log = []

    def listener(event, seconds, **kwargs):
        if event == COMPILE_EVENT:
            log.append(kwargs.get("fun_name"))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield log
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)

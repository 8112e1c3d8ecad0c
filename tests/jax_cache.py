"""A persistent JAX compilation cache for test modules that compile the same programs several
times (relaunched runs, the same warm-start phase in several configs).

A cache hit returns the executable compiled before, so numbers are unchanged; the backend
compile event still fires, so compilation counts are unchanged too.
"""
import contextlib

import jax
from jax.experimental.compilation_cache import compilation_cache

_SETTINGS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")


@contextlib.contextmanager
def persistent_cache(path: str):
    """Caches every compilation under ``path`` while active; restores the previous settings."""
    old = {name: getattr(jax.config, name) for name in _SETTINGS}
    for name, value in zip(_SETTINGS, (path, 0, 0)):
        jax.config.update(name, value)
    compilation_cache.reset_cache()
    try:
        yield path
    finally:
        for name, value in old.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()


def subprocess_env(path: str) -> dict:
    """Environment variables that give a child process the same cache."""
    return {"JAX_COMPILATION_CACHE_DIR": path, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}

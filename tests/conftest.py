"""Test set-up: 8 fake CPU devices (for sharding tests), float32 matmuls, and XLA's CPU backend
without LLVM's optimisation passes.

The suite runs thousands of small programs a few times each, so most of its time is XLA
compilation, and most of that is LLVM optimising the generated code. Backend optimisation level
0 skips those passes, which shortens every compilation, and no test runs long enough to miss
the optimised code. Code generated without them may round differently (whether a multiply and
an add are fused, for one), as another CPU does; no test depends on one rounding (tolerances come
from error bounds, or the comparison runs in float64). Set ``--xla_backend_optimization_level``
in ``XLA_FLAGS`` to override.

Every compiled program that a jit cache keeps is a few memory mappings of its machine code, and a
worker that runs hundreds of test modules keeps thousands of programs (jitted module-level functions
cache one per model and shape). Linux caps a process's mappings (``vm.max_map_count``, 65530 by
default); past the cap the next compilation cannot map its code and the worker dies with a
segmentation fault. After each module, once the worker holds more than half the cap, the jit caches
are cleared (``polrl.train.programs``): later modules recompile what they use, nothing else changes.

XLA reads its flags once, when the backend starts, so they are set before anything imports jax;
test subprocesses (multi-host, relaunches) inherit them.
"""
import os

flags = os.environ.get("XLA_FLAGS", "")
if "--xla_backend_optimization_level" not in flags:
    flags += " --xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "float32")


@pytest.fixture(scope="module", autouse=True)
def bounded_memory_mappings():
    """After the module: the jit caches cleared when the worker holds over half its mapping cap."""
    yield
    from polrl.train.programs import bound_compiled_programs

    bound_compiled_programs()

"""Training runs made of an eager ``init`` and a jittable ``train``, and running them over seeds.

The trainers of ``hnpg``, ``unio4``, ``marl`` and ``relic`` return a ``Run``: ``init(rng)`` builds
the initial parameters outside ``jit`` (``value_functions.eager_init`` says why), and
``train(rng, params, *data)`` is one pure, jittable function of the whole run.
``train_seeds`` initialises one run per key and trains them all in one ``jit(vmap(train))``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from polrl.control.value_functions import eager_init

Array = jax.Array


class Run(NamedTuple):
    """``init(rng) -> params`` (eager) and ``train(rng, params, *data) -> (result, metrics)``."""

    init: Callable[[Array], Any]
    train: Callable[..., Any]


def train_seeds(run: Run, keys: Array, *data):
    """``run`` once per key of ``keys`` [S] (initialised eagerly), as one ``jit(vmap(train))``.

    ``data`` (offline datasets) is shared by every seed. Returns the stacked ``(result, metrics)``.
    """
    params = eager_init(run.init, keys)
    in_axes = (0, 0) + (None,) * len(data)
    return jax.jit(jax.vmap(run.train, in_axes=in_axes))(keys, params, *data)

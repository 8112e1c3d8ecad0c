"""The protocol of a control trainer module, and training its run over seeds.

A config names the module that trains it, ``config.run = NAME`` for ``polrl.control.NAME``
(``train``, ``props``, ``marl``, ``volleyball``, ``relic``, ``unio4``, ``hnpg``, ``pgd``); every such
module exposes

    make_run(config) -> Run

and ``polrl.control.experiment.run`` imports the module by that name. A ``Run`` is the whole
training run as data: ``init(rng)`` builds the initial parameters outside ``jit``
(``value_functions.eager_init`` says why), ``train(rng, params, *data)`` is one pure, jittable
function of the whole run, ``data`` the offline datasets it reads (shared by every seed),
``steps_per_update`` the environment steps one entry of a per-update metric stands for, and
``report(metrics) -> (curves, summary)`` turns the run's metrics (numpy, [seeds, ...]) into the
per-update curves ([seeds, K] each) and the summary scalars.
``train_seeds`` initialises one run per key and trains them all in one ``jit(vmap(train))``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from polrl.control.value_functions import eager_init

Array = jax.Array


def per_update(metrics: dict) -> tuple[dict, dict]:
    """The default ``Run.report``: every metric is a per-update curve; no summary scalars."""
    return metrics, {}


class Run(NamedTuple):
    """A control training run (see the module docstring)."""

    init: Callable[[Array], Any]
    train: Callable[..., Any]
    steps_per_update: int
    data: tuple = ()
    report: Callable[[dict], tuple[dict, dict]] = per_update


def train_seeds(run: Run, keys: Array):
    """``run`` once per key of ``keys`` [S] (initialised eagerly), as one ``jit(vmap(train))``.

    ``run.data`` is shared by every seed. Returns the stacked ``(result, metrics)``.
    """
    params = eager_init(run.init, keys)
    in_axes = (0, 0) + (None,) * len(run.data)
    return jax.jit(jax.vmap(run.train, in_axes=in_axes))(keys, params, *run.data)

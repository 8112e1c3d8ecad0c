"""Asynchronous rollouts across processes: the first process generates, the others update.

In a multi-process run (``jax.distributed``) with ``async_rollouts`` and ``async_rollout_devices``
= the first process's device count, that process only generates and the other processes only
update. Multi-controller JAX runs a jitted program on the devices of the process that calls it,
so each side runs its own programs on its own devices, and the two sides meet twice per step in
collectives over every process (``multihost_utils.broadcast_one_to_all``; gloo on CPU):

    step s   generator:  batch_{s+k} = collect(θ_s)       updaters:  θ_{s+1} = update(θ_s, batch_s)
             all:        batch_{s+k} ──▶ updaters         (k = 0: the update waits for it)
             all:        θ_{s+1}, metrics_s ──▶ every process

The batch of step s comes from θ_{max(s−k, 0)}, as in the one-process pipeline
(``polrl.train.pipeline``): the first k batches from the snapshot buffer of ``collectors.stale``
(θ_0 at a phase's start), each later one from the parameters the updaters sent after update
s − 1. The updaters commit each batch as the synchronous step does (``commit_and_train``), so
their PolicyState after every step equals the synchronous ``staleness = k`` run's; with k = 0
the two sides take turns and the run is the synchronous run split over two processes.

The PolicyState lives on the update processes while the phase runs; ``home`` sends it to every
process and lays it out in the trainer's layout (all processes) for evaluation, checkpoints and
the phase's end. Every process reads the same data stream (the generator uses the prompts, the
updaters keep its position for the checkpoint) and receives the metrics, so all take the same
decisions (a non-finite reward, a stop). Only device collectors run here (their outputs have
shapes known in advance, which the collectives need).
"""
from __future__ import annotations

import collections
import contextlib
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from polrl import sharding
from polrl.collectors.stale import read_snapshot
from polrl.core import PolicyState
from polrl.train.pipeline import Lookahead, collect_keys, commit_and_train, generator_jit, old_state

TIMINGS = ("pipeline/generate_s", "pipeline/wait_s")


def broadcast(tree: Any, is_source: bool) -> Any:
    """``tree`` of the source process, as numpy values on every process (the others pass arrays
    of the same shapes and dtypes). Booleans travel as int8 (the collective sums)."""
    flags = jax.tree.map(lambda x: np.asarray(x).dtype == np.bool_, tree)
    sent = jax.tree.map(lambda x, b: np.asarray(x, np.int8) if b else np.asarray(x), tree, flags)
    out = multihost_utils.broadcast_one_to_all(sent, is_source=is_source)
    return jax.tree.map(lambda x, b: np.asarray(x).astype(np.bool_) if b else np.asarray(x), out, flags)


def zeros_like(tree: Any) -> Any:
    return jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), tree)


class ProcessPipeline:
    """The phase's generator on the first process, its updates on the others (module docstring).

    ``step(state)`` → ``(state, metrics, data position)`` runs one step on every process (the
    state argument is returned as it came: the current one lives on the updaters, see ``home``).
    """

    def __init__(self, *, lookahead: Lookahead, layout: sharding.Layout, train: Callable, state: PolicyState,
                 start: int, steps: int, data_iter, rows: int, data_shapes: dict, compiled: dict):
        self.k, self.start, self.steps = lookahead.k, start, steps
        self._home, self._data_iter, self._rows = layout, data_iter, rows
        self._gen, self._upd = lookahead.rollout_layout, lookahead.update_layout
        me = jax.process_index()
        self.generates = any(d.process_index == me for d in self._gen.mesh.devices.flat)
        self._first_updater = min(d.process_index for d in self._upd.mesh.devices.flat)
        k = self.k
        host = sharding.to_host(state)  # every process: the phase's state as it starts (or resumes)
        self._state_template = zeros_like(host)
        inner = host.collector_state["inner"] if k else host.collector_state
        policy = PolicyState(step=np.int32(0), rng=host.rng, params=host.params, opt_state=None,
                             ref_params=host.ref_params, models=host.models)
        generated = jax.eval_shape(lookahead.generate, inner, policy, data_shapes, host.rng)
        self._generated_template = zeros_like(generated)
        commit = commit_and_train(train, k)
        metrics = jax.eval_shape(commit, host, *generated)[1]
        self._metrics_template = {**zeros_like(metrics), **{t: np.zeros((), np.float32) for t in TIMINGS}}
        self._params_template = zeros_like(host.params)
        self._queue: collections.deque = collections.deque()  # the updaters' batches, in step order
        self._positions: collections.deque = collections.deque()  # the data position after each batch
        self._next = start
        if self.generates:
            put = lambda tree: jax.device_put(tree, self._gen.state_shardings(tree))
            self._ref, self._models, self._inner = put(host.ref_params), put(host.models), put(inner)
            self._versions = {start: put(host.params)}
            if k:  # θ_{max(s−k,0)} of the first k steps of this launch come from the snapshot buffer
                for s in range(start, min(start + k, steps)):
                    if max(s - k, 0) not in self._versions:
                        snap = read_snapshot(host.collector_state["snapshots"], host.params, s, k)
                        self._versions[max(s - k, 0)] = put(sharding.to_host(snap))
            self._keys = collect_keys(jnp.asarray(host.rng), start, steps - start)
            if "generate" not in compiled:
                compiled["generate"] = generator_jit(self._gen, lookahead.generate, self._inner)
            self._generate = compiled["generate"]
        else:
            self._state = self._upd.put(host, self._upd.state_shardings(host))
            if "commit" not in compiled:
                compiled["commit"] = self._upd.jit(commit, ("state", "batch", "params", "replicated"),
                                                   ("state", "replicated"), donate_argnums=(0,))
            self._commit = compiled["commit"]
        for t in range(start, min(start + k, steps)):  # fill the pipeline: the first k batches
            self._exchange_batch(t)

    # ------------------------------------------------------------------ the two collectives
    def _exchange_batch(self, t: int) -> float:
        """Step t's batch: generated on the first process from θ_{max(t−k,0)}, sent to every
        process; the updaters queue it. Every process notes the data position after its prompts.
        Returns the seconds this process spent in the collective."""
        data = next(self._data_iter)
        self._positions.append(self._data_iter.position)
        if self.generates:
            version = max(t - self.k, 0)
            params = self._versions.pop(version) if t == version + self.k else self._versions[version]
            key = jax.device_put(next(self._keys), self._gen.replicated)
            policy = old_state(params, t, self.k, self._ref, self._models, key, self._gen.replicated)
            arrays = self._gen.from_process_rows({n: v for n, v in data.items() if n != "examples"}, self._rows)
            t0 = time.perf_counter()
            batch, self._inner, metrics = self._generate(self._inner, policy, arrays, key)
            jax.block_until_ready(batch)
            metrics = {**metrics, "pipeline/generate_s": np.float32(time.perf_counter() - t0)}
            payload = sharding.to_host((batch, self._inner, metrics))
        else:
            batch, inner, metrics = self._generated_template
            payload = (batch, inner, {**metrics, "pipeline/generate_s": np.zeros((), np.float32)})
        t0 = time.perf_counter()
        payload = broadcast(payload, self.generates)
        waited = time.perf_counter() - t0
        if not self.generates:
            self._queue.append(payload)
        return waited

    def _exchange_params(self, send: bool, metrics) -> dict:
        """θ_{s+1} (when a later batch is generated from it) and step s's metrics, from the first
        updater to every process."""
        source = jax.process_index() == self._first_updater
        params = None
        if source:
            params = sharding.to_host(self._state.params) if send else None
        elif send:
            params = self._params_template
        out = broadcast({"params": params, "metrics": metrics if source else self._metrics_template}, source)
        if send and self.generates:
            self._versions[self._next] = jax.device_put(out["params"], self._gen.state_shardings(out["params"]))
        return out["metrics"]

    # ------------------------------------------------------------------ one step, every process
    def _update(self) -> dict:
        batch, inner, metrics = self._queue.popleft()
        metrics = {**metrics}
        generate_s = metrics.pop("pipeline/generate_s")
        upd = self._upd
        self._state, m = self._commit(self._state, upd.from_global(batch), upd.put(inner, upd.state_shardings(inner)),
                                      upd.put(metrics, upd.replicated))
        jax.block_until_ready(self._state)
        return {**sharding.to_host(m), "pipeline/generate_s": generate_s}

    def step(self, state: PolicyState):
        """Step s = the next one: the generator makes the batch of step s + k while the updaters
        update on the batch of step s (k = 0: after it arrives); then θ_{s+1} and the step's
        metrics go to every process. ``pipeline/wait_s``: the updaters' time in the batch
        collective (the generation they waited for beyond their update)."""
        s, k = self._next, self.k
        m = None
        if not self.generates and k:
            m = self._update()
        waited = self._exchange_batch(s + k) if s + k < self.steps else 0.0
        if not self.generates and not k:
            m = self._update()
        if m is not None:
            m["pipeline/wait_s"] = np.float32(waited)
        self._next += 1
        metrics = self._exchange_params(self._next + k < self.steps, m)
        return state, metrics, self._positions.popleft()

    def home(self, state: PolicyState) -> PolicyState:
        """The current PolicyState, from the first updater to every process, laid out in the
        trainer's layout (evaluation, checkpoints, the phase's end); every process calls it."""
        source = jax.process_index() == self._first_updater
        host = broadcast(sharding.to_host(self._state) if source else self._state_template, source)
        return self._home.put(host, self._home.state_shardings(host))

    def exclusive(self):
        """Nothing runs beside the caller on its devices (the sides meet in collectives only)."""
        return contextlib.nullcontext()

    def close(self) -> None:
        """Nothing runs in the background."""

"""Asynchronous rollouts: the batches of later steps are generated while earlier steps update.

A synchronous step generates, then updates, and the update waits for the longest response. With
a staleness bound k ≥ 1 the batch of step s may come from the policy of step s − k, so it can be
generated as soon as update s − k − 1 has produced θ_{s−k}, while updates s − k … s − 1 run:

    generator thread:  … collect(s) at θ_{s−k}   collect(s+1) at θ_{s+1−k}   …
    update thread:     … update(s−1) → θ_s       update(s) → θ_{s+1}          …

The lag is fixed, not opportunistic: the batch of step s always comes from θ_{max(s−k, 0)},
however fast either side runs. A run is therefore deterministic, and its batches, states,
metrics and checkpoints are those of the synchronous run with the same ``staleness``
(``polrl.collectors.stale``, which keeps θ_{s−k} in a ring buffer and produces the same rows
one step at a time). Only the wall clock differs: the generator runs up to k steps ahead.

How the pieces line up with the synchronous stale collector, at step s:

* the generator runs ``stale``'s middle part (``collectors.stale.lagged``: the inner collector at
  θ_{max(s−k,0)} and step max(s − k, 0), π_old set as ``staleness_old_policy`` says) with the
  step's key and the inner collector's state of the previous step — both independent of the
  updates: the key is the s-th of the state's key chain, which only ever splits
  (``collect_keys``), and no update touches a collector's state;
* the update thread then does what ``stale.collect`` does after generating (writes θ_s into the
  snapshot buffer of its state and takes the inner state the generator returned), splits the
  state's key as the synchronous step does, and runs the update: its PolicyState after every
  step equals the synchronous run's, which is why checkpoints and exact resume work unchanged.
  A relaunch reads θ_{s−k} … θ_{s−1} for the first k batches from that snapshot buffer.

θ_v for the generator is a copy of the parameters published after the update that produced it
(the state is donated to the next update). Where generation runs:

* on the update's mesh (``Lookahead.rollout_layout`` None): both threads dispatch to the same
  devices (the sampler reshards the weights to the rollout layout inside its step, as in the
  synchronous step), and the two programs overlap only where the runtime executes them side by
  side — XLA's CPU client does on a one-device mesh. On a mesh of several devices the threads
  take turns (``exclusive``: a lock from a program's dispatch to its completion): programs with
  collectives dispatched from two threads can start in different orders on different devices
  and wait on each other forever;
* on devices of its own (``async_rollout_devices``): the copy is pushed to the rollout devices
  after every update and each batch (with the collector's state and metrics) is brought back
  to the update's devices. Only device collectors run there.

One process only: two threads launching collectives in a different order on different hosts
would deadlock. Multi-process runs give generation a process of its own instead
(``polrl.train.process_pipeline``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from polrl import sharding
from polrl.collectors.stale import read_snapshot, write_snapshot
from polrl.core import PolicyState


@dataclasses.dataclass(frozen=True)
class Lookahead:
    """How a phase with ``staleness`` k ≥ 1 runs asynchronously.

    Attributes:
      k: the staleness (the fixed lag, in updates).
      generate: ``collectors.stale.lagged(inner, ctx, old_policy)`` of the phase's collector
        inside its ``stale`` wrapper.
      rollout_layout: the devices that generate, when they are not the update's
        (``async_rollout_devices``); None: generation shares the update's mesh.
      update_layout: the devices that update, when they are not the trainer's: a multi-process
        run whose first process generates and whose other processes update
        (``polrl.train.process_pipeline``); None: the trainer's layout.
    """

    k: int
    generate: Callable
    rollout_layout: sharding.Layout | None = None
    update_layout: sharding.Layout | None = None


def collect_keys(rng, first: int, count: int):
    """The collector keys of steps ``first`` … ``first + count − 1`` when the state's key at step
    ``first`` is ``rng``: the synchronous step splits ``rng → (rng, collect key)`` before collecting
    and ``rng → (rng, permutation key)`` in the update (``steps.update``), so the chain never
    depends on the parameters."""
    for _ in range(count):
        rng, key = jax.random.split(rng)
        rng = jax.random.split(rng)[0]
        yield key


def old_state(params, step: int, k: int, ref_params, models, key, replicated) -> PolicyState:
    """The policy state the generator hands the collector at step s = ``step``: θ_{max(s−k,0)}
    and its version (on the generator's devices: ``replicated``); the fields no collector reads
    (optimizer, transforms' states) are None, the key is the step's collector key."""
    return PolicyState(step=jax.device_put(jnp.int32(max(step - k, 0)), replicated), rng=key, params=params,
                       opt_state=None, ref_params=ref_params, models=models)


def commit_and_train(train: Callable, k: int) -> Callable:
    """``(state, batch, inner_state, metrics) -> (state, metrics)``: what the synchronous step does
    around its collector, then the update. With k ≥ 1 it writes θ_s into the snapshot buffer of
    ``collectors.stale`` and takes the generator's inner collector state; with k = 0 (generation
    on processes of its own, ``process_pipeline``) the collector state is the inner state itself.
    The state's key is split as the synchronous step splits it before collecting."""

    def commit(state, batch, inner_state, metrics):
        rng, _ = jax.random.split(state.rng)
        if k:
            snapshots = write_snapshot(state.collector_state["snapshots"], state.params, state.step, k)
            inner_state = {"snapshots": snapshots, "inner": inner_state}
        state, train_metrics = train(state.replace(rng=rng, collector_state=inner_state), batch)
        return state, {**metrics, **train_metrics}

    return commit


def generator_jit(layout: sharding.Layout, generate: Callable, inner) -> Callable:
    """``generate`` jitted on ``layout``'s devices; its outputs are laid out as the update step
    takes them (the batch split over the batch axes, the inner state like the state's)."""

    def traced(*args):
        with layout.active():
            return generate(*args)

    return jax.jit(traced, out_shardings=(layout.batch_sharding(1), layout.state_shardings(inner), layout.replicated))


class Pipeline:
    """Runs a phase's collector ahead of its updates (see the module docstring).

    ``step(state)`` → ``(state, metrics, data position)`` does the update of the next step on
    the batch the generator thread prepared; ``close()`` stops the thread.
    """

    def __init__(self, *, lookahead: Lookahead, layout: sharding.Layout, train: Callable, state: PolicyState,
                 start: int, steps: int, data_iter, rows: int, host: bool, compiled: dict):
        self.k, self.start, self.steps = lookahead.k, start, steps
        self._layout, self._data_iter, self._rows, self._host = layout, data_iter, rows, host
        self._rollout = lookahead.rollout_layout or layout  # where the generator's arrays live
        self._generate = lookahead.generate
        k = self.k
        self._ref, self._models = self._to_rollout(state.ref_params), self._to_rollout(state.models)
        snapshots, params = state.collector_state["snapshots"], state.params
        # θ_{max(s−k,0)} of the first k steps of this launch come from the snapshot buffer.
        self._versions = {start: self._to_rollout(params)}
        for s in range(start, min(start + k, steps)):
            if max(s - k, 0) not in self._versions:  # the slot read at s = 0 is not filled yet
                self._versions[max(s - k, 0)] = self._to_rollout(read_snapshot(snapshots, params, s, k))
        self._inner = self._to_rollout(state.collector_state["inner"])
        self._keys = collect_keys(jnp.copy(state.rng), start, steps - start)
        if "commit" not in compiled:
            compiled["commit"] = layout.jit(commit_and_train(train, k), ("state", "batch", "params", "replicated"),
                                            ("state", "replicated"), donate_argnums=(0,))
            compiled["generate"] = None if host else generator_jit(self._rollout, self._generate, self._inner)
        self._commit, self._generate_jit = compiled["commit"], compiled["generate"]
        # Two threads dispatching programs with collectives to the same devices can deadlock (each
        # device may run them in another order), so on a shared mesh of several devices they take turns.
        shared = self._rollout is layout and layout.mesh.devices.size > 1
        self._turn = threading.Lock() if shared else contextlib.nullcontext()
        self._ready = threading.Condition()
        self._stopped = False
        self._queue: queue.Queue = queue.Queue()
        self._next = start
        self._thread = threading.Thread(target=self._run_generator, name="polrl-rollouts", daemon=True)
        self._thread.start()

    def _to_rollout(self, tree):
        """A copy of ``tree`` for the generator: on the rollout devices, laid out by the update
        rules of their mesh (the sampler reshards inside its step), or a plain copy on a shared
        mesh (the state it came from is donated to the next update)."""
        if self._rollout is self._layout:
            return _copy(tree)
        return jax.device_put(tree, self._rollout.state_shardings(tree))

    def _to_update(self, batch, inner_state, metrics):
        """The generator's outputs on the update devices (identity on a shared mesh)."""
        if self._rollout is self._layout:
            return batch, inner_state, metrics
        layout = self._layout
        return (jax.device_put(batch, layout.batch_sharding(1)), jax.device_put(inner_state, layout.state_shardings(inner_state)),
                jax.device_put(metrics, layout.replicated))

    def _device_data(self, data: dict) -> dict:
        """The step's prompts as arrays on the generator's devices (the example dicts stay on the host)."""
        arrays = self._rollout.from_process_rows({k: v for k, v in data.items() if k != "examples"}, self._rows)
        return {**arrays, "examples": data["examples"]}

    # ------------------------------------------------------------------ generator thread
    def _params_of(self, step: int):
        """θ_{max(s−k,0)} for step s (waiting for the update that produces it); forgotten after
        the last step that reads it."""
        version = max(step - self.k, 0)
        with self._ready:
            self._ready.wait_for(lambda: version in self._versions or self._stopped)
            if self._stopped:
                raise _Stopped()
            return self._versions.pop(version) if step == version + self.k else self._versions[version]

    def _run_generator(self) -> None:
        try:
            for s, key in zip(range(self.start, self.steps), self._keys):
                data = next(self._data_iter)
                position = self._data_iter.position
                key = jax.device_put(key, self._rollout.replicated)
                policy = old_state(self._params_of(s), s, self.k, self._ref, self._models, key, self._rollout.replicated)
                t0 = time.perf_counter()
                with self._turn:
                    if self._host:
                        batch, self._inner, metrics = self._generate(self._inner, policy, self._device_data(data), key)
                    else:
                        arrays = {n: v for n, v in self._device_data(data).items() if n != "examples"}
                        batch, self._inner, metrics = self._generate_jit(self._inner, policy, arrays, key)
                    jax.block_until_ready((batch, self._inner, metrics))  # this thread only: the time the batch took
                self._queue.put((batch, self._inner, {**metrics, "pipeline/generate_s": time.perf_counter() - t0},
                                 position))
        except _Stopped:
            pass
        except BaseException as e:  # handed to the update thread, which raises it
            self._queue.put(e)

    # ------------------------------------------------------------------ update thread
    def step(self, state: PolicyState):
        """The update of the next step: ``(state, metrics, data position after the step)``.

        Two timings join the metrics: ``pipeline/generate_s``, the wall time the step's batch
        took in the generator (while updates ran beside it), and ``pipeline/wait_s``, how long
        this update waited for it (0 when generation keeps ahead: the run is update-bound)."""
        t0 = time.perf_counter()
        item = self._queue.get()
        wait = time.perf_counter() - t0
        if isinstance(item, BaseException):
            raise item
        batch, inner_state, metrics, position = item
        timings = {"pipeline/generate_s": metrics.pop("pipeline/generate_s"), "pipeline/wait_s": wait}
        with self._turn:
            state, metrics = self._commit(state, *self._to_update(batch, inner_state, metrics))
            jax.block_until_ready((state, metrics))
        metrics = {**metrics, **timings}
        self._next += 1
        version = self._next
        if version + self.k < self.steps:  # a later batch is generated from θ_version
            params = self._to_rollout(state.params)  # pushed to the generator's devices
            with self._ready:
                self._versions[version] = params
                self._ready.notify_all()
        return state, metrics, position

    def home(self, state: PolicyState) -> PolicyState:
        """The current state in the trainer's layout (it already is: the updates run there)."""
        return state

    def exclusive(self):
        """A context in which the caller's programs run alone on the devices (the trainer's
        evaluations): held against the generator on a shared mesh of several devices."""
        return self._turn

    def close(self) -> None:
        """Stops the generator thread (after its current collect) and waits for it."""
        with self._ready:
            self._stopped = True
            self._ready.notify_all()
        self._thread.join()


class _Stopped(Exception):
    pass


def _copy(tree: Any) -> Any:
    return jax.tree.map(jnp.copy, tree)

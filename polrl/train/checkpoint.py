"""Atomic checkpoints of a phase: PolicyState + data position + metric-log length, with orbax.

What a checkpoint holds is everything a phase's future depends on, so a resumed run is the
same computation as an uninterrupted one (bitwise on CPU):

* ``state`` — the PolicyState: parameters, optimizer state, reference, transform states, the
  step, and ``rng`` (the only RNG a step consumes: sampling, minibatch order and transform
  randomness are all split or folded from it);
* ``position`` — stream items consumed by the phase's ``BatchIterator`` (its order is a pure
  function of the seed and the epoch, so the position is the whole data state);
* ``global_step`` and ``metrics_lines`` — the run's step counter and how many lines
  ``metrics.jsonl`` had when the checkpoint was taken (a resumed run truncates the file back to
  it, so nothing logged after the checkpoint is duplicated).

Orbax writes each step into ``<step>.orbax-checkpoint-tmp-<time>`` and renames it when complete
(on object stores it writes a commit marker instead), and ``latest_step`` lists only finalized
steps, so a run killed mid-save never resumes from a half-written checkpoint. In a multi-host
run every process calls ``save``/``restore``; orbax coordinates them and writes the arrays'
shards from the processes that hold them.
"""
from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp


class Restored(NamedTuple):
    """What ``PhaseCheckpointer.load`` returns."""

    state: Any
    position: int
    global_step: int
    metrics_lines: int


class PhaseCheckpointer:
    """Saves and restores ``{"state", "position", "global_step", "metrics_lines"}``."""

    def __init__(self, directory: str, *, max_to_keep: int = 2):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        """The newest finalized step (temporary, half-written directories are not listed)."""
        return self._manager.latest_step()

    def save(self, step: int, state, *, position: int, global_step: int, metrics_lines: int = 0) -> None:
        """Writes step ``step`` and waits until it is finalized."""
        scalar = lambda v: np.asarray(v, np.int64)
        item = {"state": state, "position": scalar(position), "global_step": scalar(global_step),
                "metrics_lines": scalar(metrics_lines)}
        self._manager.save(step, args=ocp.args.StandardSave(item))
        self._manager.wait_until_finished()

    def load(self, like_state) -> Restored:
        """The latest step, restored into the structure (and shardings) of ``like_state``."""
        step = self._manager.latest_step()
        scalar = jax.ShapeDtypeStruct((), np.int64)
        abstract = {
            "state": jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state),
            "position": scalar, "global_step": scalar, "metrics_lines": scalar,
        }
        item = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        return Restored(item["state"], int(item["position"]), int(item["global_step"]), int(item["metrics_lines"]))

    def restore(self, like_state):
        """``(state, position, global_step)`` of the latest step (see ``load``)."""
        return self.load(like_state)[:3]

    def close(self) -> None:
        self._manager.close()

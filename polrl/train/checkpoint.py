"""Atomic checkpoints of a phase: PolicyState + data position, with orbax.

Orbax writes each step into a temporary directory and renames it when complete, and only
complete steps are listed, so a run killed mid-save never resumes from a half-written
checkpoint.
"""
from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp


class PhaseCheckpointer:
    """Saves and restores ``{"state": PolicyState, "position": int, "global_step": int}``."""

    def __init__(self, directory: str, *, max_to_keep: int = 2):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state, *, position: int, global_step: int) -> None:
        item = {"state": state, "position": np.asarray(position, np.int64),
                "global_step": np.asarray(global_step, np.int64)}
        self._manager.save(step, args=ocp.args.StandardSave(item))
        self._manager.wait_until_finished()

    def restore(self, like_state):
        """Restores the latest step into the structure of ``like_state``: (state, position, global_step)."""
        step = self._manager.latest_step()
        abstract = {
            "state": jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state),
            "position": jax.ShapeDtypeStruct((), np.int64),
            "global_step": jax.ShapeDtypeStruct((), np.int64),
        }
        item = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        return item["state"], int(item["position"]), int(item["global_step"])

    def close(self) -> None:
        self._manager.close()

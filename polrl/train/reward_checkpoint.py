"""Reading a reward model's parameters from a finished training run's checkpoints.

A reward model trained with the ``reward_model`` noun is a phase of an ordinary run, so its
parameters are the ``state.params`` of that phase's checkpoints (``polrl.train.checkpoint``):
``WORKDIR/checkpoints/<phase>``. ``load_reward_params`` reads only those parameters (a partial
restore: the optimizer state and the rest stay on disk), from the newest finished step, after
checking every saved parameter's name, shape and dtype against the reward model the config
describes — orbax itself would restore into a different shape without a word.
"""
from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp


def _flat(tree) -> dict:
    """``{"a/b/c": (shape, dtype)}`` of a parameter tree (a Variable's value is its "value")."""
    def name(entry):
        for attr in ("key", "idx", "name"):
            if hasattr(entry, attr):
                return str(getattr(entry, attr))
        return str(entry)

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(name(e) for e in path): (tuple(x.shape), np.dtype(x.dtype)) for path, x in leaves}


def _mismatch(saved: dict, expected: dict) -> str:
    """The first few differences between two ``_flat`` trees, or "" when equal."""
    problems = [f"{k} missing from the checkpoint" for k in sorted(set(expected) - set(saved))]
    problems += [f"{k} not in the model" for k in sorted(set(saved) - set(expected))]
    problems += [f"{k} is {saved[k][0]} {saved[k][1]} in the checkpoint, {expected[k][0]} {expected[k][1]} in the model"
                 for k in sorted(set(saved) & set(expected)) if saved[k] != expected[k]]
    return "; ".join(problems[:3]) + (f"; … ({len(problems)} differences)" if len(problems) > 3 else "")


def load_reward_params(path: str, abstract_params):
    """The parameters at ``path`` (a phase's checkpoint directory), restored into the structure
    of ``abstract_params`` (the reward model's ``nnx.State``, arrays or ShapeDtypeStructs). One-line
    errors for an empty or missing path, a directory without a finished checkpoint and parameters
    of another shape."""
    if not path:
        raise ValueError("reward_model.path is empty; set it to the reward model run's checkpoint directory "
                         "(WORKDIR/checkpoints/<phase> of a run with the reward_model noun)")
    if not os.path.isdir(path):
        raise ValueError(f"reward_model.path={path!r} does not exist; train the reward model first (e.g. "
                         f"experiments/arithmetic_reward_model.py) or point it at WORKDIR/checkpoints/<phase>")
    manager = ocp.CheckpointManager(os.path.abspath(path), item_handlers=ocp.PyTreeCheckpointHandler(),
                                    options=ocp.CheckpointManagerOptions(create=False, read_only=True))
    step = manager.latest_step()
    if step is None:
        raise ValueError(f"reward_model.path={path!r} holds no finished checkpoint; point it at a phase's checkpoint "
                         f"directory, WORKDIR/checkpoints/<phase>")
    tree = manager.item_metadata(step).tree
    saved = tree.get("state", {}).get("params") if isinstance(tree, dict) else None
    if saved is None:
        raise ValueError(f"reward_model.path={path!r} step {step} is not a polrl phase checkpoint (no state.params)")
    # Restored onto one device, whatever mesh saved them; the run lays them out with its own state.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), abstract_params)
    problem = _mismatch(_flat(saved), _flat(abstract))
    if problem:
        raise ValueError(f"reward_model.path={path!r}: the checkpoint's parameters do not fit the reward model of "
                         f"reward_model.model ({problem}); set reward_model.model to the model it was trained as")
    item = {"state": {"params": abstract}}
    restored = manager.restore(step, args=ocp.args.PyTreeRestore(
        item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item), partial_restore=True))
    manager.close()
    return restored["state"]["params"]

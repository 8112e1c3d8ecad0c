"""Reading a frozen model's parameters from a finished training run's checkpoints.

A model trained by polrl — a reward model (the ``reward_model`` noun), a policy after GRPO or after
its SFT warm start — is a phase of an ordinary run, so its parameters are the ``state.params`` of
that phase's checkpoints (``polrl.train.checkpoint``): ``WORKDIR/checkpoints/<phase>``.
``load_params`` reads only those parameters (a partial restore: the optimizer state and the rest
stay on disk), from the newest finished step, after checking every saved parameter's name, shape
and dtype against the model the config describes — orbax itself would restore into a different
shape without a word. Its errors name the config field that holds the path (``Source``):
``load_reward_params`` reads ``reward_model.path``; ``config.density_ratio`` reads its strong and
weak policies with ``policy_source``.
"""
from __future__ import annotations

import os
from typing import NamedTuple

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


class Source(NamedTuple):
    """Where a config names a checkpoint, for the one-line errors of ``load_params``.

    Attributes:
      field: the config field holding the path (``"reward_model.path"``).
      model_field: the config field describing the model (``"reward_model.model"``).
      model: what the parameters are, in words (``"the reward model"``).
      origin: which directory to point ``field`` at.
      make: how to get one when the path does not exist.
    """

    field: str
    model_field: str
    model: str
    origin: str
    make: str


REWARD_MODEL = Source("reward_model.path", "reward_model.model", "the reward model",
                      "the reward model run's checkpoint directory (WORKDIR/checkpoints/<phase> of a run with the "
                      "reward_model noun)",
                      "train the reward model first (e.g. experiments/arithmetic_reward_model.py)")


def policy_source(field: str, model_field: str) -> Source:
    """The ``Source`` of a policy (no value head) read from a run's phase checkpoints."""
    return Source(field, model_field, "the policy",
                  "a policy run's phase checkpoint directory (WORKDIR/checkpoints/<phase>, e.g. "
                  "runs/arithmetic_grpo/checkpoints/rl or …/sft_warmup)",
                  "train the run first (e.g. the launch command of experiments/arithmetic_grpo.py)")


def load_params(path: str, abstract_params, source: Source):
    """The parameters at ``path`` (a phase's checkpoint directory), restored into the structure
    of ``abstract_params`` (the model's ``nnx.State``, arrays or ShapeDtypeStructs). One-line
    errors naming ``source.field`` for an empty or missing path and a directory without a finished
    checkpoint, and ``source.model_field`` for parameters of another shape."""
    field = source.field
    if not path:
        raise ValueError(f"{field} is empty; set it to {source.origin}")
    if not os.path.isdir(path):
        raise ValueError(f"{field}={path!r} does not exist; {source.make} or point it at WORKDIR/checkpoints/<phase>")
    manager = ocp.CheckpointManager(os.path.abspath(path), item_handlers=ocp.PyTreeCheckpointHandler(),
                                    options=ocp.CheckpointManagerOptions(create=False, read_only=True))
    step = manager.latest_step()
    if step is None:
        raise ValueError(f"{field}={path!r} holds no finished checkpoint; point it at a phase's checkpoint "
                         f"directory, WORKDIR/checkpoints/<phase>")
    tree = manager.item_metadata(step).tree
    saved = tree.get("state", {}).get("params") if isinstance(tree, dict) else None
    if saved is None:
        raise ValueError(f"{field}={path!r} step {step} is not a polrl phase checkpoint (no state.params)")
    # Restored onto one device, whatever mesh saved them; the run lays them out with its own state.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), abstract_params)
    problem = _mismatch(_flat(saved), _flat(abstract))
    if problem:
        raise ValueError(f"{field}={path!r}: the checkpoint's parameters do not fit {source.model} of "
                         f"{source.model_field} ({problem}); set {source.model_field} to the model it was trained as")
    item = {"state": {"params": abstract}}
    restored = manager.restore(step, args=ocp.args.PyTreeRestore(
        item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item), partial_restore=True))
    manager.close()
    return restored["state"]["params"]


def load_reward_params(path: str, abstract_params):
    """``load_params`` of a reward model named by ``reward_model.path`` / ``reward_model.model``."""
    return load_params(path, abstract_params, REWARD_MODEL)

"""Frozen auxiliary models of a run: ``config.models``, and the reward models and policies that
``config.reward_model`` / ``config.density_ratio`` name.

A method that needs more than the policy — a reward model (RLHF), a process reward model (search,
MCTS), a strong and a weak policy (CDR), a teacher, a dialogue target — names its models; the run
holds each once::

  models:
    <name>:
      path:       a polrl run's phase checkpoint directory (WORKDIR/checkpoints/<phase>): its
                  state.params, checked against ``model`` (``reward_checkpoint.load_params``); or
      hf_path:    a local Hugging Face checkpoint directory (weights and shape from it; its
                  vocabulary must hold the task's tokenizer's ids)
      model:      TransformerConfig fields (default: config.model); with hf_path, run options only
      value_head: whether the model has a scalar value head (a reward or process reward model;
                  default False). Not with hf_path: a fresh head would be random

Where each part lives:

* the static side, ``collectors.NamedModel(graphdef, value_head)``, in ``Context.models`` — a
  collector takes a model's *name* as a keyword (``mcts_pairs(prm=…)``,
  ``with_reward_model(model=…)``) and checks it when it is built;
* the parameters in ``PolicyState.models[name]``: laid out with the update rules like the
  policy's, handed to every compiled step as arguments (never baked in as constants) and
  **never written to checkpoints** — a relaunch reloads them from ``path`` / ``hf_path``, so a
  checkpoint holds only what training changes.

"policy" and "reference" are reserved names: they read the phase's policy and its reference
(``PolicyState.ref_params``, the warm start or the previous phase's result), so a frozen model that
*is* the reference costs no second copy (``density_ratio.weak: "reference"``). A model trained
during a run is not an auxiliary model: it is the policy of its own phase (a reward model, a PRM,
a judge that is the policy itself) or part of a transform's or collector's state, and is
checkpointed with it.
"""
from __future__ import annotations

from flax import nnx

from polrl import models as models_lib
from polrl.collectors.context import RESERVED_MODELS, NamedModel
from polrl.train.reward_checkpoint import Source, load_params

MODEL_FIELDS = ("path", "hf_path", "model", "value_head")


def frozen_model_structure(model_config, vocab_size: int, *, value_head: bool, field: str):
    """``(graphdef, parameter shapes)`` of a frozen polrl Transformer read from a polrl checkpoint,
    as the ``model`` config section ``field`` describes (nothing is initialized)."""
    model_kw = models_lib.model_kwargs(model_config)
    if model_kw.pop("hf_path", "") or model_kw.pop("lora_rank", 0):
        raise ValueError(f"{field}: the model is a polrl Transformer read from a polrl run's checkpoint; give its "
                         f"TransformerConfig fields (no hf_path / lora_rank)")
    model_kw.pop("lora_alpha", None)
    abstract = nnx.eval_shape(lambda: models_lib.Transformer(models_lib.TransformerConfig(
        vocab_size=vocab_size, value_head=value_head, **model_kw), rngs=nnx.Rngs(0)))
    return nnx.split(abstract, nnx.Param)


def reward_model_structure(model_config, vocab_size: int):
    """``(graphdef, parameter shapes)`` of the reward model a ``model`` config section describes:
    a Transformer with a value head."""
    return frozen_model_structure(model_config, vocab_size, value_head=True, field="reward_model.model")


def model_source(field: str, model_field: str, what: str) -> Source:
    """The ``Source`` (for ``load_params``' errors) of a frozen model named by ``field``."""
    return Source(field, model_field, what,
                  "a polrl run's phase checkpoint directory (WORKDIR/checkpoints/<phase>)",
                  "train that run first (its experiment's launch command)")


def load_model(entry, default_model, vocab_size: int, where: str, *, source: Source | None = None):
    """``(NamedModel, params)`` of one ``config.models`` entry (``where`` = "models.<name>"),
    checked field by field; ``source`` overrides the errors' wording for a ``path``."""
    if not hasattr(entry, "keys"):
        raise ValueError(f"{where}={entry!r} must be a section with path (or hf_path), model and value_head")
    entry = dict(entry)
    unknown = sorted(set(entry) - set(MODEL_FIELDS))
    if unknown:
        raise ValueError(f"{where}.{unknown[0]} is not a model field; a model takes {list(MODEL_FIELDS)}")
    path, hf_path, value_head = entry.get("path", ""), entry.get("hf_path", ""), entry.get("value_head", False)
    if not isinstance(value_head, bool):
        raise ValueError(f"{where}.value_head={value_head!r} must be True or False")
    if bool(path) == bool(hf_path):
        raise ValueError(f"{where}: set exactly one of path (a polrl run's WORKDIR/checkpoints/<phase>) and hf_path "
                         f"(a local Hugging Face checkpoint directory)")
    if path:
        graphdef, shapes = frozen_model_structure(entry.get("model") or default_model, vocab_size,
                                                  value_head=value_head, field=f"{where}.model")
        params = load_params(path, shapes, source or model_source(f"{where}.path", f"{where}.model",
                                                                  f"model {where}"))
        return NamedModel(graphdef, value_head), params
    if value_head:
        raise ValueError(f"{where}.value_head=True with hf_path: the value head would be random; train it in a polrl "
                         f"run (e.g. the reward_model noun) and give that run's checkpoint as {where}.path")
    model_kw = models_lib.model_kwargs(entry.get("model") or {})
    model = models_lib.build_model(model_kw, vocab_size=vocab_size, value_head=False, seed=0, hf_path=hf_path)
    graphdef, params = nnx.split(model, nnx.Param)
    return NamedModel(graphdef, False), params


def load_models(config, vocab_size: int) -> tuple[dict, dict]:
    """``({name: NamedModel}, {name: params})`` of ``config.models`` (both ``{}`` without it)."""
    entries = config.get("models") or {}
    if not hasattr(entries, "keys"):
        raise ValueError(f"config.models={entries!r} must be a section: name → {{path | hf_path, model, value_head}}")
    named, params = {}, {}
    for name in entries:
        if not isinstance(name, str) or not name or name in RESERVED_MODELS:
            raise ValueError(f"config.models.{name}: {sorted(RESERVED_MODELS)} name the phase's own policy and "
                             f"reference; give the model another name")
        named[name], params[name] = load_model(entries[name], config.model, vocab_size, f"models.{name}")
    return named, params


def add_model(named: dict, params: dict, name: str, model: NamedModel, value, field: str) -> str:
    """Registers a model a config section other than ``config.models`` loads under ``name``;
    a one-line error naming ``field`` when ``config.models`` already uses the name."""
    if name in named:
        raise ValueError(f"{field} loads a model named {name!r}, which config.models also defines; rename "
                         f"config.models.{name}")
    named[name], params[name] = model, value
    return name

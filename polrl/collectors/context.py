"""What collectors are built from: one ``Context`` per run."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from polrl import sharding
from polrl.core import TEACHER, Batch
from polrl.rollout import SamplingConfig


RESERVED_MODELS = ("policy", "reference")


@dataclasses.dataclass(frozen=True)
class NamedModel:
    """The static side of a frozen auxiliary model (``config.models``): its structure and whether
    it carries a scalar value head (a reward or process reward model reads it)."""

    graphdef: Any
    value_head: bool = False


@dataclasses.dataclass(frozen=True)
class Context:
    """The run's static facts a collector needs.

    Attributes:
      graphdef: the policy model's structure; collectors run it with the parameters of the
        policy state (``state.params``, or ``state.ref_params`` for the reference).
      task: data shapes (``max_prompt_len``, ``max_answer_len``), the tokenizer and the rewards.
      sampling: the rollout's sampling options (budget, temperature, top-k/p, min-p, EOS).
      group_size: samples per prompt (G).
      layout: devices and shardings; host collectors jit their device parts with it and read
        this process's rows of a batch through it.
      models: the run's frozen auxiliary models by name (``NamedModel``); their parameters are
        ``PolicyState.models[name]``. A collector takes a model's name as a keyword, checks it
        when built (``check_named_model``) and reads ``(graphdef, params)`` with ``named_model``,
        where "policy" and "reference" also name the phase's policy and its reference.
      params_template: the policy's parameters as ShapeDtypeStructs (a collector that keeps
        parameter snapshots allocates its buffers from it), or None.
    """

    graphdef: Any
    task: Any
    sampling: SamplingConfig
    group_size: int
    layout: sharding.Layout
    models: Mapping[str, NamedModel] = dataclasses.field(default_factory=dict, hash=False)
    params_template: Any = dataclasses.field(default=None, hash=False)

    @property
    def pad_id(self) -> int:
        return self.sampling.pad_id


def check_named_model(ctx: Context, name: str, field: str, *, value_head: bool | None = None) -> None:
    """``name`` must be a model the collector can read: one of ``ctx.models``, "policy" or
    "reference"; with ``value_head`` set, a model with (True) or without (False) a value head
    (the policy and the reference have the policy's head). One-line errors naming ``field``."""
    if name in RESERVED_MODELS:
        return
    if name not in ctx.models:
        raise ValueError(f"{field}={name!r} is not a model of this run; add it to config.models (path, model, "
                         f"value_head) or name one of {sorted(ctx.models) + list(RESERVED_MODELS)}")
    if value_head is not None and ctx.models[name].value_head != value_head:
        have = "has" if ctx.models[name].value_head else "has no"
        raise ValueError(f"{field}={name!r} {have} value head, and this collector needs a model "
                         f"{'with' if value_head else 'without'} one; set config.models.{name}.value_head="
                         f"{value_head} if the checkpoint holds one, or name another model")


def named_model(ctx: Context, state, name: str, who: str) -> tuple[Any, Any]:
    """``(graphdef, params)`` of the model ``name`` in the policy state ``state``: the policy
    (``state.params``), the reference (``state.ref_params``: no second copy of the warm start) or
    a frozen auxiliary model (``state.models[name]``)."""
    if name == "policy":
        return ctx.graphdef, state.params
    if name == "reference":
        if state.ref_params is None:
            raise ValueError(f"{who} reads the reference, but PolicyState.ref_params is None; declare "
                             f"\"reference\" in the collector's needs")
        return ctx.graphdef, state.ref_params
    if state.models is None or name not in state.models:
        raise ValueError(f"{who} reads model {name!r}, which PolicyState.models does not hold; build the run with "
                         f"config.models.{name}")
    return ctx.models[name].graphdef, state.models[name]


def policy_template(ctx: Context, who: str):
    """``ctx.params_template`` (the policy's parameter shapes); an error naming ``who`` when the
    Context was built without it."""
    if ctx.params_template is None:
        raise ValueError(f"{who} keeps snapshots of the policy's parameters and needs Context.params_template (their "
                         f"shapes: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)); "
                         f"polrl.train.build sets it")
    return ctx.params_template


def check_sampler(ctx: Context, policy: str, field: str) -> None:
    """``policy`` names the model a collector samples rows from: "current" (the policy being
    trained), "reference" (the phase's frozen reference) or a frozen model of the run (a teacher,
    ``ctx.models``, sharing the task's tokenizer); a one-line error naming ``field`` otherwise."""
    if policy != "current":
        check_named_model(ctx, policy, field)


def sampler(ctx: Context, state, policy: str, who: str) -> tuple[Any, Any, Any]:
    """``(graphdef, params, version)`` of the model ``policy`` (``check_sampler``) in ``state``:
    the rows it samples carry ``version_b`` = the policy's step for "current", 0 for a frozen model."""
    if policy in ("current", "policy"):
        return ctx.graphdef, state.params, state.step
    return (*named_model(ctx, state, policy, who), 0)


def reads_reference(*names: str) -> frozenset:
    """A collector's ``needs`` when it reads the models ``names``: ``{"reference"}`` if one is
    the reference (so the phase keeps ``ref_params``), else nothing."""
    return frozenset({"reference"}) if "reference" in names else frozenset()


def shapes(rows: int, prompt_len: int, width: int, group_size: int, **fields: Any) -> Batch:
    """A Batch of ShapeDtypeStructs: ``rows`` sequences of ``prompt_len`` prompt and ``width``
    response tokens; ``fields`` name the optional fields present (value: dtype) and ``aux``
    (a dict name → (shape suffix dims after rows, dtype))."""
    bt = lambda dtype: jax.ShapeDtypeStruct((rows, width), dtype)
    b = lambda dtype: jax.ShapeDtypeStruct((rows,), dtype)
    aux = {k: jax.ShapeDtypeStruct((rows, *dims), dtype) for k, (dims, dtype) in fields.pop("aux", {}).items()}
    per_token = {k: bt(v) for k, v in fields.items() if k.endswith("_bt")}
    per_row = {k: b(v) for k, v in fields.items() if k.endswith("_b")}
    return Batch(
        prompt_bp=jax.ShapeDtypeStruct((rows, prompt_len), jnp.int32),
        prompt_valid_bp=jax.ShapeDtypeStruct((rows, prompt_len), jnp.bool_),
        response_bt=bt(jnp.int32), mask_bt=bt(jnp.float32), aux=aux, group_size=group_size,
        **per_token, **per_row,
    )


def repeat_rows(x, copies: int):
    """Each row of ``x`` (leading axis) ``copies`` times, in ``jnp.repeat`` order."""
    return jnp.repeat(x, copies, axis=0)


def row_source(policy: str) -> int | None:
    """The ``source_b`` of rows sampled by ``policy``: TEACHER for a frozen model of the run, None
    (the policy's own rows, of version step or 0) for "current" and "reference"."""
    return None if policy in ("current", "policy", "reference") else TEACHER


def group_rows(data: dict, response_bt, mask_bt, logp_bt, group_size: int, version, source: int | None = None,
               **fields) -> Batch:
    """G sampled responses per prompt as a Batch: rows k·G … k·G + G − 1 answer prompt k (its
    prompt repeated, ``group_b`` = k), the mask and the sampler's log-probs as float32 (Batch floats
    are float32 whatever the model's dtype), every row's ``version_b`` = ``version`` and, unless
    None, ``source_b`` = ``source``; ``fields`` are further Batch fields (``aux``)."""
    rows = response_bt.shape[0]
    if source is not None:
        fields["source_b"] = jnp.full((rows,), source, jnp.int32)
    return Batch(
        prompt_bp=repeat_rows(data["prompt_bp"], group_size),
        prompt_valid_bp=repeat_rows(data["prompt_valid_bp"], group_size),
        response_bt=response_bt,
        mask_bt=mask_bt.astype(jnp.float32),
        group_b=jnp.arange(rows, dtype=jnp.int32) // group_size,
        behavior_logp_bt=logp_bt.astype(jnp.float32),
        version_b=jnp.full((rows,), version, jnp.int32),
        group_size=group_size,
        **fields,
    )


def check_one_group_per_prompt(batch: Batch, prompts: int, who: str) -> None:
    """A wrapper's inner collector must return one group of ``batch.group_size`` rows per prompt."""
    if batch.batch_size != prompts * batch.group_size:
        raise ValueError(f"{who}: the inner collector returned {batch.batch_size} rows for {prompts} prompts in groups "
                         f"of {batch.group_size}; it must return one group per prompt")


def substitute_rows(batch: Batch, take_b, *, response_bt, mask_bt, behavior_logp_bt, reward_b, source: int,
                    version) -> Batch:
    """``batch`` with the rows where ``take_b`` (bool [B]) is set taken from the given [B, …] arrays
    (response, mask, behaviour log-probs, reward), ``source_b`` = ``source``, ``version_b`` =
    ``version`` and zeros in every ``aux`` field; ``batch`` has ``source_b`` and ``version_b``."""
    pick = lambda new, old: jnp.where(take_b.reshape((-1,) + (1,) * (old.ndim - 1)), new.astype(old.dtype), old)
    return batch.replace(
        response_bt=pick(response_bt, batch.response_bt),
        mask_bt=pick(mask_bt, batch.mask_bt),
        behavior_logp_bt=pick(behavior_logp_bt, batch.behavior_logp_bt),
        reward_b=pick(reward_b, batch.reward_b),
        source_b=jnp.where(take_b, source, batch.source_b),
        version_b=jnp.where(take_b, version, batch.version_b),
        aux={name: pick(jnp.zeros_like(x), x) for name, x in batch.aux.items()})


def check_rewards_shape(reward, rows: int, name: str) -> None:
    """A reward function's output must be one float per sequence (checked while tracing)."""
    if getattr(reward, "shape", None) != (rows,):
        raise ValueError(
            f"reward function {name} returns shape {getattr(reward, 'shape', reward)}, expected "
            f"[{rows}] (one reward per sequence); fix the reward function"
        )


def host_rows(ctx: Context, x) -> np.ndarray:
    """This process's rows of a batch-sharded array, on the host."""
    return ctx.layout.local_rows(x)

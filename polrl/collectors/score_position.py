"""Where a sequence-level score (a reward model's r(x, y)) is read: the value head on the final
hidden state of the response's last token.

For a row ``x ++ y`` with response tokens y_0 … y_{L−1} (the last one is EOS when the response
finished, the last generated token when it was cut at the budget), the score is

    r(x, y) = w · h_{P+L−1} + b,

the scalar value head on the final hidden state at sequence position P + L − 1 (P prompt
columns), the one position that has attended to the whole prompt and the whole response. With
an empty response (L = 0) it is the prompt's last position. ``sequence_scores`` computes it with
one forward over prompt ++ response (the reward given to RLHF rows); during training the
trainer's scoring forward gives the value head at the positions P − 1 … P + T − 2 that predict the
response tokens, which end one column short of P + L − 1 when L = T, so ``with_score_position``
widens every row by one pad column and records, per row, the column of ``value_bt`` that holds
r(x, y) (``aux["score_index_b"]`` = L, one past the last masked column); the two agree exactly
(tests).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from polrl.collectors.context import Context
from polrl.core import Batch, Collector
from polrl.train.steps import sequence_inputs

FIELD = "score_index_b"


def score_index(mask_bt) -> jax.Array:
    """int32 [B]: one past the last masked response column (L; 0 for an empty response)."""
    t = jnp.arange(1, mask_bt.shape[1] + 1, dtype=jnp.int32)
    return jnp.max(jnp.where(mask_bt > 0, t, 0), axis=1)


def sequence_scores(graphdef, params, batch: Batch) -> jax.Array:
    """float32 [B]: r(x, y) of every row (the module's formula), from one forward of the model
    ``(graphdef, params)``, which must have a value head."""
    model = nnx.merge(graphdef, params)
    tokens, positions, valid = sequence_inputs(batch.prompt_bp, batch.prompt_valid_bp, batch.response_bt)
    hidden, _ = model.forward(tokens, positions, valid)
    last = batch.prompt_bp.shape[1] - 1 + score_index(batch.mask_bt)
    return model.value(jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]).astype(jnp.float32)


def _widen(x, fill):
    return jnp.pad(x, ((0, 0), (0, 1)) + ((0, 0),) * (x.ndim - 2), constant_values=fill)


def widen_rows(batch: Batch, pad_id: int) -> Batch:
    """Every per-token field (``*_bt``, in ``aux`` too) one column wider: ``pad_id`` in the
    response, 0 elsewhere (so the mask leaves the new column out); ``aux["score_index_b"]`` set."""
    fields = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch) if f.name.endswith("_bt")}
    wide = {k: _widen(v, pad_id if k == "response_bt" else 0) for k, v in fields.items() if v is not None}
    aux = {k: _widen(v, 0) if k.endswith("_bt") else v for k, v in batch.aux.items()}
    return batch.replace(**wide, aux={**aux, FIELD: score_index(batch.mask_bt)})


def with_score_position():
    """``(collector, context) -> collector`` whose rows are one pad column wider, with
    ``aux["score_index_b"]``: the column of the scoring forward's ``value_bt`` that holds r(x, y)
    (the module docstring). The reward model's training data (``reward_model`` noun)."""

    def wrap(inner: Collector, ctx: Context) -> Collector:
        widen = lambda batch: widen_rows(batch, ctx.pad_id)
        if inner.host:  # the inner rows are global arrays outside jit: widen them in one jitted call
            widen = ctx.layout.jit(widen, ("batch",), "batch")

        def collect(cstate, state, data, rng):
            batch, cstate, metrics = inner.collect(cstate, state, data, rng)
            return widen(batch), cstate, metrics

        def example(prompts):
            ex = inner.example(prompts)
            struct = lambda x: jax.ShapeDtypeStruct((x.shape[0], x.shape[1] + 1) + x.shape[2:], x.dtype)
            fields = {f.name: getattr(ex, f.name) for f in dataclasses.fields(ex) if f.name.endswith("_bt")}
            aux = {k: struct(v) if k.endswith("_bt") else v for k, v in ex.aux.items()}
            return ex.replace(**{k: struct(v) for k, v in fields.items() if v is not None},
                              aux={**aux, FIELD: jax.ShapeDtypeStruct((ex.batch_size,), jnp.int32)})

        return inner._replace(collect=collect, example=example)

    return wrap

"""A frozen teacher's next-token logits at every response position of a collector's rows.

On-policy distillation (GKD, arXiv 2306.13649: the ``gkd`` noun) compares the student's and the
teacher's whole next-token distributions at every position of the rows, so the teacher's logits
are computed once per batch, outside the gradient, by one scoring forward of the teacher on the
rows (prompt ++ response; the LM head runs on the T positions that predict response tokens only)
and stored as ``aux["teacher_logits_btv"]`` (float32 [B, T, V]).

Size: B·T·V floats; with the 64-entry character vocabulary and T ≤ 128 that is a few MB per
batch. With a real vocabulary (V ≈ 10⁵) the dense array does not fit a step's memory; the way to
scale is to keep the teacher's top-k log-probs and their token ids (k ≈ 20–100) plus the tail
mass as one bucket, and compare the two distributions on that coarsened support — not carried
here, where the dense array is small.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl.collectors.context import Context, check_named_model, named_model, policy_template, reads_reference
from polrl.core import Collector
from polrl.train.steps import score


def with_teacher_logits(teacher: str = "teacher"):
    """``(collector, context) -> collector`` adding ``aux["teacher_logits_btv"]``: the logits of
    the frozen model ``teacher`` (a model of ``config.models`` without a value head, or
    "reference") at every response position of the inner collector's rows, divided by the
    rollout temperature (the trainer's scoring convention, so they compare with the student's
    ``logits_btv``), without gradient. Metric ``teacher_logp_mean``: the teacher's mean
    log-prob of the rows' tokens (how likely the teacher finds what the rows say)."""

    def wrap(inner: Collector, ctx: Context) -> Collector:
        if inner.host:
            raise ValueError("with_teacher_logits: the inner collector runs on the host; score rows from a device "
                             "collector (e.g. group_samples)")
        check_named_model(ctx, teacher, "gkd: teacher", value_head=False)
        template = policy_template(ctx, "with_teacher_logits")

        def collect(cstate, state, data, rng):
            batch, cstate, metrics = inner.collect(cstate, state, data, rng)
            graphdef, params = named_model(ctx, state, teacher, "with_teacher_logits")
            out = score(graphdef, params, batch, temperature=ctx.sampling.temperature, full_logits=True)
            logits = jax.lax.stop_gradient(out["logits_btv"]).astype(jnp.float32)
            logp_mean = (out["logp_bt"] * batch.mask_bt).sum() / jnp.maximum(batch.mask_bt.sum(), 1.0)
            batch = batch.replace(aux={**batch.aux, "teacher_logits_btv": logits})
            return batch, cstate, {**metrics, "teacher_logp_mean": logp_mean.astype(jnp.float32)}

        def example(prompts):
            batch = inner.example(prompts)
            logits = jax.eval_shape(lambda params, rows: score(ctx.graphdef, params, rows, full_logits=True)["logits_btv"],
                                    template, batch)  # [B, T, V]: the teacher shares the student's vocabulary
            return batch.replace(aux={**batch.aux, "teacher_logits_btv": jax.ShapeDtypeStruct(logits.shape, jnp.float32)})

        return inner._replace(collect=collect, example=example, needs=inner.needs | reads_reference(teacher))

    return wrap

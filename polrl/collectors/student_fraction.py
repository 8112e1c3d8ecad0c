"""GKD's student-data fraction λ: each step's rows are the student's own samples with probability
λ, else a frozen teacher's samples of the same prompts.

GKD (arXiv 2306.13649, its Algorithm 1) draws u ~ U(0, 1) at every step and trains on outputs the
student generates when u ≤ λ, on a fixed source of output sequences otherwise; λ = 1 is on-policy
distillation, λ = 0 supervised KD. Here the other source is the teacher's samples of the step's
prompts (``group_samples(policy=teacher)``, ``source_b`` = TEACHER); the student's rows are the
inner collector's (``source_b`` = ON_POLICY). With λ ∈ (0, 1) both programs are compiled and
``lax.cond`` runs one of them per step; λ = 1 returns the inner collector unchanged and λ = 0
never samples the student.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl.collectors.context import Context, check_named_model
from polrl.collectors.group_samples import group_samples, rollout_metrics
from polrl.core import ON_POLICY, Collector


def with_student_fraction(teacher: str = "teacher", fraction: float = 1.0):
    """``(collector, context) -> collector``: the inner collector's rows (the student's samples)
    with probability ``fraction``, else the frozen ``teacher``'s samples of the step's prompts
    (G = the run's group size), one coin per step from the step's key. The inner collector must
    be ``group_samples``-shaped (one group of G rows per prompt, a device reward).

    Metrics: the rows' ``rollout_metrics`` (the teacher's rows as ``teacher_accuracy`` …) and
    ``student_rows`` (1 when the step trained on the student's samples)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"gkd: student_fraction={fraction} must be in [0, 1] (1: only the student's samples, "
                         f"0: only the teacher's)")

    def wrap(inner: Collector, ctx: Context) -> Collector:
        if fraction == 1.0:
            return inner
        if inner.host:
            raise ValueError("with_student_fraction: the inner collector runs on the host; use a device collector "
                             "(group_samples on a task with a device reward)")
        check_named_model(ctx, teacher, "gkd: teacher", value_head=False)
        teacher_rows = group_samples(ctx, policy=teacher)
        student_example = inner.example(1)
        student_example = student_example.replace(source_b=jax.ShapeDtypeStruct((student_example.batch_size,), jnp.int32))
        if jax.tree.structure(student_example) != jax.tree.structure(teacher_rows.example(1)) or (
                jax.tree.leaves(student_example) != jax.tree.leaves(teacher_rows.example(1))):
            raise ValueError("gkd: student_fraction < 1 needs the phase's collector to be group_samples (the student's "
                             "rows shaped like the teacher's samples: one group of the run's group size per prompt)")

        def collect(cstate, state, data, rng):
            coin_rng, rng = jax.random.split(rng)
            from_teacher = lambda cs: (teacher_rows.collect((), state, data, rng)[0], cs)
            if fraction == 0.0:
                batch, cstate = from_teacher(cstate)
                return batch, cstate, {**rollout_metrics(batch), "student_rows": jnp.zeros((), jnp.float32)}

            def from_student(cs):
                batch, cs, _ = inner.collect(cs, state, data, rng)
                return batch.replace(source_b=jnp.full((batch.batch_size,), ON_POLICY, jnp.int32)), cs

            use_student = jax.random.uniform(coin_rng) < fraction
            batch, cstate = jax.lax.cond(use_student, from_student, from_teacher, cstate)
            return batch, cstate, {**rollout_metrics(batch), "student_rows": use_student.astype(jnp.float32)}

        def example(prompts):
            return teacher_rows.example(prompts)

        return inner._replace(collect=collect, example=example)

    return wrap

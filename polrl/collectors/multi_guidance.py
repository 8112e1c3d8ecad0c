"""AMPO's adaptive multi-guidance: the groups the policy cannot solve get rows from a pool of
frozen teachers, the ones the policy understands best.

AMPO ("More Than One Teacher: Adaptive Multi-Guidance Policy Optimization for Diverse
Exploration", arXiv 2510.02227) samples n answers per prompt from the policy and, only for a prompt
whose n answers are all wrong (adaptive injection), replaces up to k of them (k = 2) by whole
teacher solutions (prefix ratio 1). The teachers are ranked by how well the policy "comprehends"
their reasoning: for teacher m's solution y_m = r_m ⊕ marker ⊕ f_m (reasoning, answer marker,
final answer),

    c_m = (1/|f*|) Σ_{t ∈ f*} π_θ(f*_t | x, r_m, marker, f*_<t),

the mean probability that the current policy π_θ (at the rollout temperature) gives the tokens of
the prompt's labelled final answer f* after the teacher's reasoning — the reasoning is kept, the
teacher's own final answer is replaced by the label's, as the reference code's "prob" reward
(``mean_exp_log_softmax``) does. The top-k teachers by c_m are injected; ties keep the pool's
order. With the chain task f* is the labelled answer's tokens after its last "#" (the final total,
without EOS) and r_m is the teacher's response before its last "#" (all of it, EOS excluded, when
it has none); a task without an answer marker (``Task.answer_marker`` None) has no reasoning part:
f* is the whole labelled answer (EOS excluded) and c_m is the same for every teacher.

A group is unsolved when none of its rows has a positive reward (``hints.unsolved_groups``). The
injected rows take min(k, G, #eligible) of its rows; their reward is max(r_m, 1) (the reference
code sets an injected solution's reward to 1 when its verifier score is below 1). Solved groups
are left bit-identical. ``wrong_teachers`` decides which solutions are eligible: "drop" (default)
ranks only the teachers whose solution is right (r_m ≥ 1), so fewer than k rows, or none, may be
injected; "force" ranks every teacher and injects wrong solutions with reward 1, as the reference
code does. Every teacher samples every prompt (fixed shapes inside the compiled step), and the
comprehension scores are one scoring forward of the policy on the P·M rewritten solutions.

INFERRED: (1) the reference code injects solutions from a data set of teacher answers collected
beforehand (mostly right); here each teacher (a frozen model of ``config.models``, sampling at the
rollout temperature) answers every prompt at every step, and wrong samples are common, so forcing
their reward to 1 would reward wrong answers: "drop" is polrl's default. (2) The injected rows
are the group's first rows in rank order (the reference code picks random rows of the group;
the group's samples are exchangeable, so the distribution of the batch is the same). (3) A teacher
response without a marker keeps all its tokens as reasoning and gets the marker before f* (the
reference code appends the answer tags to a malformed response likewise, after truncating it).

Rows: the inner collector's P groups of G rows; injected rows carry the teacher's sample,
``mask_bt`` and log-probs (``behavior_logp_bt``), ``source_b = TEACHER``, ``version_b = 0`` (as
``group_samples(policy=teacher)``), ``group_b`` of their group, and zeros in the inner rows'
``aux`` fields; every other row keeps the inner collector's fields, with ``source_b`` ON_POLICY and
``version_b`` the step where the inner rows had none.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from polrl.collectors.context import (Context, check_named_model, check_one_group_per_prompt, reads_reference,
                                      substitute_rows)
from polrl.collectors.group_samples import group_samples, rollout_metrics
from polrl.collectors.hints import unsolved_groups
from polrl.core import ON_POLICY, TEACHER, Batch, Collector
from polrl.train.steps import score

WRONG_TEACHERS = ("drop", "force")


def before_eos(tokens_bt: jax.Array, valid_bt: jax.Array, eos_id: int) -> jax.Array:
    """bool [B, T]: the valid tokens before each row's first valid EOS."""
    eos_bt = valid_bt & (tokens_bt == eos_id)
    return valid_bt & (jnp.cumsum(eos_bt, axis=1) == 0)


def last_marker(keep_bt: jax.Array, tokens_bt: jax.Array, marker_id: int) -> tuple[jax.Array, jax.Array]:
    """(position, present) [B]: the last ``marker_id`` among the ``keep_bt`` tokens of each row."""
    marks = keep_bt & (tokens_bt == marker_id)
    return tokens_bt.shape[1] - 1 - jnp.argmax(marks[:, ::-1], axis=1), marks.any(axis=1)


def final_answers(answer_ba, answer_valid_ba, marker_id: int | None, eos_id: int):
    """(f_ba, f_valid_ba): the labelled final answers f*, left-aligned in A columns: the tokens
    after the label's last marker and before its EOS (the whole label before EOS without a
    marker, or when ``marker_id`` is None)."""
    keep = before_eos(answer_ba, answer_valid_ba.astype(bool), eos_id)
    start = jnp.zeros(answer_ba.shape[:1], jnp.int32)
    if marker_id is not None:
        pos, present = last_marker(keep, answer_ba, marker_id)
        start = jnp.where(present, pos + 1, 0)
    width = answer_ba.shape[1]
    idx = start[:, None] + jnp.arange(width)
    safe = jnp.minimum(idx, width - 1)
    return jnp.take_along_axis(answer_ba, safe, axis=1), jnp.take_along_axis(keep, safe, axis=1) & (idx < width)


def comprehension_rows(response_bt, mask_bt, f_ba, f_valid_ba, marker_id: int | None, eos_id: int, pad_id: int):
    """(tokens, scored) [B, T + A]: each teacher response's reasoning r (the tokens before its last
    marker before EOS; all its tokens before EOS when it has no marker; nothing when ``marker_id``
    is None), then the marker, then the row's labelled final answer f*; ``scored`` marks f*."""
    t, a = response_bt.shape[1], f_ba.shape[1]
    keep = before_eos(response_bt, mask_bt.astype(bool), eos_id)
    if marker_id is None:
        r_len, start = jnp.zeros(response_bt.shape[:1], jnp.int32), jnp.zeros(response_bt.shape[:1], jnp.int32)
    else:
        pos, present = last_marker(keep, response_bt, marker_id)
        r_len = jnp.where(present, pos, keep.sum(axis=1)).astype(jnp.int32)
        start = r_len + 1
    col = jnp.arange(t + a)[None, :]
    wide = jnp.pad(response_bt, ((0, 0), (0, a)), constant_values=pad_id)
    f_idx = jnp.clip(col - start[:, None], 0, a - 1)
    scored = (col >= start[:, None]) & jnp.take_along_axis(f_valid_ba, f_idx, axis=1) & (col - start[:, None] < a)
    tokens = jnp.where(col < r_len[:, None], wide, pad_id)
    if marker_id is not None:
        tokens = jnp.where(col == r_len[:, None], marker_id, tokens)
    return jnp.where(scored, jnp.take_along_axis(f_ba, f_idx, axis=1), tokens), scored


def comprehension_scores(graphdef, params, prompt_bp, prompt_valid_bp, tokens_bt, scored_bt, group_size: int,
                         temperature: float) -> jax.Array:
    """float32 [B]: mean over the ``scored_bt`` tokens of π_θ(token | prompt, tokens before it)
    (one scoring forward; 0 for a row without scored tokens)."""
    rows = Batch(prompt_bp=prompt_bp, prompt_valid_bp=prompt_valid_bp, response_bt=tokens_bt,
                 mask_bt=scored_bt.astype(jnp.float32), group_size=group_size)
    p_bt = jnp.exp(jax.lax.stop_gradient(score(graphdef, params, rows, temperature=temperature)["logp_bt"]))
    w = scored_bt.astype(p_bt.dtype)
    return ((p_bt * w).sum(axis=1) / jnp.maximum(w.sum(axis=1), 1.0)).astype(jnp.float32)


def select_teachers(comprehension_pm, reward_pm, unsolved_p, k: int, group_size: int, wrong_teachers: str):
    """(teacher_pg, injected_pg): for each group's G rows, the pool index of the teacher whose
    solution takes the row's place and whether it does. The eligible teachers of a group (every
    one with ``wrong_teachers="force"``, the right ones, reward ≥ 1, with "drop") are ranked by
    comprehension, highest first, ties in pool order; an unsolved group's first
    min(k, G, #eligible) rows take the top-ranked ones in rank order; other rows none."""
    m = comprehension_pm.shape[1]
    eligible = jnp.ones_like(reward_pm, bool) if wrong_teachers == "force" else reward_pm >= 1.0
    order = jnp.argsort(jnp.where(eligible, -comprehension_pm, jnp.inf), axis=1, stable=True)
    count = jnp.where(unsolved_p, jnp.minimum(eligible.sum(axis=1), min(k, group_size)), 0)
    slot = jnp.arange(group_size)
    teacher_pg = jnp.take_along_axis(order, jnp.broadcast_to(jnp.minimum(slot, m - 1), (order.shape[0], group_size)), axis=1)
    return teacher_pg, slot[None, :] < count[:, None]


def own_sources(batch: Batch, step) -> Batch:
    """The inner collector's rows with ``source_b`` ON_POLICY and ``version_b`` = ``step`` where
    they had none."""
    full = lambda value: jnp.full((batch.batch_size,), value, jnp.int32)
    return batch.replace(source_b=full(ON_POLICY) if batch.source_b is None else batch.source_b,
                         version_b=full(step) if batch.version_b is None else batch.version_b)


def inject(batch: Batch, teacher_rows: Batch, teacher_pg, injected_pg, num_teachers: int) -> Batch:
    """``batch`` (P groups of G rows, ``source_b`` / ``version_b`` set) with the rows ``injected_pg``
    taken from ``teacher_rows`` (P·M rows, prompt-major: row p·M + m is teacher m's answer to p):
    their response, mask, log-probs, reward max(r, 1), ``source_b`` TEACHER, version 0, aux 0."""
    p, g = injected_pg.shape
    rows_b = (jnp.arange(p)[:, None] * num_teachers + teacher_pg).reshape(-1)
    return substitute_rows(batch, injected_pg.reshape(-1), response_bt=teacher_rows.response_bt[rows_b],
                           mask_bt=teacher_rows.mask_bt[rows_b], behavior_logp_bt=teacher_rows.behavior_logp_bt[rows_b],
                           reward_b=jnp.maximum(teacher_rows.reward_b, 1.0)[rows_b], source=TEACHER, version=0)


def guidance_metrics(batch: Batch, names: Sequence[str], unsolved_p, injected_pg, teacher_pg, reward_pm,
                     comprehension_pm) -> dict:
    """``guidance/unsolved_frac`` (groups without a positive reward, before injection),
    ``guidance/injected_frac`` (groups with a teacher row), ``guidance/teacher_rows_frac`` (rows),
    per teacher ``guidance/{name}_accuracy`` (its samples right, every prompt),
    ``guidance/{name}_comprehension`` (its mean c_m) and ``guidance/{name}_share`` (of the
    injected rows; 0 without any), and the injected rows' ``teacher_reward_mean`` /
    ``teacher_accuracy`` (``rollout_metrics``, of their rewards: a forced wrong answer counts as
    right there, not in ``guidance/{name}_accuracy``)."""
    rows = injected_pg.astype(jnp.float32)
    out = {"guidance/unsolved_frac": unsolved_p.astype(jnp.float32).mean(),
           "guidance/injected_frac": injected_pg.any(axis=1).astype(jnp.float32).mean(),
           "guidance/teacher_rows_frac": rows.mean()}
    for m, name in enumerate(names):
        out[f"guidance/{name}_accuracy"] = (reward_pm[:, m] >= 1.0).astype(jnp.float32).mean()
        out[f"guidance/{name}_comprehension"] = comprehension_pm[:, m].mean()
        out[f"guidance/{name}_share"] = (rows * (teacher_pg == m)).sum() / jnp.maximum(rows.sum(), 1.0)
    teacher = {key: v for key, v in rollout_metrics(batch).items() if key.startswith("teacher_")}
    return {**out, **teacher}


def with_multi_guidance(teachers: Sequence[str], k: int = 2, wrong_teachers: str = "drop"):
    """``(collector, context) -> collector``: AMPO's adaptive multi-guidance (module docstring)
    around an inner collector that returns one group per prompt from the device (``group_samples``).
    ``teachers``: the pool, names of frozen models of the run (``config.models``) that share the
    policy's tokenizer; each samples one answer per prompt with ``fold_in(rng, 1 + m)``. ``k``:
    the most teacher rows per unsolved group (AMPO's ``num_off_policy_targets`` = 2).
    ``wrong_teachers``: "drop" or "force" (module docstring).

    Metrics: the inner collector's (``accuracy`` is the policy's own on every prompt of the step)
    and ``guidance_metrics``'s.
    """
    names = tuple(teachers)
    if not names or len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"with_multi_guidance: teachers={teachers!r} must be distinct names of frozen models of the "
                         f"run (config.models), e.g. ('large', 'small')")
    if k < 1:
        raise ValueError(f"with_multi_guidance: k={k} must be >= 1 (the most teacher rows per unsolved group; AMPO's 2)")
    if wrong_teachers not in WRONG_TEACHERS:
        raise ValueError(f"with_multi_guidance: wrong_teachers={wrong_teachers!r}; use one of {WRONG_TEACHERS}")

    def wrap(inner: Collector, ctx: Context) -> Collector:
        if inner.host:
            raise ValueError("with_multi_guidance: the inner collector runs on the host; teachers are sampled inside "
                             "the compiled step: wrap a device collector (e.g. group_samples)")
        for name in names:
            check_named_model(ctx, name, "ampo: teachers", value_head=False)
        samplers = [group_samples(ctx, group_size=1, policy=name) for name in names]
        task, sampling, m = ctx.task, ctx.sampling, len(names)
        marker_id = None if task.answer_marker is None else task.tokenizer.encode(task.answer_marker)[0]

        def check(state, data, batch) -> None:
            p = data["prompt_bp"].shape[0]
            check_one_group_per_prompt(batch, p, "with_multi_guidance")
            if batch.prompt_bp.shape[1] != data["prompt_bp"].shape[1]:
                raise ValueError("with_multi_guidance: the inner collector's rows have other prompts than the step's; "
                                 "wrap a collector whose rows answer the step's prompts (e.g. group_samples)")
            longest = data["prompt_bp"].shape[1] + sampling.max_new_tokens + data["answer_ba"].shape[1]
            max_len = nnx.merge(ctx.graphdef, state.params).max_len
            if longest > max_len:
                raise ValueError(f"with_multi_guidance: scoring a teacher's reasoning with the labelled answer needs "
                                 f"{longest} positions (prompt, rollout.max_new_tokens and the answer), more than "
                                 f"model.max_len={max_len}; raise model.max_len to {longest}")

        def collect(cstate, state, data, rng):
            batch, cstate, metrics = inner.collect(cstate, state, data, rng)
            check(state, data, batch)
            p, g = data["prompt_bp"].shape[0], batch.group_size
            batch = own_sources(batch, state.step)
            drawn = [s.collect((), state, data, jax.random.fold_in(rng, 1 + i))[0] for i, s in enumerate(samplers)]
            teacher_rows = jax.tree.map(lambda *xs: jnp.stack(xs, axis=1).reshape((p * m,) + xs[0].shape[1:]), *drawn)
            teacher_rows = teacher_rows.replace(group_size=m)
            f_ba, f_valid = final_answers(data["answer_ba"], data["answer_valid_ba"], marker_id, sampling.eos_id)
            tokens, scored = comprehension_rows(teacher_rows.response_bt, teacher_rows.mask_bt, jnp.repeat(f_ba, m, axis=0),
                                                jnp.repeat(f_valid, m, axis=0), marker_id, sampling.eos_id, ctx.pad_id)
            comprehension = comprehension_scores(ctx.graphdef, state.params, teacher_rows.prompt_bp,
                                                 teacher_rows.prompt_valid_bp, tokens, scored, m,
                                                 sampling.temperature).reshape(p, m)
            reward_pm = teacher_rows.reward_b.reshape(p, m)
            unsolved = unsolved_groups(batch.reward_b, g)
            teacher_pg, injected_pg = select_teachers(comprehension, reward_pm, unsolved, k, g, wrong_teachers)
            batch = inject(batch, teacher_rows, teacher_pg, injected_pg, m)
            return batch, cstate, {**metrics, **guidance_metrics(batch, names, unsolved, injected_pg, teacher_pg,
                                                                 reward_pm, comprehension)}

        def example(prompts):
            ex = inner.example(prompts)
            per_row = jax.ShapeDtypeStruct((ex.batch_size,), jnp.int32)
            return ex.replace(source_b=per_row, version_b=per_row)

        return inner._replace(collect=collect, example=example, needs=inner.needs | reads_reference(*names))

    return wrap

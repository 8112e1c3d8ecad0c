"""SOPHIA's semi-off-policy rows: a frozen teacher writes the reasoning, the policy continues it
with its own answers, and the reasoning is credited with the outcomes of the answers built on it.

SOPHIA ("Semi-off-Policy Reinforcement Learning for Vision-Language Slow-thinking Reasoning",
arXiv 2507.16814) builds a semi-off-policy behaviour model out of two pieces: the trainable
vision-language policy writes its own part (a description of the image, on-policy) and a language
model writes the slow-thinking reasoning from it (off-policy). The outcome of each reasoning is
verified, and the policy's part is rewarded with the outcomes it led to, propagated backward;
here, with N reasonings built on one description c,

    R(c) = (1/N) Σ_n R(y_n)                          (the mean outcome of the reasonings on c;
                                                      INFERRED: the mean as the propagation's form).

The policy is then trained on the whole (c, y) rows by off-policy RL, the teacher's tokens
weighted by an importance ratio to the model that wrote them (``polrl.algorithms.sophia``).

Text-only translation. INFERRED: a text task has no image to describe; what the policy lacks is
the teacher's reasoning, so the two pieces are swapped in order and the propagation kept as the
paper's structure: for each prompt x the teacher writes K reasonings r_k (its sample, up to and
including its last answer marker before EOS: the chain task's scratchpad and "#"; all of its
tokens before EOS when it writes no marker), the policy writes N continuations a_kn after x ⊕ r_k
(its own final answers, on-policy, ``task.max_answer_len`` tokens of budget), the verifier scores
each row r_k ⊕ a_kn, and the piece shared by N rows is credited with their mean:

    R(a_kn) = verifier(x, r_k ⊕ a_kn),     R(r_k) = (1/N) Σ_n R(a_kn).

Rows: the inner collector's P groups of G rows with K·N rows appended to each group (groups of
G + K·N, the semi-off-policy rows last, reasoning k's N rows together), every response
right-padded to T + A columns (T = ``rollout.max_new_tokens``, A = ``task.max_answer_len``).
A semi-off-policy row is r_k ⊕ a_kn: ``behavior_logp_bt`` the teacher's sampling log-probs on
r_k and the policy's on a_kn, ``reward_b`` = R(a_kn), ``source_b = TEACHER`` (it is not the
policy's unaided sample: left out of the policy's accuracy, reported as ``teacher_accuracy``),
``version_b = 0``, ``aux["borrowed_bt"]`` 1 on the teacher's tokens, ``aux["reasoning_reward_b"]``
= R(r_k). The inner rows keep their fields (``source_b`` ON_POLICY and ``version_b`` the step
where they had none), 0 in both aux fields and in the new columns.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from polrl.collectors.context import Context, check_named_model, check_one_group_per_prompt, named_model
from polrl.collectors.group_samples import device_reward, rollout_metrics
from polrl.collectors.hints import hinted_prompts
from polrl.collectors.multi_guidance import before_eos, last_marker, own_sources
from polrl.core import TEACHER, Batch, Collector
from polrl.rollout import sample

BORROWED = "borrowed_bt"
REASONING_REWARD = "reasoning_reward_b"


def reasoning_mask(response_bt: jax.Array, mask_bt: jax.Array, marker_id: int, eos_id: int) -> jax.Array:
    """bool [B, T]: each teacher sample's reasoning, a prefix of its tokens: those up to and
    including its last marker before EOS; all its tokens before EOS when it has no marker."""
    keep = before_eos(response_bt, mask_bt.astype(bool), eos_id)
    pos, present = last_marker(keep, response_bt, marker_id)
    return keep & (~present[:, None] | (jnp.arange(response_bt.shape[1]) <= pos[:, None]))


def joined_rows(reasoning_bt, reasoning_mask_bt, reasoning_logp_bt, answer_bt, answer_mask_bt, answer_logp_bt, pad_id: int):
    """(tokens, mask, logp, borrowed) [B, T + A]: each row's reasoning (a prefix of its T columns)
    followed directly by its continuation (A columns), pad / 0 after."""
    t, a = reasoning_bt.shape[1], answer_bt.shape[1]
    length = reasoning_mask_bt.sum(axis=1, dtype=jnp.int32)
    col = jnp.arange(t + a)[None, :]
    borrowed = col < length[:, None]
    rel = col - length[:, None]
    in_answer = (rel >= 0) & (rel < a)
    idx_r, idx_a = jnp.minimum(col, t - 1), jnp.clip(rel, 0, a - 1)
    take = lambda r, x: jnp.where(borrowed, jnp.take_along_axis(r, jnp.broadcast_to(idx_r, borrowed.shape), axis=1),
                                  jnp.where(in_answer, jnp.take_along_axis(x, idx_a, axis=1), 0))
    mask = take(reasoning_mask_bt.astype(jnp.float32), answer_mask_bt.astype(jnp.float32))
    tokens = jnp.where(mask > 0, take(reasoning_bt, answer_bt), pad_id)
    return tokens, mask, take(reasoning_logp_bt, answer_logp_bt) * mask, borrowed.astype(jnp.float32) * mask


def propagated_rewards(reward_b: jax.Array, continuations: int) -> jax.Array:
    """float32 [B]: R(r_k) = the mean of the N = ``continuations`` consecutive rows' rewards that
    share reasoning k, repeated on each of them."""
    return jnp.repeat(reward_b.reshape(-1, continuations).mean(axis=1), continuations)


def widen(batch: Batch, columns: int, pad_id: int) -> Batch:
    """``batch`` with ``columns`` more response columns: pad tokens, mask 0, per-token fields 0."""
    pad = lambda x, value=0: jnp.pad(x, ((0, 0), (0, columns)), constant_values=value)
    return batch.replace(
        response_bt=pad(batch.response_bt, pad_id), mask_bt=pad(batch.mask_bt),
        behavior_logp_bt=pad(batch.behavior_logp_bt),
        aux={name: pad(x) if name.endswith("_bt") else x for name, x in batch.aux.items()})


def append_groups(own: Batch, semi: Batch, prompts: int) -> Batch:
    """[P·G] and [P·M] rows (same fields and widths) → [P·(G + M)] rows, each prompt's G rows then its M."""
    g, m = own.batch_size // prompts, semi.batch_size // prompts

    def cat(x, y):
        return jnp.concatenate([x.reshape(prompts, g, *x.shape[1:]), y.reshape(prompts, m, *y.shape[1:]).astype(x.dtype)],
                               axis=1).reshape(-1, *x.shape[1:])

    joined = jax.tree.map(cat, own.replace(group_b=None), semi.replace(group_b=None, group_size=own.group_size))
    return joined.replace(group_b=jnp.arange(prompts * (g + m), dtype=jnp.int32) // (g + m), group_size=g + m)


def with_borrowed_reasoning(teacher: str, reasonings: int = 2, continuations: int = 2):
    """``(collector, context) -> collector``: SOPHIA's semi-off-policy rows (module docstring)
    appended to each group of an inner collector that returns one group per prompt from the
    device (``group_samples``). ``teacher``: the name of a frozen model of the run
    (``config.models``, sharing the policy's tokenizer) that writes K = ``reasonings`` per prompt
    (key ``fold_in(rng, 1)``); the policy writes N = ``continuations`` answers after each
    (``fold_in(rng, 2)``). The task needs an answer marker (``Task.answer_marker``) and a device
    reward.

    Metrics: the inner collector's (``accuracy`` is the policy's own on every prompt of the step),
    ``teacher_accuracy`` (of the semi-off-policy rows, ``rollout_metrics``),
    ``sophia/reasoning_reward_mean`` (R(r_k), mean over the reasonings), ``sophia/borrowed_tokens``
    (mean reasoning length) and ``sophia/no_marker_frac`` (reasonings without a marker).
    """
    if not isinstance(teacher, str) or not teacher:
        raise ValueError(f"with_borrowed_reasoning: teacher={teacher!r} must be the name of a frozen model of the run "
                         f"(config.models), e.g. 'large'")
    if reasonings < 1 or continuations < 1:
        raise ValueError(f"with_borrowed_reasoning: reasonings={reasonings} and continuations={continuations} must be "
                         f">= 1 (the teacher's reasonings per prompt and the policy's answers per reasoning)")
    k, n = reasonings, continuations

    def wrap(inner: Collector, ctx: Context) -> Collector:
        if inner.host:
            raise ValueError("with_borrowed_reasoning: the inner collector runs on the host; the teacher and the "
                             "policy's continuations are sampled inside the compiled step: wrap a device collector "
                             "(e.g. group_samples)")
        check_named_model(ctx, teacher, "sophia: teacher", value_head=False)
        task, sampling, pad_id = ctx.task, ctx.sampling, ctx.pad_id
        if task.answer_marker is None or task.device_reward is None:
            raise ValueError(f"with_borrowed_reasoning: task {task.name!r} needs an answer marker (Task.answer_marker, "
                             f"where the reasoning ends) and a device reward; use a task such as 'chain'")
        marker_id = task.tokenizer.encode(task.answer_marker)[0]
        answer_sampling = dataclasses.replace(sampling, max_new_tokens=task.max_answer_len)
        width = sampling.max_new_tokens + task.max_answer_len

        def check(state, data, batch) -> None:
            check_one_group_per_prompt(batch, data["prompt_bp"].shape[0], "with_borrowed_reasoning")
            longest = data["prompt_bp"].shape[1] + width
            max_len = nnx.merge(ctx.graphdef, state.params).max_len
            if longest > max_len:
                raise ValueError(f"with_borrowed_reasoning: the policy's answer after the teacher's reasoning needs "
                                 f"{longest} positions (prompt, rollout.max_new_tokens and task.max_answer_len), more "
                                 f"than model.max_len={max_len}; raise model.max_len to {longest}")

        def semi_rows(state, data, rng) -> tuple[jax.Array, Batch]:
            """(no_marker [P·K], rows [P·K·N]): the teacher's reasonings, the policy's answers after them."""
            graphdef, params = named_model(ctx, state, teacher, "with_borrowed_reasoning")
            drawn = sample(graphdef, params, data["prompt_bp"], data["prompt_valid_bp"], jax.random.fold_in(rng, 1),
                           sampling, k)
            kept = reasoning_mask(drawn.response_bt, drawn.mask_bt, marker_id, sampling.eos_id)
            prompt_k = jnp.repeat(data["prompt_bp"], k, axis=0)
            valid_k = jnp.repeat(data["prompt_valid_bp"], k, axis=0)
            prompt, valid = hinted_prompts(prompt_k, valid_k, jnp.where(kept, drawn.response_bt, pad_id),
                                           kept.sum(axis=1, dtype=jnp.int32), sampling.max_new_tokens, pad_id)
            answers = sample(ctx.graphdef, state.params, prompt, valid, jax.random.fold_in(rng, 2), answer_sampling, n)
            rep = lambda x: jnp.repeat(x, n, axis=0)
            tokens, mask, logp, borrowed = joined_rows(rep(drawn.response_bt), rep(kept), rep(drawn.logp_bt.astype(jnp.float32)),
                                                       answers.response_bt, answers.mask_bt,
                                                       answers.logp_bt.astype(jnp.float32), pad_id)
            rows = k * n
            reward = device_reward(ctx, tokens, mask, jnp.repeat(data["answer_ba"], rows, axis=0),
                                   jnp.repeat(data["answer_valid_ba"], rows, axis=0))
            full = lambda value: jnp.full((reward.shape[0],), value, jnp.int32)
            no_marker = ~(kept & (drawn.response_bt == marker_id)).any(axis=1)
            return no_marker, Batch(prompt_bp=jnp.repeat(data["prompt_bp"], rows, axis=0),
                         prompt_valid_bp=jnp.repeat(data["prompt_valid_bp"], rows, axis=0),
                         response_bt=tokens, mask_bt=mask, reward_b=reward, behavior_logp_bt=logp,
                         source_b=full(TEACHER), version_b=full(0),
                         aux={BORROWED: borrowed, REASONING_REWARD: propagated_rewards(reward, n)}, group_size=k * n)

        def collect(cstate, state, data, rng):
            batch, cstate, metrics = inner.collect(cstate, state, data, rng)
            check(state, data, batch)
            p = data["prompt_bp"].shape[0]
            own = widen(own_sources(batch, state.step), task.max_answer_len, pad_id)
            no_marker, semi = semi_rows(state, data, rng)
            own = own.replace(aux={**own.aux, BORROWED: jnp.zeros_like(own.mask_bt),
                                   REASONING_REWARD: jnp.zeros((own.batch_size,), jnp.float32)})
            semi = semi.replace(aux={**{name: jnp.zeros((semi.batch_size,) + x.shape[1:], x.dtype)
                                        for name, x in own.aux.items()}, **semi.aux})
            mixed = append_groups(own, semi, p)
            borrowed_len = semi.aux[BORROWED].sum(axis=1)[::n]
            teacher = {key: v for key, v in rollout_metrics(mixed).items() if key.startswith("teacher_")}
            return mixed, cstate, {
                **metrics, **teacher,
                "sophia/reasoning_reward_mean": semi.aux[REASONING_REWARD][::n].mean(),
                "sophia/borrowed_tokens": borrowed_len.mean(),
                "sophia/no_marker_frac": no_marker.astype(jnp.float32).mean()}

        def example(prompts):
            ex = inner.example(prompts)
            rows = prompts * (ex.group_size + k * n)
            per = lambda *shape, dtype: jax.ShapeDtypeStruct((rows, *shape), dtype)
            bt = lambda dtype: per(ex.response_bt.shape[1] + task.max_answer_len, dtype=dtype)
            aux = {name: bt(x.dtype) if name.endswith("_bt") else per(*x.shape[1:], dtype=x.dtype)
                   for name, x in ex.aux.items()}
            return ex.replace(prompt_bp=per(ex.prompt_bp.shape[1], dtype=jnp.int32),
                              prompt_valid_bp=per(ex.prompt_bp.shape[1], dtype=jnp.bool_),
                              response_bt=bt(jnp.int32), mask_bt=bt(jnp.float32), reward_b=per(dtype=jnp.float32),
                              group_b=per(dtype=jnp.int32), behavior_logp_bt=bt(jnp.float32),
                              source_b=per(dtype=jnp.int32), version_b=per(dtype=jnp.int32),
                              aux={**aux, BORROWED: bt(jnp.float32), REASONING_REWARD: per(dtype=jnp.float32)},
                              group_size=ex.group_size + k * n)

        return inner._replace(collect=collect, example=example)

    return wrap

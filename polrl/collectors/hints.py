"""GHPO's hints: every prompt whose G samples all fail is sampled again with the beginning of its
labelled solution after it, a larger share at each stage, until one sample succeeds.

GHPO ("GHPO: Adaptive Guidance for Stable and Efficient LLM Reinforcement Learning", Liu et al.
2025, arXiv 2507.10628; the authors' reference code ``hkgc-1/GHPO``, ``ghpo_trainer.py``) keeps
GRPO's loss and changes its data. A prompt k whose group of G samples earns no reward,

    unsolved_k  =  max_j r_kj ≤ 0                     (the paper's difficulty detection),

gets its G samples drawn again from the hinted prompt

    x_k ⊕ h_k(ω),    h_k(ω) = a*_k[: round(ω · |a*_k|)],

a*_k the prompt's labelled answer without its EOS, |a*_k| its tokens, round half to even (as
Python's ``round``, the reference code's). The shares ω_1 < … < ω_S (``hint_ratios``, the
reference code's 0.25, 0.5, 0.75) are stages within one step: stage s draws again the groups that
are still unsolved after stage s − 1, with the hint of share ω_s, and their new rows replace the
group's. Groups the policy solves are left as they were sampled. The GRPO loss is then computed on
every group alike; the hint is part of the row's prompt, so its tokens get no gradient, and the
update scores the hinted rows under the prompt they were sampled with (their ratio to the
sampler's log-probs is on-policy).

With the character tokenizer a token is a character, so the hint is the reference code's
``solution[:round(len(solution) * ω)]``. INFERRED: the reference code quotes the hint inside the
question after an instruction ("the following text is the beginning part of the answer …") and
the model writes its whole answer; a model without instructions reads the prefix of its own
answer, so here the hint is appended to the prompt where the answer starts, the policy continues
it, and the response (the continuation) is what the task's reward reads. Two details of the
reference code are not carried: when no group is unsolved it re-draws one group without a hint (a
synchronisation device between processes; here a stage with no unsolved group is skipped), and
its later stages rebuild the prompts of groups solved at an earlier stage without their hint
(here every row keeps the prompt it was sampled with).

Rows: the inner collector's P groups of G rows, every prompt left-padded to P_w + H columns (P_w
the inner prompt width, H = round(ω_S · A) for answers of A tokens, the longest hint), the hinted
groups' rows replaced in place. Unhinted rows keep their sample, reward, log-probs and version,
with ``source_b`` = ON_POLICY where the inner rows had none; hinted rows have ``source_b =
GUIDED`` (the policy's samples under guidance the evaluation never gives: left out of the
policy's accuracy, staleness and ratio statistics, reported apart) and the inner collector's
version (the policy's step); ``aux["hint_ratio_b"]`` is ω of a row's hint, 0 without one. Every
hinted pass samples all P prompts (fixed shapes inside the compiled step) and keeps the unsolved
groups' rows; a stage with no unsolved group is skipped (``lax.cond``).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from polrl.collectors.context import Context, check_one_group_per_prompt
from polrl.collectors.group_samples import group_samples, rollout_metrics
from polrl.core import GUIDED, ON_POLICY, Batch, Collector

HINT_RATIO = "hint_ratio_b"
DEFAULT_RATIOS = (0.25, 0.5, 0.75)


def hint_lengths(answer_len_b: jax.Array, ratio: float, answer_width: int) -> jax.Array:
    """int32 [P]: round(ω · |a*|) for answers of ``answer_len_b`` tokens (≤ ``answer_width``), read
    from a table made with Python's ``round`` (half to even), so no float32 product decides a tie."""
    table = jnp.asarray([round(ratio * n) for n in range(answer_width + 1)], jnp.int32)
    return table[answer_len_b]


def hint_width(ratios: Sequence[float], answer_width: int) -> int:
    """H: the longest hint, round(ω_S · A) for answers of at most A tokens."""
    return round(max(ratios) * answer_width)


def answer_lengths(answer_ba: jax.Array, answer_valid_ba: jax.Array, eos_id: int) -> jax.Array:
    """int32 [P]: |a*|, the labelled answer's valid tokens other than EOS."""
    return (answer_valid_ba & (answer_ba != eos_id)).sum(axis=1, dtype=jnp.int32)


def hinted_prompts(prompt_bp, prompt_valid_bp, answer_ba, hint_len_b, width: int, pad_id: int):
    """(tokens, valid) [P, P_w + width]: each prompt's valid tokens followed by the first
    ``hint_len_b`` tokens of its answer, left-padded (the valid tokens moved to the right end in
    their order, ``pad_id`` before them)."""
    hint_valid = jnp.arange(width) < hint_len_b[:, None]
    tokens = jnp.concatenate([prompt_bp, answer_ba[:, :width].astype(prompt_bp.dtype)], axis=1)
    valid = jnp.concatenate([prompt_valid_bp, hint_valid], axis=1)
    order = jnp.argsort(valid.astype(jnp.int32), axis=1, stable=True)  # invalid columns first, order kept
    tokens, valid = jnp.take_along_axis(tokens, order, axis=1), jnp.take_along_axis(valid, order, axis=1)
    return jnp.where(valid, tokens, pad_id), valid


def unsolved_groups(reward_b: jax.Array, group_size: int) -> jax.Array:
    """bool [P]: the groups none of whose rows earns a positive reward."""
    return (reward_b.reshape(-1, group_size) <= 0.0).all(axis=1)


def _rows_of(batch: Batch, field: str, value, dtype) -> jax.Array:
    x = getattr(batch, field)
    return x if x is not None else jnp.full((batch.batch_size,), value, dtype)


def unhinted_rows(batch: Batch, step, width: int, pad_id: int) -> Batch:
    """The inner collector's rows with prompts left-padded by ``width`` columns, ``source_b`` (ON_POLICY
    where absent), ``version_b`` (``step`` where absent) and a hint ratio of 0."""
    return batch.replace(
        prompt_bp=jnp.pad(batch.prompt_bp, ((0, 0), (width, 0)), constant_values=pad_id),
        prompt_valid_bp=jnp.pad(batch.prompt_valid_bp, ((0, 0), (width, 0))),
        source_b=_rows_of(batch, "source_b", ON_POLICY, jnp.int32),
        version_b=_rows_of(batch, "version_b", step, jnp.int32),
        aux={**batch.aux, HINT_RATIO: jnp.zeros((batch.batch_size,), jnp.float32)})


def guided_rows(batch: Batch, step, ratio: float) -> Batch:
    """Rows sampled from hinted prompts: ``source_b`` GUIDED, ``version_b`` the inner's (``step``
    where absent), hint ratio ω."""
    return batch.replace(
        source_b=jnp.full((batch.batch_size,), GUIDED, jnp.int32),
        version_b=_rows_of(batch, "version_b", step, jnp.int32),
        aux={**batch.aux, HINT_RATIO: jnp.full((batch.batch_size,), ratio, jnp.float32)})


def replace_groups(current: Batch, new: Batch, groups_p: jax.Array, group_size: int) -> Batch:
    """``current`` with the rows of the groups ``groups_p`` taken from ``new`` (same structure)."""
    rows_b = jnp.repeat(groups_p, group_size)
    pick = lambda n, c: jnp.where(rows_b.reshape((-1,) + (1,) * (c.ndim - 1)), n, c)
    return jax.tree.map(pick, new, current)


def hint_metrics(batch: Batch, stage_p: jax.Array, stages: int) -> dict:
    """``hint/hinted_frac`` (groups drawn with a hint), ``hint/stage{s}_frac`` (groups whose rows
    come from stage s), ``hint/solved_frac`` (of the hinted groups, those with a positive reward;
    0 without hinted groups: weight by ``hinted_frac`` to average over steps), ``hint/unsolved_frac``
    (groups with no positive reward after the last stage, of all groups) and the guided rows'
    ``guided_reward_mean`` / ``guided_accuracy`` (``rollout_metrics``)."""
    hinted = (stage_p > 0).astype(jnp.float32)
    solved = (~unsolved_groups(batch.reward_b, batch.group_size)).astype(jnp.float32)
    out = {"hint/hinted_frac": hinted.mean(),
           "hint/solved_frac": (hinted * solved).sum() / jnp.maximum(hinted.sum(), 1.0),
           "hint/unsolved_frac": 1.0 - solved.mean(),
           **{f"hint/stage{s}_frac": (stage_p == s).mean() for s in range(1, stages + 1)}}
    guided = {k: v for k, v in rollout_metrics(batch).items() if k.startswith("guided_")}
    return {**out, **guided}


def with_hints(hint_ratios: Sequence[float] = DEFAULT_RATIOS):
    """``(collector, context) -> collector``: GHPO's staged hints (module docstring) around an
    inner collector that returns one group per prompt from the device and keeps no state
    (``group_samples``); each stage runs it again on the hinted prompts with its own key
    (``fold_in(rng, s)``), so the rows of groups solved unaided are the inner collector's own.
    ``hint_ratios``: the increasing shares ω_1 < … < ω_S in (0, 1) of the labelled answer.

    Metrics: the inner collector's, from its unhinted pass (``accuracy`` is the policy's own on
    every prompt of the step), and ``hint_metrics``'s.
    """
    ratios = tuple(float(r) for r in hint_ratios)
    if not ratios or not all(0.0 < r < 1.0 for r in ratios) or any(b <= a for a, b in zip(ratios, ratios[1:])):
        raise ValueError(f"with_hints: hint_ratios={tuple(hint_ratios)!r} must be increasing shares in (0, 1) of "
                         f"the labelled answer, e.g. {DEFAULT_RATIOS}")

    def wrap(inner: Collector, ctx: Context) -> Collector:
        if inner.host:
            raise ValueError("with_hints: the inner collector runs on the host; hints are drawn inside the compiled "
                             "step: wrap a device collector (e.g. group_samples)")
        width = hint_width(ratios, ctx.task.max_answer_len)
        pad_id, eos_id = ctx.pad_id, ctx.sampling.eos_id

        def check(cstate, state, data) -> None:
            if jax.tree.leaves(cstate):
                raise ValueError("with_hints: the inner collector keeps a state, and each hint stage runs it again; "
                                 "wrap a stateless collector (e.g. group_samples)")
            longest = data["prompt_bp"].shape[1] + width + ctx.sampling.max_new_tokens
            max_len = nnx.merge(ctx.graphdef, state.params).max_len
            if longest > max_len:
                raise ValueError(f"with_hints: a hinted prompt ({data['prompt_bp'].shape[1]} + {width} hint tokens) and "
                                 f"rollout.max_new_tokens ({ctx.sampling.max_new_tokens}) need {longest} positions, "
                                 f"more than model.max_len={max_len}; raise model.max_len to {longest}")

        def collect(cstate, state, data, rng):
            check(cstate, state, data)
            batch, cstate, metrics = inner.collect(cstate, state, data, rng)
            p, g = data["prompt_bp"].shape[0], batch.group_size
            check_one_group_per_prompt(batch, p, "with_hints")
            batch = unhinted_rows(batch, state.step, width, pad_id)
            lengths = answer_lengths(data["answer_ba"], data["answer_valid_ba"], eos_id)
            stage_p = jnp.zeros((p,), jnp.int32)
            for s, ratio in enumerate(ratios, 1):
                unsolved = unsolved_groups(batch.reward_b, g)
                prompt, valid = hinted_prompts(data["prompt_bp"], data["prompt_valid_bp"], data["answer_ba"],
                                               hint_lengths(lengths, ratio, data["answer_ba"].shape[1]), width, pad_id)
                hinted = {**data, "prompt_bp": prompt, "prompt_valid_bp": valid}

                def redraw(current, hinted=hinted, ratio=ratio, unsolved=unsolved, key=jax.random.fold_in(rng, s)):
                    rows = guided_rows(inner.collect(cstate, state, hinted, key)[0], state.step, ratio)
                    return replace_groups(current, rows, unsolved, g)

                batch = jax.lax.cond(unsolved.any(), redraw, lambda current: current, batch)
                stage_p = jnp.where(unsolved, s, stage_p)
            return batch, cstate, {**metrics, **hint_metrics(batch, stage_p, len(ratios))}

        def example(prompts):
            ex = inner.example(prompts)
            rows, prompt_width = ex.batch_size, ex.prompt_bp.shape[1] + width
            per_row = lambda dtype: jax.ShapeDtypeStruct((rows,), dtype)
            return ex.replace(prompt_bp=jax.ShapeDtypeStruct((rows, prompt_width), jnp.int32),
                              prompt_valid_bp=jax.ShapeDtypeStruct((rows, prompt_width), jnp.bool_),
                              source_b=per_row(jnp.int32), version_b=per_row(jnp.int32),
                              aux={**ex.aux, HINT_RATIO: per_row(jnp.float32)})

        return inner._replace(collect=collect, example=example)

    return wrap


def hinted_groups(ctx: Context, *, hint_ratios: Sequence[float] = DEFAULT_RATIOS, group_size: int | None = None,
                  slots: int = 0) -> Collector:
    """GHPO's data as a phase's collector (``config.collector = "hinted_groups"``): ``group_samples``
    (``group_size``, ``slots``) wrapped by ``with_hints(hint_ratios)``; with GRPO's loss this is GHPO."""
    return with_hints(hint_ratios)(group_samples(ctx, group_size=group_size, slots=slots), ctx)

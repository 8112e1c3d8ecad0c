"""OPA-DPO's pairs: the policy's own response and an expert's minimal revision of it.

"Mitigating Hallucinations in Large Vision-Language Models via DPO: On-Policy Data Hold the Key"
(Yang et al. 2025, arXiv 2501.09695): the policy answers, an expert corrects only the wrong part
of the answer, and the pair is (revised ≻ original). Here the expert is programmatic and runs on
device: the prompt's labelled answer is the task's unique right response, the response keeps its
longest prefix of whole right steps, and the rest is rewritten from the label (``revise_tokens``;
the chain task's host reference is ``polrl.tasks.chain.revise``).
"""
from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp

from polrl.collectors.context import Context, check_sampler
from polrl.collectors.group_samples import group_samples
from polrl.core import EXPERT, ON_POLICY, Batch, Collector

EMITS = ("pairs", "revised")


def revise_tokens(response_bt, mask_bt, answer_ba, answer_valid_ba, *, step_end_ids, eos_id: int, pad_id: int):
    """The minimal revision of each response, on device.

    With the response r (its tokens up to and including its first EOS, length |r|) and the label
    y (the prompt's labelled answer with its EOS, length |y|), d = the first position where they
    differ (a position one of them lacks counts as different). A row is right when there is no
    such d (r = y token for token); otherwise the kept prefix is

        k = 1 + max{t < d : y_t ∈ step_end_ids}     (0 when no step closes before d;
                                                      every token is a step when step_end_ids is empty)

    and the revision is r_{<k} ++ y_{≥k} (= y, since r_{<k} = y_{<k}). A response without an EOS
    is never right (its last step is unfinished).

    Returns ``(revised_bt, revised_mask_bt, revised_b, kept_b, edit_b)``: the revised rows at the
    response's width (the label's tokens past the width are a ValueError while tracing), float
    mask; bool "was revised"; kept tokens; tokens rewritten (|y| − k for revised rows, 0 for right
    ones).
    """
    b, t = response_bt.shape
    width = answer_ba.shape[1]
    if width > t:
        raise ValueError(f"revise_tokens: labelled answers ({width} tokens) are wider than the responses ({t}); "
                         f"raise rollout.max_new_tokens to at least the task's longest answer")
    col = jnp.arange(t)
    label_bt = jnp.pad(jnp.where(answer_valid_ba, answer_ba, pad_id), ((0, 0), (0, t - width)), constant_values=pad_id)
    label_len_b = jnp.pad(answer_valid_ba, ((0, 0), (0, t - width))).sum(-1)
    valid_bt = mask_bt > 0
    eos_bt = valid_bt & (response_bt == eos_id)
    has_eos_b = eos_bt.any(-1)
    resp_len_b = jnp.where(has_eos_b, jnp.argmax(eos_bt, axis=1) + 1, valid_bt.sum(-1))
    resp_x = jnp.where(col < resp_len_b[:, None], response_bt, -1)
    label_x = jnp.where(col < label_len_b[:, None], label_bt, -1)
    differ_bt = resp_x != label_x
    right_b = ~differ_bt.any(-1) & has_eos_b
    d_b = jnp.where(differ_bt.any(-1), jnp.argmax(differ_bt, axis=1), t)
    ends = jnp.asarray(list(step_end_ids), jnp.int32)
    if ends.size:
        closes_bt = jnp.isin(label_bt, ends) & (col < label_len_b[:, None]) & (col < d_b[:, None])
        kept_b = jnp.max(jnp.where(closes_bt, col + 1, 0), axis=1)
    else:
        kept_b = d_b
    kept_b = jnp.where(right_b, resp_len_b, jnp.minimum(kept_b, label_len_b))
    revised_bt = jnp.where(right_b[:, None] | (col < kept_b[:, None]), response_bt, label_bt)
    revised_mask_bt = jnp.where(right_b[:, None], valid_bt & (col < resp_len_b[:, None]), col < label_len_b[:, None])
    revised_bt = jnp.where(revised_mask_bt, revised_bt, pad_id)
    edit_b = jnp.where(right_b, 0, label_len_b - kept_b)
    return revised_bt, revised_mask_bt.astype(jnp.float32), ~right_b, kept_b, edit_b


def step_end_ids(ctx: Context, step_ends: str | None) -> tuple[int, ...]:
    """Token ids closing a step: ``step_ends`` (characters), else the task module's ``STEP_ENDS``
    (``polrl.tasks.<task>.STEP_ENDS``), else none (every token is a step)."""
    if step_ends is None:
        try:
            module = importlib.import_module(f"polrl.tasks.{ctx.task.name}")
        except ImportError:
            module = None
        step_ends = getattr(module, "STEP_ENDS", "")
    if not isinstance(step_ends, str):
        raise ValueError(f"revised_pairs: step_ends={step_ends!r} must be a string of characters (or None: the task's STEP_ENDS)")
    if step_ends and ctx.task.tokenizer is None:
        raise ValueError(f"revised_pairs: step_ends={step_ends!r} needs a task with a tokenizer; pass step_ends='' for token steps")
    return tuple(tid for ch in step_ends for tid in ctx.task.tokenizer.encode(ch))


def revised_pairs(ctx: Context, *, policy: str = "reference", step_ends: str | None = None,
                  emit: str = "pairs") -> Collector:
    """One response per prompt from the policy (``group_samples`` with G = 1; by default the
    frozen phase reference, the policy OPA-DPO's data is on-policy to), revised by
    ``revise_tokens``, emitted as

    * ``emit="pairs"``: groups of two rows [revised, original] (``best_and_worst``'s layout),
      ``reward_b`` 1 / 0; a right response gives a tie (both rows the response, reward 1), which
      every pair loss ignores. The revised row has ``source_b = EXPERT`` and
      ``behavior_logp_bt`` = 0 (the expert's policy is unknown); the original keeps the sampler's.
    * ``emit="revised"``: one row per prompt, the revised response (the right ones as they are):
      OPA's warm-up SFT data.

    Metrics: the samples' rollout metrics, ``revised_fraction`` (responses the expert changed),
    ``edit_tokens`` (mean tokens rewritten per revised response, 0 when none was) and
    ``kept_tokens`` (mean kept prefix of the revised ones).
    """
    check_sampler(ctx, policy, "revised_pairs: policy")
    if emit not in EMITS:
        raise ValueError(f"revised_pairs: emit={emit!r}; use one of {EMITS}")
    samples = group_samples(ctx, group_size=1, policy=policy)
    if samples.host:
        raise ValueError(f"revised_pairs: task {ctx.task.name!r} has only a host reward; the revision runs inside the "
                         f"compiled step and needs a task with a device reward")
    ends = step_end_ids(ctx, step_ends)

    def collect(cstate, state, data, rng):
        batch, cstate, metrics = samples.collect(cstate, state, data, rng)
        revised_bt, revised_mask_bt, changed_b, kept_b, edit_b = revise_tokens(
            batch.response_bt, batch.mask_bt, data["answer_ba"], data["answer_valid_ba"],
            step_end_ids=ends, eos_id=ctx.sampling.eos_id, pad_id=ctx.pad_id)
        changed = changed_b.astype(jnp.float32)
        n_changed = jnp.maximum(changed.sum(), 1.0)
        metrics = {**metrics, "revised_fraction": changed.mean(), "edit_tokens": (edit_b * changed).sum() / n_changed,
                   "kept_tokens": (kept_b * changed).sum() / n_changed}
        if emit == "revised":
            rows = batch.replace(response_bt=revised_bt, mask_bt=revised_mask_bt,
                                 behavior_logp_bt=jnp.where(changed_b[:, None], 0.0, batch.behavior_logp_bt),
                                 source_b=jnp.where(changed_b, EXPERT, ON_POLICY).astype(jnp.int32))
            return rows, cstate, metrics
        return pair_rows(batch, revised_bt, revised_mask_bt, changed_b), cstate, metrics

    def example(prompts):
        one = samples.example(prompts)
        rows = prompts if emit == "revised" else 2 * prompts
        grow = lambda x: jax.ShapeDtypeStruct((rows,) + x.shape[1:], x.dtype)
        out = jax.tree.map(grow, one)
        return out.replace(source_b=jax.ShapeDtypeStruct((rows,), jnp.int32), group_size=1 if emit == "revised" else 2)

    return samples._replace(collect=collect, example=example)


def pair_rows(batch: Batch, revised_bt, revised_mask_bt, changed_b) -> Batch:
    """Rows [revised_0, original_0, revised_1, original_1, …] as groups of two from one sample per
    prompt (``batch``, group size 1): ``reward_b`` 1 / 0 where the response was revised, 1 / 1 (a
    tie) where it was right; ``source_b`` EXPERT for a revision, ON_POLICY otherwise."""
    n = batch.batch_size
    inter = lambda a, b: jnp.stack([a, b], axis=1).reshape(2 * n, *a.shape[1:])
    changed = changed_b.astype(jnp.float32)
    return batch.replace(
        prompt_bp=inter(batch.prompt_bp, batch.prompt_bp),
        prompt_valid_bp=inter(batch.prompt_valid_bp, batch.prompt_valid_bp),
        response_bt=inter(revised_bt, batch.response_bt),
        mask_bt=inter(revised_mask_bt, batch.mask_bt),
        reward_b=inter(jnp.ones_like(changed), 1.0 - changed),
        group_b=jnp.arange(2 * n, dtype=jnp.int32) // 2,
        behavior_logp_bt=inter(jnp.where(changed_b[:, None], 0.0, batch.behavior_logp_bt), batch.behavior_logp_bt),
        version_b=inter(batch.version_b, batch.version_b),
        source_b=inter(jnp.where(changed_b, EXPERT, ON_POLICY).astype(jnp.int32), jnp.full((n,), ON_POLICY, jnp.int32)),
        aux={k: inter(v, v) for k, v in batch.aux.items()},
        group_size=2,
    )

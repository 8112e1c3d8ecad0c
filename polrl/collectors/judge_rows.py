"""SPARK's judge rows: a step's own samples and their verifier outcomes, recycled into supervised
examples that teach the same model to judge answers; and the model's own verdict as a reward.

SPARK ("SPARK: Synergistic Policy And Reward Co-Evolving Framework", Liu et al. 2025, arXiv
2509.22624) keeps the rollouts and correctness signals that RLVR discards after its update and
trains the policy itself as a generative reward model on them. Every prompt k of a step, with G
samples y_k1 … y_kG and verifier outcomes c_kj = [r_kj ≥ 1], gives (reading of the authors'
reference code, ``InternLM/Spark``, ``new_data_gen``):

* one judge row — pairwise when the group has a right and a wrong sample and a coin of
  probability ``pairwise_prob`` (0.7 there) says so: a random right y⁺ and a random wrong y⁻ in
  a random order, target the right one's letter; otherwise pointwise on one sample (in a mixed
  group a right or a wrong one with probability ½, else any one), target its outcome:

      pointwise:   x ++ y ++ " ok?"              →  "y" if c(y) else "n"
      pairwise:    x ++ " a:" ++ y_a ++ " b:" ++ y_b ++ " ?"   →  "a" if c(y_a) else "b"

* one reflection row when the group has a wrong sample: a random wrong y⁻ and the prompt's
  labelled answer a* as the revision,

      reflection:  x ++ y⁻ ++ " fix:"             →  a*

where x is the task prompt and y a sample's tokens before its EOS (the character tokenizer has
no chat template: the templates are these few characters). Targets end with EOS.

``with_judge_rows`` appends these rows to the inner collector's batch: the policy's P·G rows
first (unchanged), then P judge rows, then P reflection rows (``reflection=True``). Judge rows
have ``source_b = EXPERT`` (no sampling policy: ``behavior_logp_bt = 0``), so group statistics,
rollout metrics and the off-policy diagnostics leave them out as they leave out CHORD's expert
rows, and ``aux["judge_kind_b"]`` says which they are (0: the policy's rows, 1 pointwise,
2 pairwise, 3 reflection). A judge row's prompt is not its group's, so the batch is returned with
``group_size = 1`` (the scoring forward encodes each row's own prompt; advantages read
``group_b``, computed before any minibatch split). Every row's prompt is left-padded to the
pairwise prompt's width P + 2T + 8 (P, T: the inner prompt and response widths). Rows that a
group cannot form (a reflection without a wrong sample) have ``mask_bt = 0``.

``with_self_judge`` turns the trained judge into the reward: each row's reward is the policy's
own probability of the verdict "y" on the row's pointwise prompt, π_θ("y" | x ++ y ++ " ok?"),
from one scoring forward at temperature 1, and it logs the verdict's agreement with the verifier.

INFERRED: SPARK's reference code turns the recycled examples into prompts of an alternating RLVR
step (the model reasons, then states a verdict checked against the label); here the judge
answers with its verdict alone and is trained by cross-entropy on it in the same update as the
policy (``polrl.algorithms.spark``) — for a one-token answer the likelihood of the right verdict
is what that RLVR step raises. The reference code caps each kind at half of the step's prompts;
here every prompt gives one judge and one reflection row. The verdict's first token is the
score, P(y) > ½ the verdict "correct".
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl.collectors.context import Context, check_one_group_per_prompt
from polrl.collectors.density_ratio import pair_agreement
from polrl.collectors.expert_rows import labelled_rows
from polrl.core import EXPERT, ON_POLICY, Batch, Collector
from polrl.train.steps import score

JUDGE_KIND = "judge_kind_b"
POINTWISE, PAIRWISE, REFLECTION = 1, 2, 3
POINTWISE_ASK, FIRST_TAG, SECOND_TAG, PAIR_ASK, REFLECT_ASK = " ok?", " a:", " b:", " ?", " fix:"
YES, NO, FIRST, SECOND = "y", "n", "a", "b"


def _text(tokenizer, text: str, rows: int):
    """(tokens, valid) of ``text`` repeated on ``rows`` rows."""
    ids = jnp.asarray(tokenizer.encode(text), jnp.int32)
    return jnp.broadcast_to(ids, (rows, ids.shape[0])), jnp.ones((rows, ids.shape[0]), bool)


def answer_text(response_bt, mask_bt, eos_id: int):
    """(tokens, valid) of a response as prompt text: its tokens before the EOS (holes where not)."""
    return response_bt, (mask_bt > 0) & (response_bt != eos_id)


def joined(pieces, width: int | None = None):
    """(tokens, valid) pieces concatenated along columns, left-padded with invalid columns to
    ``width``; positions count valid tokens only, so the model reads the valid tokens in order."""
    tokens = jnp.concatenate([t for t, _ in pieces], axis=1)
    valid = jnp.concatenate([v for _, v in pieces], axis=1)
    pad = (width or tokens.shape[1]) - tokens.shape[1]
    return jnp.pad(tokens, ((0, 0), (pad, 0))), jnp.pad(valid, ((0, 0), (pad, 0)))


def pointwise_prompts(tokenizer, prompt_bp, prompt_valid_bp, response_bt, mask_bt, width: int | None = None):
    """x ++ y ++ " ok?" for every row (its prompt and response)."""
    rows = prompt_bp.shape[0]
    answer = answer_text(response_bt, mask_bt, tokenizer.eos_id)
    return joined([(prompt_bp, prompt_valid_bp), answer, _text(tokenizer, POINTWISE_ASK, rows)], width)


def judge_width(prompt_len: int, width: int) -> int:
    """The judge rows' prompt width: the pairwise prompt's, the longest of the three."""
    return prompt_len + 2 * width + len(FIRST_TAG) + len(SECOND_TAG) + len(PAIR_ASK)


def draw_choices(rng, prompts: int, group_size: int) -> dict:
    """The random draws of one step's judge rows: per prompt, a uniform for the pairwise coin,
    one for the pointwise side, one for the pair's order, and per sample a uniform ranking the
    group's right and wrong samples (the first of each by it is the one taken)."""
    k_coin, k_side, k_order, k_rank = jax.random.split(rng, 4)
    u = lambda k: jax.random.uniform(k, (prompts,))
    return {"pair_u": u(k_coin), "side_u": u(k_side), "order_u": u(k_order),
            "rank_pg": jax.random.uniform(k_rank, (prompts, group_size))}


def judge_rows(tokenizer, data: dict, batch: Batch, choices: dict, *, pairwise_prob: float, fix=None, pad_id: int):
    """The judge rows of ``batch`` (P groups of G rows in prompt order) and the step's metrics: a
    Batch of P judge rows, then, with ``fix`` = (response_bt, mask_bt) of the prompts' labelled
    answers at the batch's response width, P reflection rows; prompts of width ``judge_width``.
    ``choices``: ``draw_choices``'s draws."""
    p, g = data["prompt_bp"].shape[0], batch.group_size
    t = batch.response_bt.shape[1]
    width = judge_width(data["prompt_bp"].shape[1], t)
    right_pg = (batch.reward_b >= 1.0).reshape(p, g)
    any_right, any_wrong = right_pg.any(axis=1), (~right_pg).any(axis=1)
    pick = lambda keep: jnp.argmax(jnp.where(keep, choices["rank_pg"], -1.0), axis=1)  # a random member of ``keep``
    pos, neg = pick(right_pg), pick(~right_pg)
    mixed = any_right & any_wrong
    pairwise = mixed & (choices["pair_u"] < pairwise_prob)
    single = jnp.where(any_right & (~any_wrong | (choices["side_u"] < 0.5)), pos, neg)
    first_right = choices["order_u"] < 0.5
    first = jnp.where(first_right, pos, neg)
    second = jnp.where(first_right, neg, pos)

    response_pgt = batch.response_bt.reshape(p, g, t)
    mask_pgt = batch.mask_bt.reshape(p, g, t)
    sample = lambda i: answer_text(jnp.take_along_axis(response_pgt, i[:, None, None], axis=1)[:, 0],
                                   jnp.take_along_axis(mask_pgt, i[:, None, None], axis=1)[:, 0], tokenizer.eos_id)
    question = (data["prompt_bp"], data["prompt_valid_bp"])
    point = joined([question, sample(single), _text(tokenizer, POINTWISE_ASK, p)], width)
    pair = joined([question, _text(tokenizer, FIRST_TAG, p), sample(first), _text(tokenizer, SECOND_TAG, p),
                   sample(second), _text(tokenizer, PAIR_ASK, p)], width)
    prompt_bp = jnp.where(pairwise[:, None], pair[0], point[0])
    valid_bp = jnp.where(pairwise[:, None], pair[1], point[1])
    ids = {c: tokenizer.encode(c)[0] for c in (YES, NO, FIRST, SECOND)}
    verdict = jnp.where(pairwise, jnp.where(first_right, ids[FIRST], ids[SECOND]),
                        jnp.where(jnp.take_along_axis(right_pg, single[:, None], axis=1)[:, 0], ids[YES], ids[NO]))
    response = jnp.full((p, t), pad_id, jnp.int32).at[:, 0].set(verdict).at[:, 1].set(tokenizer.eos_id)
    mask = jnp.zeros((p, t), jnp.float32).at[:, :2].set(1.0)
    kind = jnp.where(pairwise, PAIRWISE, POINTWISE).astype(jnp.int32)
    parts = [(prompt_bp, valid_bp, response, mask, kind)]
    metrics = {"judge_pairwise_frac": pairwise.mean(),
               "judge_yes_frac": (verdict == ids[YES]).sum() / jnp.maximum((~pairwise).sum(), 1)}
    if fix is not None:
        fix_prompt, fix_valid = joined([question, sample(neg), _text(tokenizer, REFLECT_ASK, p)], width)
        parts.append((fix_prompt, fix_valid, fix[0], fix[1] * any_wrong[:, None], jnp.full((p,), REFLECTION, jnp.int32)))
        metrics["reflection_frac"] = any_wrong.mean()
    cat = lambda i: jnp.concatenate([part[i] for part in parts], axis=0)
    rows = Batch(prompt_bp=cat(0), prompt_valid_bp=cat(1), response_bt=cat(2), mask_bt=cat(3),
                 aux={JUDGE_KIND: cat(4)})
    return rows, metrics


def _left_pad(x, width: int):
    return jnp.pad(x, ((0, 0), (width - x.shape[1], 0)))


def with_judge_rows(pairwise_prob: float = 0.7, reflection: bool = True):
    """``(collector, context) -> collector``: the inner collector's P groups of G rows followed by
    P judge rows and, with ``reflection``, P reflection rows built from them (the module's
    templates and choices; ``pairwise_prob`` = the reference code's 0.7). The policy's rows are
    unchanged but for their prompts, left-padded to the judge rows' width; the batch has
    ``group_size = 1``. Metrics: the inner ones, ``judge_pairwise_frac`` (groups whose judge row
    is pairwise), ``judge_yes_frac`` (pointwise rows whose target is "y") and ``reflection_frac``
    (groups with a wrong sample, hence a reflection row)."""
    if not 0.0 <= pairwise_prob <= 1.0:
        raise ValueError(f"with_judge_rows: pairwise_prob={pairwise_prob} must be in [0, 1]")

    def wrap(inner: Collector, ctx: Context) -> Collector:
        if ctx.task.device_reward is None:
            raise ValueError(f"with_judge_rows: task {ctx.task.name!r} has only a host reward; judge rows are built "
                             f"on the device from a task with a device reward")
        tokenizer = ctx.task.tokenizer
        extra = 2 if reflection else 1

        def collect(cstate, state, data, rng):
            batch, cstate, metrics = inner.collect(cstate, state, data, rng)
            p, g = data["prompt_bp"].shape[0], batch.group_size
            check_one_group_per_prompt(batch, p, "with_judge_rows")
            t = batch.response_bt.shape[1]
            if t < 2:
                raise ValueError(f"with_judge_rows: responses are {t} token(s) wide; a verdict and its EOS need 2: raise "
                                 f"rollout.max_new_tokens")
            fix = labelled_rows(ctx, data, t, "with_judge_rows")[:2] if reflection else None
            choices = draw_choices(jax.random.fold_in(rng, 1), p, g)
            rows, judge_metrics = judge_rows(tokenizer, data, batch, choices, pairwise_prob=pairwise_prob, fix=fix,
                                             pad_id=ctx.pad_id)
            width, n = rows.prompt_bp.shape[1], extra * p
            source = batch.source_b if batch.source_b is not None else jnp.full((p * g,), ON_POLICY, jnp.int32)
            version = batch.version_b if batch.version_b is not None else jnp.full((p * g,), state.step, jnp.int32)
            rows_of = lambda x, value: jnp.concatenate([x, jnp.full((n,) + x.shape[1:], value, x.dtype)])
            mixed = batch.replace(
                prompt_bp=jnp.concatenate([_left_pad(batch.prompt_bp, width), rows.prompt_bp]),
                prompt_valid_bp=jnp.concatenate([_left_pad(batch.prompt_valid_bp, width), rows.prompt_valid_bp]),
                response_bt=jnp.concatenate([batch.response_bt, rows.response_bt.astype(batch.response_bt.dtype)]),
                mask_bt=jnp.concatenate([batch.mask_bt, rows.mask_bt]),
                reward_b=rows_of(batch.reward_b, 0.0),
                group_b=jnp.concatenate([batch.group_b, jnp.tile(jnp.arange(p, dtype=jnp.int32), extra)]),
                behavior_logp_bt=rows_of(batch.behavior_logp_bt, 0.0),
                old_value_bt=None if batch.old_value_bt is None else rows_of(batch.old_value_bt, 0.0),
                source_b=rows_of(source, EXPERT),
                version_b=rows_of(version, state.step),
                aux={**{k: rows_of(x, 0) for k, x in batch.aux.items()},
                     JUDGE_KIND: jnp.concatenate([jnp.zeros((p * g,), jnp.int32), rows.aux[JUDGE_KIND]])},
                group_size=1,
            )
            return mixed, cstate, {**metrics, **judge_metrics}

        def example(prompts):
            inner_ex = inner.example(prompts)
            g, t = inner_ex.group_size, inner_ex.response_bt.shape[1]
            rows = prompts * (g + extra)
            width = judge_width(ctx.task.max_prompt_len, t)
            grow = lambda x: jax.ShapeDtypeStruct((rows,) + x.shape[1:], x.dtype)
            out = jax.tree.map(grow, inner_ex)
            return out.replace(
                prompt_bp=jax.ShapeDtypeStruct((rows, width), jnp.int32),
                prompt_valid_bp=jax.ShapeDtypeStruct((rows, width), jnp.bool_),
                source_b=jax.ShapeDtypeStruct((rows,), jnp.int32), version_b=jax.ShapeDtypeStruct((rows,), jnp.int32),
                aux={**out.aux, JUDGE_KIND: jax.ShapeDtypeStruct((rows,), jnp.int32)}, group_size=1)

        return inner._replace(collect=collect, example=example)

    return wrap


def self_judge_scores(graphdef, params, tokenizer, batch: Batch) -> jax.Array:
    """float32 [B]: π_θ("y" | x ++ y ++ " ok?") of every row, from one scoring forward at
    temperature 1 of the rows' pointwise prompts with the one-token response "y"."""
    prompt_bp, valid_bp = pointwise_prompts(tokenizer, batch.prompt_bp, batch.prompt_valid_bp, batch.response_bt,
                                            batch.mask_bt)
    rows = prompt_bp.shape[0]
    yes = jnp.full((rows, 1), tokenizer.encode(YES)[0], jnp.int32)
    asked = Batch(prompt_bp=prompt_bp, prompt_valid_bp=valid_bp, response_bt=yes, mask_bt=jnp.ones((rows, 1)))
    return jnp.exp(score(graphdef, params, asked, temperature=1.0)["logp_bt"][:, 0]).astype(jnp.float32)


def with_self_judge():
    """``(collector, context) -> collector`` whose ``reward_b`` is the policy's own judgment of
    each row, s = π_θ("y" | x ++ y ++ " ok?") (``self_judge_scores``, the current parameters),
    instead of the inner collector's verifier reward: SPARK's policy as its own reward model.

    Metrics: ``reward_mean`` (s's), ``verifier_reward_mean`` (the inner reward of the same rows;
    the inner metrics, e.g. ``accuracy``, are kept), ``self_judge_agreement`` — the fraction of
    rows whose verdict [s > ½] is the verifier's [r ≥ 1] — with ``self_judge_base_rate``, the
    agreement of the best constant verdict, and, for groups of two or more rows,
    ``pair_agreement`` / ``pair_untied`` and ``verifier_pair_accuracy`` / ``verifier_pairs``
    (``density_ratio.pair_agreement``: how often the verifier agrees with the best/worst pair s
    selects, and how often s orders the verifier's right/wrong pairs the same way). The inner
    collector must return one group per prompt, from the device.
    """

    def wrap(inner: Collector, ctx: Context) -> Collector:
        if inner.host:
            raise ValueError("with_self_judge: the inner collector runs on the host; judge rows from a device "
                             "collector (e.g. group_samples)")

        def collect(cstate, state, data, rng):
            batch, cstate, metrics = inner.collect(cstate, state, data, rng)
            check_one_group_per_prompt(batch, data["prompt_bp"].shape[0], "with_self_judge")
            s = self_judge_scores(ctx.graphdef, state.params, ctx.task.tokenizer, batch)
            right = batch.reward_b >= 1.0
            accuracy = right.mean()
            out = {**metrics, "reward_mean": s.mean(), "verifier_reward_mean": batch.reward_b.mean(),
                   "self_judge_agreement": ((s > 0.5) == right).mean(),
                   "self_judge_base_rate": jnp.maximum(accuracy, 1.0 - accuracy),
                   "reward_finite": jnp.isfinite(s).all() & metrics.get("reward_finite", True)}
            if batch.group_size > 1:
                out["pair_agreement"], out["pair_untied"] = pair_agreement(s, batch.reward_b, batch.group_size)
                out["verifier_pair_accuracy"], out["verifier_pairs"] = pair_agreement(batch.reward_b, s, batch.group_size)
            return batch.replace(reward_b=s), cstate, out

        return inner._replace(collect=collect)

    return wrap

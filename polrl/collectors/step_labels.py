"""Monte-Carlo step labels for a process reward model: Math-Shepherd's soft estimation.

"Math-Shepherd: Verify and Reinforce LLMs Step-by-step without Human Annotations" (arXiv
2312.08935) labels step j of a response y to a prompt x by completing the prefix that ends at
step j M times with a fixed completer policy π_c and verifying the completions:

    ŷ_j = (1/M) Σ_{m=1..M} r(x, y_{≤e_j} ++ c_m),      c_m ~ π_c(· | x ++ y_{≤e_j}),

the soft estimate (SE): the fraction of completions that reach the correct answer (the task's
device reward r, averaged as it is). e_j is the response column of the last token of step j,
exactly ``polrl.search.scoring.step_ends`` (a token equal to the task's step separator, or the
row's last token). The last step of a response is a finished response: its label is the
response's own reward, no completion drawn. Here π_c is the phase's frozen reference
(``PolicyState.ref_params``, the SFT warm start), which also samples the responses.

Program over one KV cache (``polrl.rollout.engine``), for B = P·G rows (G samples of each of P
prompts), K = ``max_steps`` and N = the rollout's ``max_new_tokens``:

    prefill each prompt once, fork it into G row slots
    for j in 0 … K−1:
        step: ``generate`` in the unfinished rows until the separator (a stop sequence), EOS or
          the budget N; the step's last token is e_j
        fork every row slot into M continuation slots (``engine.repeat``: the prefix's cache is
          copied, never recomputed) and ``generate`` the completions to EOS or the budget, in the
          rows whose step j did not end the response; reward each prefix ++ completion
    rest: ``generate`` the unfinished rows to EOS or the budget (their steps after K are not
      labelled)

A row ends with EOS, with the budget, or with a separator as its N-th token; the steps labelled
are a row's first min(K, its steps).

Randomness: ``rng`` splits into (row key, completion key). Token t of row b is drawn with
``uniform(row key, (N, B))[t, b]``, whichever step draws it, so the rows are exactly the samples
``polrl.rollout.sample(graphdef, ref_params, prompt_bp, prompt_valid_bp, row key, sampling, G)``
(pausing at separators changes no draw). The completion key splits into K keys; step j's
completions are one ``generate(…, rng=key_j)`` over the B·M continuation slots (completion m of
row b in slot b·M + m draws its i-th token with ``uniform(key_j, (N, B·M))[i, b·M + m]``).

Rows: as ``group_samples(policy="reference")`` (``group_b`` = prompt, ``behavior_logp_bt`` the
completer's log-probs, ``version_b`` 0), and in ``aux``:

  ``step_end_bk``   int32 [B, K]: e_j, the response column of step j's last token; −1 where the
                    row has no step j (fewer than j + 1 steps);
  ``step_label_bk`` float32 [B, K]: ŷ_j (the row's reward for its last step); 0 where no step.

INFERRED (the paper does not fix them): the responses to label are the completer's own samples
(the paper labels responses of a generator that may differ from the completer); the label of a
response's last step is its verified reward rather than a completion's; steps after the K-th
are left unlabelled.
"""
from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
from flax import nnx

from polrl import sharding
from polrl.collectors.context import Context, group_rows, repeat_rows, shapes
from polrl.collectors.group_samples import device_reward, rollout_metrics
from polrl.core import Collector
from polrl.models.layers import wide
from polrl.rollout import engine
from polrl.search.scoring import separator_id

STEP_END, STEP_LABEL = "step_end_bk", "step_label_bk"


class StepLabels(flax.struct.PyTreeNode):
    """What ``step_label_rollout`` returns for B rows, N response columns and K labelled steps.

    tokens_bn, logp_bn, mask_bn: the completer's responses (as ``engine.Generation``);
    step_end_bk: e_j (−1: no step j); mc_label_bk: the mean reward of step j's M completions
    (0 where the step ends its row or does not exist); last_bk: step j is the row's last step.
    """

    tokens_bn: jax.Array
    logp_bn: jax.Array
    mask_bn: jax.Array
    step_end_bk: jax.Array
    mc_label_bk: jax.Array
    last_bk: jax.Array


def row_decoder(model, config, separator: int, uniform_bn):
    """``(put, decode)`` for rows decoded step by step from per-row offsets (the response columns
    written so far), each row with its own draws ``uniform_bn`` [rows, N] indexed by column, so a
    row's tokens do not depend on when it is decoded:

    * ``put(buf, offset_b, x)``: ``x`` [rows, k] written into ``buf`` at columns offset … offset + k
      of each row (columns past N dropped);
    * ``decode(slots, tokens, logp, mask, offset, live, stop, commit_last=True)``: the live rows
      decoded from their offsets (until the step separator when ``stop``), their tokens, log-probs
      and mask written into the buffers; returns ``(generated, slots, tokens, logp, mask)``."""
    n = config.max_new_tokens
    cols = jnp.arange(n, dtype=jnp.int32)

    def put(buf, offset_b, x):
        return buf.at[jnp.arange(buf.shape[0])[:, None], offset_b[:, None] + cols].set(x.astype(buf.dtype), mode="drop")

    def decode(slots, tokens, logp, mask, offset, live, stop, commit_last=True):
        uniform = jnp.take_along_axis(uniform_bn, jnp.minimum(offset[:, None] + cols, n - 1), axis=1).T
        gen, slots = engine.generate(model, slots, None, config, active_s=live, max_new_s=n - offset,
                                     stop_sequences=((separator,),) if stop else (), uniform_ns=uniform,
                                     commit_last=commit_last)
        return gen, slots, put(tokens, offset, gen.tokens_sn), put(logp, offset, gen.logp_sn), put(mask, offset, gen.mask_sn)

    return put, decode


def step_label_rollout(model, prompt_bp, prompt_valid_bp, answer_ba, answer_valid_ba, rng, config, *,
                       samples: int, continuations: int, max_steps: int, separator: int,
                       reward_fn) -> StepLabels:
    """The program of the module docstring for left-padded prompts [P, ·] and their answers
    (``reward_fn(response_bt, mask_bt, answer_ba, answer_valid_ba) -> [rows]``), G = ``samples``
    rows per prompt, M = ``continuations``, K = ``max_steps``, with the completer ``model``
    (rollout layout). Pure and jittable."""
    p, width = prompt_bp.shape
    n, g, m = config.max_new_tokens, samples, continuations
    b = p * g
    row_key, cont_key = jax.random.split(rng)
    uniform_bn = jax.random.uniform(row_key, (n, b)).T
    slots = engine.repeat(engine.extend(model, engine.init_slots(model, p, width + n), prompt_bp, prompt_valid_bp), g)
    answers = repeat_rows(answer_ba, g * m), repeat_rows(answer_valid_ba, g * m)
    real = wide(model.config.dtype)
    put, decode = row_decoder(model, config, separator, uniform_bn)

    def step(carry, key):
        slots, tokens, logp, mask, offset, done = carry
        live = ~done
        gen, slots, tokens, logp, mask = decode(slots, tokens, logp, mask, offset, live, stop=True)
        offset = offset + gen.length_s
        done = done | (gen.finish_s != engine.STOP) | (offset >= n)
        last = live & done
        going = repeat_rows(live & ~done, m)
        cont, _ = engine.generate(model, engine.repeat(slots, m), key, config, active_s=going,
                                  max_new_s=n - repeat_rows(offset, m), commit_last=False)
        full_offset = repeat_rows(offset, m)
        full_tokens = put(repeat_rows(tokens, m), full_offset, cont.tokens_sn)
        full_mask = put(repeat_rows(mask, m), full_offset, cont.mask_sn)
        reward = reward_fn(full_tokens, full_mask, *answers).astype(jnp.float32)
        label = jnp.where(live & ~done, reward.reshape(b, m).mean(axis=1), 0.0)
        end = jnp.where(live, offset - 1, -1)
        return (slots, tokens, logp, mask, offset, done), (end, label, last)

    init = (slots, jnp.full((b, n), config.pad_id, jnp.int32), jnp.zeros((b, n), real), jnp.zeros((b, n), real),
            jnp.zeros((b,), jnp.int32), jnp.zeros((b,), bool))
    (slots, tokens, logp, mask, offset, done), (end, label, last) = jax.lax.scan(
        step, init, jax.random.split(cont_key, max_steps))
    _, _, tokens, logp, mask = decode(slots, tokens, logp, mask, offset, ~done, stop=False, commit_last=False)
    return StepLabels(tokens_bn=tokens, logp_bn=logp, mask_bn=mask, step_end_bk=end.T, mc_label_bk=label.T,
                      last_bk=last.T)


def label_metrics(step_end_bk, step_label_bk) -> dict:
    """``prm/label_mean`` (mean label over the labelled steps), ``prm/mixed_label_fraction``
    (labelled steps whose label lies strictly inside (0, 1): completions that disagree),
    ``prm/steps_per_row`` (labelled steps per row)."""
    valid = step_end_bk >= 0
    steps = jnp.maximum(valid.sum(), 1)
    mixed = valid & (step_label_bk > 0) & (step_label_bk < 1)
    return {"prm/label_mean": jnp.where(valid, step_label_bk, 0.0).sum() / steps,
            "prm/mixed_label_fraction": mixed.sum() / steps,
            "prm/steps_per_row": valid.sum(axis=1).mean(dtype=jnp.float32)}


def step_labels(ctx: Context, *, continuations: int = 4, max_steps: int = 8, group_size: int | None = None) -> Collector:
    """Rows sampled by the completer (the phase's reference, ``PolicyState.ref_params``) with
    Monte-Carlo labels of their first ``max_steps`` steps, each the mean reward of
    ``continuations`` completions of the step's prefix (module docstring). G = ``group_size``
    (default the run's ``rollout.group_size``) rows per prompt; the labels and step ends are in
    ``aux["step_label_bk"]`` / ``aux["step_end_bk"]``.

    Metrics: those of ``group_samples`` (of the completer's rows) and ``label_metrics``.
    """
    g = ctx.group_size if group_size is None else group_size
    checks = [("continuations", continuations), ("max_steps", max_steps), ("group_size", g)]
    for field, value in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"step_labels: {field}={value!r} must be an int >= 1")
    task = ctx.task
    if task.device_reward is None:
        raise ValueError(f"step_labels: task {task.name!r} has only a host reward; step labels are verified inside "
                         f"the compiled step and need a task with a device reward")
    separator = separator_id(task, "step_labels")
    n = ctx.sampling.max_new_tokens
    reward_fn = lambda response, mask, answer, valid: device_reward(ctx, response, mask, answer, valid)

    def collect(cstate, state, data, rng):
        if state.ref_params is None:
            raise ValueError("step_labels needs PolicyState.ref_params (the completer), which is None; build the state "
                             "with the collector (steps.init_state(..., collector=...))")
        model = nnx.merge(ctx.graphdef, sharding.reshard_for_rollout(state.ref_params))
        prompt_bp, valid_bp = sharding.constrain_batch((data["prompt_bp"], data["prompt_valid_bp"]), rollout=True)
        out = step_label_rollout(model, prompt_bp, valid_bp, data["answer_ba"], data["answer_valid_ba"], rng,
                                 ctx.sampling, samples=g, continuations=continuations, max_steps=max_steps,
                                 separator=separator, reward_fn=reward_fn)
        batch = group_rows(data, out.tokens_bn, out.mask_bn, out.logp_bn, g, 0)
        answers = repeat_rows(data["answer_ba"], g), repeat_rows(data["answer_valid_ba"], g)
        reward_b = reward_fn(batch.response_bt, batch.mask_bt, *answers)
        label_bk = jnp.where(out.last_bk, reward_b[:, None], out.mc_label_bk)
        batch = batch.replace(reward_b=reward_b, aux={STEP_END: out.step_end_bk, STEP_LABEL: label_bk})
        return batch, cstate, {**rollout_metrics(batch), **label_metrics(out.step_end_bk, label_bk)}

    def example(prompts):
        f32, i32 = jnp.float32, jnp.int32
        return shapes(prompts * g, task.max_prompt_len, n, g, reward_b=f32, group_b=i32, behavior_logp_bt=f32,
                      version_b=i32, aux={STEP_END: ((max_steps,), i32), STEP_LABEL: ((max_steps,), f32)})

    return Collector(init=lambda prompts: (), collect=collect, example=example, needs=frozenset({"reference"}))

"""DED's distillation data: a teacher chosen by what it does for the student, and several
distinct right trajectories per question.

DED ("Beyond Scaling Law: A Data-Efficient Distillation Framework for Reasoning", arXiv
2508.09883) builds a small distillation corpus from three observations: a teacher's own benchmark
score does not say how much a student learns from it, so the teacher is chosen by a quick
distillation test on the student; the corpus is curated (verified, small) rather than scaled; and
several diverse reasoning trajectories per question teach more robust reasoning than one.

Teacher selection (``probe``): at each of the first ``select_steps`` steps the step's P prompts
are split in two halves, A (the first ⌊P/2⌋) and B. For every teacher m of the pool, its corpus
rows for A (below) distil a copy of the student, θ_m = θ after ``probe_steps`` Adam steps (rate
``probe_lr``) on the token-mean negative log-likelihood of those rows, and the copy answers B:

    gain_m = acc(θ_m; B) − acc(θ; B),

the fraction of right answers among ``probe_samples`` samples per prompt of B (the run's
sampling; every copy and θ itself draw with the same key: common random numbers). The gains are
summed over the probe steps and the selected teacher is argmax_m Σ gain_m (ties: pool order); it
is fixed after the last probe step.

Corpus (``diverse_subset``): the selected teacher samples S = ``samples`` answers per prompt; the
verifier keeps the right ones (reward ≥ 1); of those, up to k = ``keep`` are chosen greedily by
farthest point: the first right sample, then each time the right sample whose smallest token
edit distance (``ops.edit_distance``) to those already chosen is largest, as long as it is > 0
(a copy of a chosen answer is never taken twice); ties go to the earlier sample. A prompt with
fewer than k distinct right samples fills fewer rows (the others have an all-zero mask), one
without any fills none.

INFERRED (the method section was not available; the abstract and summaries state the three
ideas, and that the teacher is chosen by a quick distillation test on a small "smoke" set of
questions): (1) the smoke set is half of each probe step's prompts and the student's gain is
measured on the other half, by sampled accuracy; (2) "curated" is taken as verified (only right
trajectories) and "diverse" as greedy max-min token edit distance; (3) the corpus is sampled
afresh each step from the step's prompts (an online corpus of the same construction), not
collected once before training.

Rows: P groups of k rows (``group_b`` the prompt), the teacher's samples with their log-probs
(``behavior_logp_bt``) and rewards, ``source_b = TEACHER``, ``version_b = 0``. The student's own
samples are never drawn: the inner collector only fixes the prompts' shapes (a device
collector, e.g. ``group_samples``).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from polrl import ops
from polrl.collectors.context import Context, check_named_model, named_model, repeat_rows, shapes
from polrl.collectors.group_samples import device_reward
from polrl.core import TEACHER, Batch, Collector
from polrl.rollout import sample
from polrl.train.steps import score

_FAR = jnp.iinfo(jnp.int32).max


def diverse_subset(distance_ss: jax.Array, right_s: jax.Array, keep: int) -> tuple[jax.Array, jax.Array]:
    """(index_k int32, filled_k bool): up to ``keep`` of the S samples of one prompt, chosen
    greedily among the right ones (``right_s``) by the largest smallest distance
    (``distance_ss``, int) to those already chosen, which must be > 0; the first pick is the
    first right sample, ties go to the lower index. Unfilled slots repeat index 0."""
    def pick(carry, _):
        chosen_s, nearest_s = carry
        score_s = jnp.where(right_s & ~chosen_s & (nearest_s > 0), nearest_s, -1)
        index = jnp.argmax(score_s)
        filled = score_s[index] >= 0
        chosen_s = chosen_s.at[index].set(chosen_s[index] | filled)
        nearest_s = jnp.where(filled, jnp.minimum(nearest_s, distance_ss[index]), nearest_s)
        return (chosen_s, nearest_s), (jnp.where(filled, index, 0).astype(jnp.int32), filled)

    start = (jnp.zeros_like(right_s), jnp.full(right_s.shape, _FAR, jnp.int32))
    _, (index_k, filled_k) = jax.lax.scan(pick, start, None, length=keep)
    return index_k, filled_k


def distinct_right(distance_ss: jax.Array, right_s: jax.Array) -> jax.Array:
    """int32 []: how many different right answers the S samples hold."""
    earlier = jnp.tril(jnp.ones(distance_ss.shape, bool), k=-1)
    repeats = (earlier & (distance_ss == 0) & right_s[None, :]).any(axis=1)
    return (right_s & ~repeats).sum().astype(jnp.int32)


def verified_samples(ctx: Context, graphdef, params, data: dict, rng, samples: int):
    """(``SampleOutput``, float mask, reward) of ``samples`` samples per prompt of ``data`` from the
    model ``(graphdef, params)`` at the run's sampling, scored by the task's device reward."""
    out = sample(graphdef, params, data["prompt_bp"], data["prompt_valid_bp"], rng, ctx.sampling, samples)
    mask = out.mask_bt.astype(jnp.float32)
    reward = device_reward(ctx, out.response_bt, mask, repeat_rows(data["answer_ba"], samples),
                           repeat_rows(data["answer_valid_ba"], samples))
    return out, mask, reward


def corpus_rows(ctx: Context, graphdef, params, data: dict, rng, samples: int, keep: int) -> tuple[Batch, dict]:
    """The corpus rows of one teacher ``(graphdef, params)`` for the prompts of ``data`` (module
    docstring) and their statistics: ``corpus/teacher_accuracy`` (right fraction of all its
    samples), ``corpus/solved_frac`` (prompts with a right sample), ``corpus/distinct_right``
    (different right answers per prompt), ``corpus/rows_frac`` (filled rows of P·k) and
    ``corpus/distance_mean`` (mean edit distance between the rows of a prompt, over the prompts
    with two or more)."""
    p, s, k = data["prompt_bp"].shape[0], samples, keep
    out, mask, reward = verified_samples(ctx, graphdef, params, data, rng, s)
    tokens_pst = out.response_bt.reshape(p, s, -1)
    length_ps = mask.sum(axis=1).astype(jnp.int32).reshape(p, s)
    right_ps = (reward >= 1.0).reshape(p, s)
    distance = jax.vmap(ops.pairwise_edit_distance)(tokens_pst, length_ps)
    index_pk, filled_pk = jax.vmap(lambda d, r: diverse_subset(d, r, k))(distance, right_ps)
    rows_b = (jnp.arange(p)[:, None] * s + index_pk).reshape(-1)
    filled_b = filled_pk.reshape(-1)
    batch = Batch(
        prompt_bp=repeat_rows(data["prompt_bp"], k), prompt_valid_bp=repeat_rows(data["prompt_valid_bp"], k),
        response_bt=jnp.where(filled_b[:, None], out.response_bt[rows_b], ctx.pad_id),
        mask_bt=mask[rows_b] * filled_b[:, None],
        reward_b=jnp.where(filled_b, reward[rows_b], 0.0),
        group_b=jnp.arange(p * k, dtype=jnp.int32) // k,
        behavior_logp_bt=(out.logp_bt.astype(jnp.float32) * mask)[rows_b] * filled_b[:, None],
        source_b=jnp.full((p * k,), TEACHER, jnp.int32), version_b=jnp.zeros((p * k,), jnp.int32), group_size=k)
    pair_k = jax.vmap(lambda d, i: d[i][:, i])(distance, index_pk).astype(jnp.float32)
    both = (filled_pk[:, :, None] & filled_pk[:, None, :] & ~jnp.eye(k, dtype=bool)).astype(jnp.float32)
    multi = (filled_pk.sum(axis=1) >= 2).astype(jnp.float32)
    per_prompt = (pair_k * both).sum(axis=(1, 2)) / jnp.maximum(both.sum(axis=(1, 2)), 1.0)
    stats = {"corpus/teacher_accuracy": right_ps.astype(jnp.float32).mean(),
             "corpus/solved_frac": right_ps.any(axis=1).astype(jnp.float32).mean(),
             "corpus/distinct_right": jax.vmap(distinct_right)(distance, right_ps).astype(jnp.float32).mean(),
             "corpus/rows_frac": filled_pk.astype(jnp.float32).mean(),
             "corpus/distance_mean": (per_prompt * multi).sum() / jnp.maximum(multi.sum(), 1.0)}
    return batch, stats


def nll(graphdef, params, rows: Batch) -> jax.Array:
    """The token-mean negative log-likelihood of the rows' responses (SFT's loss)."""
    logp = score(graphdef, params, rows)["logp_bt"]
    return -ops.masked_mean(logp, rows.mask_bt)


def quick_distillation(graphdef, params, rows: Batch, steps: int, learning_rate: float):
    """θ after ``steps`` Adam steps (``learning_rate``) on ``nll`` of ``rows``."""
    opt = optax.adam(learning_rate)

    def step(carry, _):
        theta, opt_state = carry
        grads = jax.grad(lambda t: nll(graphdef, t, rows))(theta)
        updates, opt_state = opt.update(grads, opt_state, theta)
        return (optax.apply_updates(theta, updates), opt_state), None

    (theta, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return theta


def sampled_accuracy(ctx: Context, params, data: dict, rng, samples: int) -> jax.Array:
    """The fraction of right answers among ``samples`` samples per prompt of the student with
    parameters ``params``."""
    reward = verified_samples(ctx, ctx.graphdef, params, data, rng, samples)[2]
    return (reward >= 1.0).astype(jnp.float32).mean()


def with_distilled_corpus(teachers: Sequence[str], *, samples: int = 8, keep: int = 4, select_steps: int = 4,
                          probe_steps: int = 8, probe_lr: float = 1e-3, probe_samples: int = 8):
    """``(collector, context) -> collector``: DED's corpus (module docstring) in place of the
    student's samples. ``teachers``: the pool, names of frozen models of the run
    (``config.models``) sharing the student's tokenizer; ``samples``: S answers drawn per prompt
    from the selected teacher; ``keep``: k, the most rows per prompt; ``select_steps``: the
    steps that probe every teacher (0: the first teacher, no probe); ``probe_steps`` /
    ``probe_lr``: the quick distillation; ``probe_samples``: samples per held-back prompt.

    State: ``teacher`` (the selected index), ``gain_sum`` [M] and ``probes`` (steps probed).
    Metrics: ``corpus_rows``'s, ``ded/teacher``, ``ded/probing`` (1 on a probe step),
    ``ded/{name}_gain`` (each teacher's mean gain so far), ``response_tokens`` and
    ``response_length`` (of the filled rows).
    """
    names = tuple(teachers)
    if not names or len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"ded: teachers={teachers!r} must be distinct names of frozen models of the run "
                         f"(config.models), e.g. ('large', 'small')")
    for field, value in (("samples", samples), ("keep", keep), ("probe_steps", probe_steps),
                         ("probe_samples", probe_samples)):
        if value < 1:
            raise ValueError(f"ded: {field}={value} must be >= 1")
    if keep > samples:
        raise ValueError(f"ded: keep={keep} is more than samples={samples}; keep at most the samples drawn per prompt")
    if select_steps < 0:
        raise ValueError(f"ded: select_steps={select_steps} must be >= 0 (0: the first teacher, no probe)")
    if not probe_lr > 0.0:
        raise ValueError(f"ded: probe_lr={probe_lr} must be > 0")

    def wrap(inner: Collector, ctx: Context) -> Collector:
        if inner.host or ctx.task.device_reward is None:
            raise ValueError("ded: the corpus is verified inside the compiled step; use a task with a device reward "
                             "and a device collector (group_samples)")
        for name in names:
            check_named_model(ctx, name, "ded: teachers", value_head=False)

        def teacher_rows(state, data, rng, m):
            graphdef, params = named_model(ctx, state, names[m], "ded")
            return corpus_rows(ctx, graphdef, params, data, rng, samples, keep)

        def probe(cstate, state, data, rng):
            p = data["prompt_bp"].shape[0]
            if p < 2:
                raise ValueError(f"ded: probing a teacher splits the step's prompts in two; rollout.batch_size gives "
                                 f"{p} prompt(s) per step, use at least 2 (or select_steps=0)")
            half = p // 2
            smoke = jax.tree.map(lambda x: x[:half], data)
            held = jax.tree.map(lambda x: x[half:], data)
            eval_rng = jax.random.fold_in(rng, len(names))
            before = sampled_accuracy(ctx, state.params, held, eval_rng, probe_samples)
            gains = []
            for m in range(len(names)):
                rows, _ = teacher_rows(state, smoke, jax.random.fold_in(rng, m), m)
                theta = quick_distillation(ctx.graphdef, state.params, rows, probe_steps, probe_lr)
                gains.append(sampled_accuracy(ctx, theta, held, eval_rng, probe_samples) - before)
            gain_sum = cstate["gain_sum"] + jnp.stack(gains)
            return {"teacher": jnp.argmax(gain_sum).astype(jnp.int32), "gain_sum": gain_sum,
                    "probes": cstate["probes"] + 1}

        def collect(cstate, state, data, rng):
            data = {key: v for key, v in data.items() if key != "examples"}
            probe_rng, rng = jax.random.split(rng)
            probing = cstate["probes"] < select_steps
            if select_steps:
                cstate = jax.lax.cond(probing, lambda cs: probe(cs, state, data, probe_rng), lambda cs: cs, cstate)
            branches = [lambda r, m=m: teacher_rows(state, data, r, m) for m in range(len(names))]
            batch, stats = jax.lax.switch(cstate["teacher"], branches, rng)
            length = batch.mask_bt.sum(axis=1)
            filled = (length > 0).astype(jnp.float32)
            probes = jnp.maximum(cstate["probes"], 1).astype(jnp.float32)
            metrics = {**stats, "ded/teacher": cstate["teacher"].astype(jnp.float32),
                       "ded/probing": probing.astype(jnp.float32), "response_tokens": length.sum(),
                       "response_length": (length * filled).sum() / jnp.maximum(filled.sum(), 1.0),
                       **{f"ded/{name}_gain": cstate["gain_sum"][m] / probes for m, name in enumerate(names)}}
            return batch, cstate, metrics

        def init(prompts):
            del prompts
            return {"teacher": jnp.zeros((), jnp.int32), "gain_sum": jnp.zeros((len(names),), jnp.float32),
                    "probes": jnp.zeros((), jnp.int32)}

        def example(prompts):
            f32, i32 = jnp.float32, jnp.int32
            return shapes(prompts * keep, ctx.task.max_prompt_len, ctx.sampling.max_new_tokens, keep, reward_b=f32,
                          group_b=i32, behavior_logp_bt=f32, source_b=i32, version_b=i32)

        return inner._replace(init=init, collect=collect, example=example, needs=frozenset())

    return wrap

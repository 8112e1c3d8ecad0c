"""G samples per prompt from the policy, scored by the task's verifier."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from polrl import sharding
from polrl.collectors.context import (Context, check_rewards_shape, check_sampler, group_rows, host_rows, reads_reference,
                                      repeat_rows, row_source, sampler, shapes)
from polrl.core import GUIDED, SOURCE_NAMES, TEACHER, Batch, Collector, own_rows
from polrl.rollout import SampleOutput, engine, sample
from polrl.tasks import check_rewards



def rollout_metrics(batch: Batch) -> dict:
    """Reward, accuracy (reward ≥ 1), length and token counts of the policy's samples.

    Only the policy's unaided rows count (``core.own_rows``): expert, teacher and guided rows are
    left out of the reward/accuracy/length statistics; with ``source_b``, teacher and guided rows
    get their own ``teacher_reward_mean`` / ``teacher_accuracy`` / ``guided_…`` (0 without such rows).
    ``response_length_correct`` / ``_incorrect`` are the mean lengths of the right and the wrong
    samples (0 when a step has none: weight a step's value by ``accuracy`` / 1 − ``accuracy``
    to average over steps), the quantity length-bias claims are about.
    """
    length_b = batch.mask_bt.sum(-1)
    rows_b = own_rows(batch)
    mean = lambda x, w=rows_b: (x * w).sum() / jnp.maximum(w.sum(), 1.0)
    correct_b = (batch.reward_b >= 1.0).astype(jnp.float32)
    guided = {}
    if batch.source_b is not None:  # teacher and guided rows' own figures, beside the policy's
        for source in (TEACHER, GUIDED):
            w = (batch.source_b == source).astype(jnp.float32)
            guided[f"{SOURCE_NAMES[source]}_reward_mean"] = mean(batch.reward_b, w)
            guided[f"{SOURCE_NAMES[source]}_accuracy"] = mean(correct_b, w)
    return {
        **guided,
        "reward_mean": mean(batch.reward_b),
        "accuracy": mean(correct_b),
        "response_length": mean(length_b),
        "response_length_correct": mean(length_b, rows_b * correct_b),
        "response_length_incorrect": mean(length_b, rows_b * (1.0 - correct_b)),
        "response_tokens": length_b.sum(),
        "reward_finite": jnp.isfinite(batch.reward_b).all(),
    }


def device_reward(ctx: Context, response_bt, mask_bt, answer_ba, answer_valid_ba):
    """The task's jittable reward of every row, checked to be one float per row."""
    reward_fn = ctx.task.device_reward
    reward = reward_fn(response_bt, mask_bt, answer_ba, answer_valid_ba)
    check_rewards_shape(reward, response_bt.shape[0], getattr(reward_fn, "__name__", repr(reward_fn)))
    return reward.astype(jnp.float32)


def group_samples(ctx: Context, *, group_size: int | None = None, policy: str = "current",
                  slots: int = 0) -> Collector:
    """G samples per prompt (G = ``group_size``, default the run's ``rollout.group_size``).

    Each prompt is prefilled once and forked into G slots (``polrl.rollout.sample``); row
    ``k·G + j`` is sample j of prompt k, ``group_b`` = k. With ``slots`` > 0 the P·G samples are
    decoded by continuous batching through that many slots (``engine.serve``: a finished
    sample's slot takes the next one), which pays when lengths are long-tailed; the samples are
    then drawn with per-request randomness (other draws than the lockstep decode's). The rows carry the sampler's
    log-probs (``behavior_logp_bt``) and ``version_b`` = the policy's step; ``policy =
    "reference"`` samples from the frozen reference instead, and the name of one of the run's
    frozen models (``config.models``: a teacher) from that model (version 0, ``source_b`` = TEACHER). Rewards come from the
    task's device reward inside the compiled step, or — for a task with only a host reward —
    from decoding the samples and scoring the strings on the host (``host = True``: sampling
    and the update then run as two compiled calls with the verifier between them).

    Metrics: ``reward_mean``, ``accuracy``, ``response_length``, ``response_tokens`` (of the
    sampled rows).
    """
    g = ctx.group_size if group_size is None else group_size
    if g < 1:
        raise ValueError(f"group_samples: group_size={g} must be >= 1")
    check_sampler(ctx, policy, "group_samples: policy")
    if slots < 0:
        raise ValueError(f"group_samples: slots={slots} must be >= 0 (0: lockstep decode of every row)")
    task, sampling = ctx.task, ctx.sampling
    on_host = task.device_reward is None

    def draw(state, data, rng):
        graphdef, params, version = sampler(ctx, state, policy, "group_samples")
        if slots:
            out = served(graphdef, params, data["prompt_bp"], data["prompt_valid_bp"], rng)
        else:
            out = sample(graphdef, params, data["prompt_bp"], data["prompt_valid_bp"], rng, sampling, g)
        return group_rows(data, out.response_bt, out.mask_bt, out.logp_bt, g, version, source=row_source(policy))

    def served(graphdef, params, prompt_bp, valid_bp, rng):
        model = nnx.merge(graphdef, sharding.reshard_for_rollout(params))
        bank = engine.extend(model, engine.init_slots(model, prompt_bp.shape[0], prompt_bp.shape[1]), prompt_bp, valid_bp)
        requests = jnp.arange(prompt_bp.shape[0] * g, dtype=jnp.int32) // g
        out = engine.serve(model, bank, requests, rng, sampling, num_slots=slots)
        return SampleOutput(response_bt=out.tokens_sn, logp_bt=out.logp_sn, mask_bt=out.mask_sn, length_b=out.length_s)

    def with_reward(batch, reward_b):
        batch = batch.replace(reward_b=reward_b)
        return batch, rollout_metrics(batch)

    if not on_host:
        def collect(cstate, state, data, rng):
            batch = draw(state, data, rng)
            answers = repeat_rows(data["answer_ba"], g), repeat_rows(data["answer_valid_ba"], g)
            reward = device_reward(ctx, batch.response_bt, batch.mask_bt, *answers)
            batch, metrics = with_reward(batch, reward)
            return batch, cstate, metrics
    else:
        arrays = lambda data: {k: v for k, v in data.items() if k != "examples"}
        draw_jit = ctx.layout.jit(lambda state, data, rng: draw(state, data, rng),
                                  ("state", "batch", "replicated"), "batch")
        metrics_jit = ctx.layout.jit(with_reward, ("batch", "batch"), ("batch", "replicated"))

        def collect(cstate, state, data, rng):
            batch = draw_jit(state, arrays(data), rng)
            # This process's rows answer its own examples (the batch is split by process, in order).
            completions = task.tokenizer.decode_batch(host_rows(ctx, batch.response_bt))
            examples = [e for e in data["examples"] for _ in range(g)]
            reward = np.asarray(task.host_reward(completions, examples), np.float32)
            check_rewards(reward, len(examples), getattr(task.host_reward, "__name__", "host_reward"))
            reward_b = ctx.layout.from_process_rows(reward, batch.batch_size)
            batch, metrics = metrics_jit(batch, reward_b)
            return batch, cstate, metrics

    def example(prompts):
        f32, i32 = jnp.float32, jnp.int32
        source = {} if row_source(policy) is None else {"source_b": i32}
        return shapes(prompts * g, task.max_prompt_len, sampling.max_new_tokens, g, reward_b=f32,
                      group_b=i32, behavior_logp_bt=f32, version_b=i32, **source)

    return Collector(init=lambda prompts: (), collect=collect, example=example, needs=reads_reference(policy),
                     host=on_host)

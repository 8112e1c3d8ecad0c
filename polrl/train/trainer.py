"""The trainer: phases of (batch builder → algorithm) with eval, metrics and checkpoints.

A run is a list of phases, e.g. an SFT warm start on a fixed set of labelled demonstrations,
then GRPO on prompts only. Each phase owns a PolicyState, a data position and a checkpoint
directory ``WORKDIR/checkpoints/<phase>``; a relaunch with the same workdir restores the latest
complete checkpoint of the unfinished phase and reuses the final parameters of finished ones.

Per step, everything runs in one jitted call (rollout → reward → reference log-probs →
prepare → epochs × minibatches of updates) when the task has a device reward; with a host
reward the rollout and the update are two jitted calls with the verifier in between.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from polrl.core import Algorithm, Batch
from polrl.rollout import SamplingConfig, make_sampler
from polrl.tasks import BatchIterator, Task, check_rewards, task_batch
from polrl.train import checkpoint, metrics as metrics_lib, rollouts, steps

BATCH_KINDS = ("demonstrations", "rollouts", "preference_pairs")


@dataclasses.dataclass(frozen=True)
class Phase:
    """One stage of a run.

    Attributes:
      name: used in metrics (``phase``) and the checkpoint directory.
      algorithm: what to optimize.
      batches: how batches are built: ``demonstrations`` (labelled answers, SFT),
        ``rollouts`` (G policy samples per prompt, scored by the verifier) or
        ``preference_pairs`` (best vs worst of G samples from the frozen reference).
      steps: update iterations.
      prompts_per_step: prompts (or demonstrations) per step.
      source: the examples this phase reads (a random-access sequence of dicts).
    """

    name: str
    algorithm: Algorithm
    batches: str
    steps: int
    prompts_per_step: int
    source: Sequence[dict]

    def __post_init__(self):
        if self.batches not in BATCH_KINDS:
            raise ValueError(f"phase {self.name!r}: batches={self.batches!r}; use one of {BATCH_KINDS}")
        if self.steps < 0:
            raise ValueError(f"phase {self.name!r}: steps must be >= 0, got {self.steps}")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything static about a run (built from a config by ``polrl.launch``)."""

    task: Task
    graphdef: Any
    init_params: Any
    phases: tuple[Phase, ...]
    sampling: SamplingConfig
    group_size: int
    seed: int
    eval_every: int
    checkpoint_every: int
    eval_examples: int
    eval_batch_size: int
    log_every: int = 1
    progress: bool = True


def validate(spec: RunSpec) -> None:
    """Checks impossible combinations before anything compiles, with the field to fix."""
    task, sampling = spec.task, spec.sampling
    model_len = _model_max_len(spec)
    if task.max_prompt_len + sampling.max_new_tokens > model_len:
        raise ValueError(
            f"prompt ({task.max_prompt_len} tokens) + rollout.max_new_tokens ({sampling.max_new_tokens}) "
            f"exceeds model.max_len={model_len}; raise model.max_len or lower rollout.max_new_tokens"
        )
    if task.max_answer_len > sampling.max_new_tokens:
        raise ValueError(
            f"rollout.max_new_tokens={sampling.max_new_tokens} is shorter than the task's longest answer "
            f"({task.max_answer_len} tokens incl. EOS); raise rollout.max_new_tokens"
        )
    for ph in spec.phases:
        rows = ph.prompts_per_step * (1 if ph.batches == "demonstrations" else spec.group_size)
        if ph.batches == "preference_pairs":
            rows = 2 * ph.prompts_per_step
        if rows % ph.algorithm.num_minibatches:
            raise ValueError(
                f"phase {ph.name!r}: {rows} sequences per step are not divisible by "
                f"num_minibatches={ph.algorithm.num_minibatches}; change the batch size or num_minibatches"
            )
        if ph.batches != "demonstrations" and spec.group_size < 2:
            raise ValueError(f"phase {ph.name!r}: rollout.group_size must be >= 2 for group-relative batches")
        if ph.batches == "rollouts" and task.device_reward is not None:
            _check_device_reward(task, rows * ph.algorithm.batch.oversample, sampling.max_new_tokens)
        _check_batch_composition(ph, task, spec.group_size)


def _check_batch_composition(phase: Phase, task: Task, group_size: int) -> None:
    """The algorithm's ``BatchSpec`` / needs against the phase's batches and the task."""
    compose, needs = phase.algorithm.batch, phase.algorithm.needs
    special = compose.expert_per_group or compose.oversample != 1 or "greedy_baseline" in needs
    if not special:
        return
    if phase.batches != "rollouts":
        raise ValueError(
            f"phase {phase.name!r}: expert rows, dynamic sampling and greedy baselines apply to "
            f"batches='rollouts', not {phase.batches!r}"
        )
    if task.device_reward is None:
        raise ValueError(
            f"phase {phase.name!r}: expert rows, dynamic sampling and greedy baselines need a task "
            f"with a device reward; task {task.name!r} has only a host reward"
        )
    if not 0 <= compose.expert_per_group < group_size:
        raise ValueError(
            f"phase {phase.name!r}: the algorithm's expert_per_group={compose.expert_per_group} must be "
            f"below rollout.group_size={group_size} (at least one policy sample per group)"
        )
    if compose.oversample < 1:
        raise ValueError(f"phase {phase.name!r}: the algorithm's oversample={compose.oversample} must be >= 1")


def _model_max_len(spec: RunSpec) -> int:
    model = nnx.merge(spec.graphdef, spec.init_params)
    return model.config.max_len


def _check_device_reward(task: Task, rows: int, n: int) -> None:
    shapes = (
        jax.ShapeDtypeStruct((rows, n), jnp.int32),
        jax.ShapeDtypeStruct((rows, n), jnp.float32),
        jax.ShapeDtypeStruct((rows, task.max_answer_len), jnp.int32),
        jax.ShapeDtypeStruct((rows, task.max_answer_len), jnp.bool_),
    )
    out = jax.eval_shape(task.device_reward, *shapes)
    if getattr(out, "shape", None) != (rows,):
        name = getattr(task.device_reward, "__name__", repr(task.device_reward))
        raise ValueError(
            f"task {task.name!r}: device reward {name} returns shape {getattr(out, 'shape', out)}, "
            f"expected [{rows}] (one reward per sequence); fix the reward function"
        )


def _device_data(data: dict) -> dict:
    return {k: jnp.asarray(v) for k, v in data.items() if k != "examples"}


class Trainer:
    """Runs the phases of a ``RunSpec`` in ``workdir``."""

    def __init__(self, spec: RunSpec, workdir: str):
        validate(spec)
        self.spec = spec
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.writer = metrics_lib.MetricWriter(self.workdir)
        sampling = spec.sampling
        self._greedy = make_sampler(spec.graphdef, dataclasses.replace(sampling, temperature=0.0))
        self._eval_data = task_batch(spec.task, [spec.task.test[i] for i in range(min(spec.eval_examples, len(spec.task.test)))])

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, params) -> dict:
        """Greedy exact-match accuracy on the first ``eval_examples`` held-out prompts."""
        task, bs = self.spec.task, self.spec.eval_batch_size
        data = self._eval_data
        n = len(data["examples"])
        rewards = []
        for start in range(0, n, bs):
            chunk = {k: v[start : start + bs] for k, v in data.items()}
            size = len(chunk["examples"])
            padded = {k: np.concatenate([v, np.repeat(v[-1:], bs - size, 0)]) for k, v in chunk.items() if k != "examples"}
            out = self._greedy(params, jnp.asarray(padded["prompt_bp"]), jnp.asarray(padded["prompt_valid_bp"]), jax.random.PRNGKey(0))
            if task.device_reward is not None:
                r = np.asarray(task.device_reward(out.response_bt, out.mask_bt, jnp.asarray(padded["answer_ba"]), jnp.asarray(padded["answer_valid_ba"])))
            else:
                r = task.host_reward(task.tokenizer.decode_batch(np.asarray(out.response_bt)), chunk["examples"] + [chunk["examples"][-1]] * (bs - size))
            rewards.append(np.asarray(r)[:size])
        r = np.concatenate(rewards)
        return {"eval/accuracy": float((r >= 1.0).mean()), "eval/reward": float(r.mean())}

    # ---------------------------------------------------------------- step functions
    def _step_fn(self, phase: Phase) -> Callable:
        """``(state, data, examples) -> (state, metrics)`` for a phase.

        One jitted call per step, except with a host verifier (``examples`` feed it).
        """
        spec = self.spec
        algo, graphdef = phase.algorithm, spec.graphdef
        train = functools.partial(steps.train_on_batch, algorithm=algo, graphdef=graphdef, temperature=_train_temperature(spec.sampling))
        pad_id = spec.task.tokenizer.pad_id
        if phase.batches == "demonstrations":

            def sft_step(state, data):
                batch = rollouts.demonstration_batch(data, pad_id=pad_id)
                state, m = train(state, batch)
                m["response_tokens"] = batch.mask_bt.sum()
                return state, m

            return _ignore_examples(jax.jit(sft_step, donate_argnums=0))

        rollout = functools.partial(
            rollouts.group_rollout, graphdef=graphdef, sampling=spec.sampling, group_size=spec.group_size
        )
        compose = algo.batch
        if phase.batches == "preference_pairs":
            reward_fn = spec.task.device_reward
            if reward_fn is None:
                raise ValueError(f"phase {phase.name!r}: preference_pairs needs a task with a device reward")

            def pair_step(state, data):
                rng, sample_rng = jax.random.split(state.rng)
                state = state.replace(rng=rng)
                batch = rollout(state.ref_params, data, sample_rng, reward_fn=reward_fn)
                m = rollouts.rollout_metrics(batch)
                state, tm = train(state, rollouts.preference_pairs(batch, group_size=spec.group_size))
                return state, {**m, **tm}

            return _ignore_examples(jax.jit(pair_step, donate_argnums=0))

        if spec.task.device_reward is not None:

            def rl_step(state, data):
                rng, sample_rng = jax.random.split(state.rng)
                state = state.replace(rng=rng)
                batch = rollout(
                    state.params, data, sample_rng, reward_fn=spec.task.device_reward,
                    expert_per_group=compose.expert_per_group, version=state.step,
                    greedy_baseline="greedy_baseline" in algo.needs,
                )
                m = rollouts.rollout_metrics(batch)
                if compose.oversample > 1:
                    batch, dm = rollouts.keep_informative_groups(batch, phase.prompts_per_step)
                    m = {**m, **dm}
                state, tm = train(state, batch)
                return state, {**m, **tm}

            return _ignore_examples(jax.jit(rl_step, donate_argnums=0))

        # Host verifier: rollout (jit) → rewards on the host → train (jit).
        def sample_step(state, data):
            rng, sample_rng = jax.random.split(state.rng)
            return state.replace(rng=rng), rollout(state.params, data, sample_rng, reward_fn=None)

        def update_step(state, batch):
            state, tm = train(state, batch)
            return state, {**rollouts.rollout_metrics(batch), **tm}

        sample_jit = jax.jit(sample_step, donate_argnums=0)
        update_jit = jax.jit(update_step, donate_argnums=0)
        task = spec.task

        def host_step(state, data, examples):
            state, batch = sample_jit(state, data)
            completions = task.tokenizer.decode_batch(np.asarray(batch.response_bt))
            rep = [e for e in examples for _ in range(spec.group_size)]
            reward = np.asarray(task.host_reward(completions, rep), np.float32)
            check_rewards(reward, batch.batch_size, getattr(task.host_reward, "__name__", "host_reward"))
            return update_jit(state, batch.replace(reward_b=jnp.asarray(reward)))

        return host_step

    def _example_batch(self, phase: Phase) -> Batch:
        """Shapes of the batches the phase's transforms see (for shape-dependent states)."""
        spec = self.spec
        rows = phase.prompts_per_step * (1 if phase.batches == "demonstrations" else spec.group_size)
        width = spec.task.max_answer_len if phase.batches == "demonstrations" else spec.sampling.max_new_tokens
        if phase.batches == "preference_pairs":
            rows = 2 * phase.prompts_per_step
        f32, i32 = jnp.float32, jnp.int32
        bt = lambda dtype: jax.ShapeDtypeStruct((rows, width), dtype)
        b = lambda dtype: jax.ShapeDtypeStruct((rows,), dtype)
        return Batch(
            prompt_bp=jax.ShapeDtypeStruct((rows, spec.task.max_prompt_len), i32),
            prompt_valid_bp=jax.ShapeDtypeStruct((rows, spec.task.max_prompt_len), jnp.bool_),
            response_bt=bt(i32), mask_bt=bt(f32), reward_b=b(f32), group_b=b(i32),
            behavior_logp_bt=bt(f32), source_b=b(i32), version_b=b(i32),
            group_size=1 if phase.batches == "demonstrations" else (2 if phase.batches == "preference_pairs" else spec.group_size),
        )

    # ---------------------------------------------------------------- the loop
    def run(self) -> dict:
        """Runs (or resumes) every phase; returns the last eval metrics of each phase.

        The final parameters are kept in ``self.params`` (e.g. to sample from the model).
        """
        spec = self.spec
        params = spec.init_params
        global_step = 0
        summary = {}
        rng = jax.random.PRNGKey(spec.seed)
        for index, phase in enumerate(spec.phases):
            rng, phase_rng = jax.random.split(rng)
            params, global_step, summary[phase.name] = self._run_phase(phase, index, params, global_step, phase_rng)
        self.params = params
        records = metrics_lib.read_metrics(self.writer.path)
        metrics_lib.plot_curves(records, os.path.join(self.workdir, "curves.png"))
        self.writer.close()
        return summary

    def _run_phase(self, phase: Phase, index: int, params, global_step: int, rng):
        spec = self.spec
        state = steps.init_state(params, phase.algorithm, rng, ref_params=params, example=self._example_batch(phase))
        ckpt = checkpoint.PhaseCheckpointer(os.path.join(self.workdir, "checkpoints", phase.name))
        position, start = 0, 0
        if ckpt.latest_step() is not None:
            state, position, global_step = ckpt.restore(state)
            start = int(state.step)
            if start >= phase.steps:
                ckpt.close()
                return state.params, global_step, {"resumed_complete": True}
        data_iter = BatchIterator(
            phase.source, phase.prompts_per_step * phase.algorithm.batch.oversample, task=spec.task,
            seed=spec.seed + 1000 * index, position=position,
        )
        step_fn = self._step_fn(phase)
        last_eval = {}
        if start == 0:
            last_eval = self.evaluate(state.params)
            self.writer.write({"step": global_step, "phase": phase.name, **last_eval})
        bar = tqdm(range(start, phase.steps), desc=phase.name, disable=not spec.progress, dynamic_ncols=True)
        for s in bar:
            data = next(data_iter)
            t0 = time.perf_counter()
            state, m = step_fn(state, _device_data(data), data["examples"])
            m = metrics_lib.to_python(jax.device_get(m))
            dt = time.perf_counter() - t0
            global_step += 1
            if "reward_finite" in m:
                if not m.pop("reward_finite"):
                    raise ValueError(
                        f"phase {phase.name!r} step {s + 1}: the reward function returned NaN or inf; "
                        f"make it return finite float rewards"
                    )
            record = {"step": global_step, "phase": phase.name, "phase_step": s + 1, **m,
                      "step_time_s": dt, "tokens_per_s": m.get("response_tokens", 0.0) / dt}
            done = s + 1 == phase.steps
            if spec.eval_every and ((s + 1) % spec.eval_every == 0 or done):
                last_eval = self.evaluate(state.params)
                record.update(last_eval)
            if (s + 1) % spec.log_every == 0 or done or "eval/accuracy" in record:
                self.writer.write(record)
            bar.set_postfix({k: f"{record[k]:.3g}" for k in ("reward_mean", "loss", "eval/accuracy") if k in record}, refresh=False)
            if done or (spec.checkpoint_every and (s + 1) % spec.checkpoint_every == 0):
                ckpt.save(s + 1, state, position=data_iter.position, global_step=global_step)
        bar.close()
        ckpt.close()
        return state.params, global_step, last_eval


def _ignore_examples(step_jit):
    return lambda state, data, examples: step_jit(state, data)


def _train_temperature(sampling: SamplingConfig) -> float:
    """The temperature log-probs are scored at: the sampler's (1 for greedy sampling)."""
    return sampling.temperature if sampling.temperature > 0 else 1.0

"""The trainer: phases of (batch builder → algorithm) with eval, metrics and checkpoints.

A run is a list of phases, e.g. an SFT warm start on a fixed set of labelled demonstrations,
then GRPO on prompts only. Each phase owns a PolicyState, a data position and a checkpoint
directory ``WORKDIR/checkpoints/<phase>``; a relaunch with the same workdir restores the latest
complete checkpoint of the unfinished phase and reuses the final parameters of finished ones.

Per step, everything runs in one jitted call (rollout → reward → reference log-probs →
prepare → epochs × minibatches of updates) when the task has a device reward; with a host
reward the rollout and the update are two jitted calls with the verifier in between.

Scale (``RunSpec.layout``, a ``polrl.sharding.Layout``; ``None`` = one device, as before):
the state lives in the update layout (FSDP × tensor), every jitted step has explicit in/out
shardings and donates the state, and the sampler reshards the weights to the rollout layout
inside the step. Multi-host: each process reads its own slice of every batch
(``BatchIterator`` shards) and the global batch is assembled with
``jax.make_array_from_process_local_data``; only process 0 writes metrics and plots.

Fault tolerance: checkpoints hold everything a phase's future depends on (see
``polrl.train.checkpoint``), so ``kill -9`` then relaunch reproduces an uninterrupted run step
for step, and ``metrics.jsonl`` is cut back to the restored checkpoint. SIGTERM saves a
checkpoint at the next step boundary and stops cleanly. Updates with a non-finite loss or
gradient are skipped inside the jitted step (``skipped_nonfinite``); ``max_nonfinite_steps``
such steps in a row stop the run (the streak restarts at 0 after a relaunch).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from polrl import sharding
from polrl.core import Algorithm, Batch
from polrl.rollout import SamplingConfig, make_sampler, sample
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
    layout: sharding.Layout | None = None  # mesh + rules; None = one device, no mesh
    max_nonfinite_steps: int = 5  # consecutive steps with skipped non-finite updates that stop the run


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
    _check_layout(spec)
    if spec.max_nonfinite_steps < 1:
        raise ValueError(f"guards.max_nonfinite_steps={spec.max_nonfinite_steps} must be >= 1")


def _check_layout(spec: RunSpec) -> None:
    """Under a mesh, every per-step batch (and the eval batch) splits evenly over the batch axes."""
    if spec.layout is None:
        return
    shards = spec.layout.batch_shards
    for ph in spec.phases:
        prompts = ph.prompts_per_step * ph.algorithm.batch.oversample
        if prompts % shards:
            field = "demos.batch_size" if ph.batches == "demonstrations" else "rollout.batch_size / rollout.group_size"
            raise ValueError(
                f"phase {ph.name!r}: {prompts} prompts per step do not split over mesh.data × mesh.fsdp = "
                f"{shards} batch shards; make {field} a multiple of {shards} or change the mesh"
            )
    if spec.eval_batch_size % shards:
        raise ValueError(
            f"eval.batch_size={spec.eval_batch_size} does not split over mesh.data × mesh.fsdp = {shards} "
            f"batch shards; make it a multiple of {shards}"
        )


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


class Trainer:
    """Runs the phases of a ``RunSpec`` in ``workdir``."""

    def __init__(self, spec: RunSpec, workdir: str):
        validate(spec)
        self.spec = spec
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.layout = spec.layout
        self.is_chief = jax.process_index() == 0  # the process that writes metrics and plots
        self.writer = metrics_lib.MetricWriter(self.workdir, active=self.is_chief)
        self.preempted = False
        self._stop_requested = False
        greedy = dataclasses.replace(spec.sampling, temperature=0.0)
        if self.layout is None:
            self._greedy = make_sampler(spec.graphdef, greedy)
        else:
            self._greedy = self.layout.jit(
                lambda params, prompt_bp, valid_bp, rng: sample(spec.graphdef, params, prompt_bp, valid_bp, rng, greedy),
                ("params", "batch", "batch", "replicated"), "batch")
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
            prompts = (padded["prompt_bp"], padded["prompt_valid_bp"])
            prompts = jax.tree.map(jnp.asarray, prompts) if self.layout is None else self.layout.from_global(prompts)
            out = self._greedy(params, *prompts, jax.random.PRNGKey(0))
            response_bt, mask_bt = sharding.to_host((out.response_bt, out.mask_bt))
            if task.device_reward is not None:
                r = np.asarray(task.device_reward(response_bt, mask_bt, jnp.asarray(padded["answer_ba"]), jnp.asarray(padded["answer_valid_ba"])))
            else:
                r = task.host_reward(task.tokenizer.decode_batch(response_bt), chunk["examples"] + [chunk["examples"][-1]] * (bs - size))
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

            return _ignore_examples(self._jit(sft_step))

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

            return _ignore_examples(self._jit(pair_step))

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

            return _ignore_examples(self._jit(rl_step))

        # Host verifier: rollout (jit) → rewards on the host → train (jit).
        def sample_step(state, data):
            rng, sample_rng = jax.random.split(state.rng)
            return state.replace(rng=rng), rollout(state.params, data, sample_rng, reward_fn=None)

        def update_step(state, batch):
            state, tm = train(state, batch)
            return state, {**rollouts.rollout_metrics(batch), **tm}

        sample_jit = self._jit(sample_step, out_kinds=("state", "batch"))
        update_jit = self._jit(update_step)
        task = spec.task

        def host_step(state, data, examples):
            state, batch = sample_jit(state, data)
            # This process's rows answer its own examples (the batch is split by process, in order).
            completions = task.tokenizer.decode_batch(self._local_rows(batch.response_bt))
            rep = [e for e in examples for _ in range(spec.group_size)]
            reward = np.asarray(task.host_reward(completions, rep), np.float32)
            check_rewards(reward, len(rep), getattr(task.host_reward, "__name__", "host_reward"))
            return update_jit(state, batch.replace(reward_b=self._global_rows(reward, batch.batch_size)))

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

    # ---------------------------------------------------------------- devices and hosts
    def _jit(self, step: Callable, out_kinds=("state", "replicated")) -> Callable:
        """``step(state, batch_like) -> outs`` jitted with the state donated; under a mesh with
        explicit shardings (state in the update layout, batch split over data × fsdp)."""
        if self.layout is None:
            return jax.jit(step, donate_argnums=0)
        return self.layout.jit(step, ("state", "batch"), out_kinds, donate_argnums=(0,))

    def _data_shard(self, rows: int) -> tuple[int, int]:
        """``(shard_index, shard_count)`` of the rows of a step's batch this process reads."""
        if self.layout is None:
            return 0, 1
        start, stop = self.layout.process_rows(rows)
        return start // (stop - start), rows // (stop - start)

    def _device_data(self, data: dict, rows: int) -> dict:
        """This process's slice of the step's prompts as (global) device arrays."""
        arrays = {k: v for k, v in data.items() if k != "examples"}
        if self.layout is None:
            return {k: jnp.asarray(v) for k, v in arrays.items()}
        return self.layout.from_process_rows(arrays, rows)

    def _local_rows(self, x) -> np.ndarray:
        return np.asarray(x) if self.layout is None else self.layout.local_rows(x)

    def _global_rows(self, local: np.ndarray, rows: int):
        return jnp.asarray(local) if self.layout is None else self.layout.from_process_rows(local, rows)

    # ---------------------------------------------------------------- the loop
    def run(self) -> dict:
        """Runs (or resumes) every phase; returns the last eval metrics of each phase.

        The final parameters are kept in ``self.params`` (e.g. to sample from the model).
        SIGTERM (preemption) makes the run save a checkpoint at the next step boundary and
        return early with ``self.preempted = True``; a relaunch resumes from there.
        """
        spec = self.spec
        params = spec.init_params
        global_step = 0
        summary = {}
        self._lines_done = 0  # metrics.jsonl lines written by the phases already finished
        rng = jax.random.PRNGKey(spec.seed)
        with self._stop_on_sigterm():
            for index, phase in enumerate(spec.phases):
                rng, phase_rng = jax.random.split(rng)
                params, global_step, summary[phase.name] = self._run_phase(phase, index, params, global_step, phase_rng)
                if self.preempted:
                    break
        self.params = params
        if self.is_chief:
            records = metrics_lib.read_metrics(self.writer.path)
            metrics_lib.plot_curves(records, os.path.join(self.workdir, "curves.png"))
        self.writer.close()
        return summary

    @contextlib.contextmanager
    def _stop_on_sigterm(self):
        """While running: SIGTERM asks for a checkpoint and a clean stop at the next step boundary."""
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return

        def request_stop(signum, frame):
            self._stop_requested = True

        previous = signal.signal(signal.SIGTERM, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _run_phase(self, phase: Phase, index: int, params, global_step: int, rng):
        spec = self.spec
        state = steps.init_state(params, phase.algorithm, rng, ref_params=params, example=self._example_batch(phase))
        if self.layout is not None:
            state = self.layout.put(state, self.layout.state_shardings(state))
        else:  # committed to its device like a restored state: fresh and resumed runs compile the same program
            state = jax.device_put(state, jax.devices()[0])
        ckpt = checkpoint.PhaseCheckpointer(os.path.join(self.workdir, "checkpoints", phase.name))
        position, start, lines = 0, 0, self._lines_done
        if ckpt.latest_step() is not None:
            state, position, global_step, lines = ckpt.load(state)
            start = int(state.step)
            if start >= phase.steps:
                ckpt.close()
                self._lines_done = lines
                return state.params, global_step, {"resumed_complete": True}
        # Drop what was logged after the checkpoint we resume from (or by a start that never
        # checkpointed), so a resumed run's metrics.jsonl equals an uninterrupted run's.
        self.writer.truncate(lines)
        prompts = phase.prompts_per_step * phase.algorithm.batch.oversample
        shard_index, shard_count = self._data_shard(prompts)
        data_iter = BatchIterator(
            phase.source, prompts, task=spec.task, seed=spec.seed + 1000 * index, position=position,
            shard_index=shard_index, shard_count=shard_count,
        )
        step_fn = self._step_fn(phase)
        last_eval = {}
        if start == 0:
            last_eval = self.evaluate(state.params)
            self.writer.write({"step": global_step, "phase": phase.name, **last_eval})
        bar = tqdm(range(start, phase.steps), desc=phase.name, disable=not (spec.progress and self.is_chief), dynamic_ncols=True)
        nonfinite_streak = 0
        for s in bar:
            data = next(data_iter)
            t0 = time.perf_counter()
            state, m = step_fn(state, self._device_data(data, prompts), data["examples"])
            m = metrics_lib.to_python(sharding.to_host(m))
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
            nonfinite_streak = nonfinite_streak + 1 if m.get("skipped_nonfinite", 0.0) > 0 else 0
            if nonfinite_streak >= spec.max_nonfinite_steps:
                raise RuntimeError(
                    f"phase {phase.name!r} step {s + 1}: {nonfinite_streak} steps in a row had a non-finite loss "
                    f"or gradient (their updates were skipped; guards.max_nonfinite_steps="
                    f"{spec.max_nonfinite_steps}); lower the learning rate, check the rewards and inputs, or "
                    f"raise guards.max_nonfinite_steps"
                )
            stop = self._stop_requested
            if stop or done or (spec.checkpoint_every and (s + 1) % spec.checkpoint_every == 0):
                ckpt.save(s + 1, state, position=data_iter.position, global_step=global_step,
                          metrics_lines=self.writer.lines)
            if stop:
                self.preempted = True
                if self.is_chief:
                    print(f"polrl: SIGTERM received; saved phase {phase.name!r} step {s + 1} to {ckpt.directory}; "
                          f"relaunch with the same workdir to resume", file=sys.stderr, flush=True)
                last_eval = {**last_eval, "preempted": True}
                break
        bar.close()
        ckpt.close()
        self._lines_done = self.writer.lines
        return state.params, global_step, last_eval


def _ignore_examples(step_jit):
    return lambda state, data, examples: step_jit(state, data)


def _train_temperature(sampling: SamplingConfig) -> float:
    """The temperature log-probs are scored at: the sampler's (1 for greedy sampling)."""
    return sampling.temperature if sampling.temperature > 0 else 1.0

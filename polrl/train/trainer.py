"""The trainer: phases of (collector → algorithm) with eval, metrics and checkpoints.

A run is a list of phases, e.g. an SFT warm start on a fixed set of labelled demonstrations,
then GRPO on prompts only. Each phase owns a PolicyState, a data position and a checkpoint
directory ``WORKDIR/checkpoints/<phase>``; a relaunch with the same workdir restores the latest
complete checkpoint of the unfinished phase and reuses the final parameters of finished ones.

Every phase runs the same loop — collect → prepare → update → log / evaluate / checkpoint —
whatever its data: the phase's ``Collector`` (``polrl.collectors``) turns the step's prompts
into a Batch, then ``steps.train_on_batch`` runs the algorithm on it. When the collector runs
on the device only, the whole step (collect, prepare, epochs × minibatches of updates) is one
jitted call; a host collector (a verifier on strings, tools) runs outside ``jit`` and the
update is its own jitted call.

Scale (``RunSpec.layout``, a ``polrl.sharding.Layout``; one device is a 1-device mesh): the
state lives in the update layout (FSDP × tensor), every jitted step has explicit in/out
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

from polrl import detectability, evaluation, sharding
from polrl.core import Algorithm, Collector
from polrl.rollout import SamplingConfig, sample
from polrl.tasks import BatchIterator, Task, task_batch
from polrl.train import checkpoint, metrics as metrics_lib, pipeline, process_pipeline, programs, steps


@dataclasses.dataclass(frozen=True)
class Phase:
    """One stage of a run.

    Attributes:
      name: used in metrics (``phase``) and the checkpoint directory.
      algorithm: what to optimize.
      collector: how each step's batch is acquired (already wrapped with what the algorithm
        adds, ``Algorithm.collector``).
      steps: update iterations.
      prompts_per_step: prompts (or demonstrations) per step; the collector may read more
        (``Collector.reads``).
      source: the examples this phase reads (a random-access sequence of dicts).
      lookahead: set for asynchronous rollouts (``polrl.train.pipeline``): the batches of later
        steps are generated while earlier steps update; ``collector`` is then the ``stale``
        collector whose batches the pipeline reproduces.
    """

    name: str
    algorithm: Algorithm
    collector: Collector
    steps: int
    prompts_per_step: int
    source: Sequence[dict]
    lookahead: pipeline.Lookahead | None = None

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError(f"phase {self.name!r}: steps must be >= 0, got {self.steps}")
        if self.prompts_per_step < 1:
            raise ValueError(f"phase {self.name!r}: prompts_per_step must be >= 1, got {self.prompts_per_step}")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything static about a run (built from a config by ``polrl.launch``)."""

    task: Task
    graphdef: Any
    init_params: Any
    phases: tuple[Phase, ...]
    sampling: SamplingConfig
    seed: int
    eval_every: int
    checkpoint_every: int
    eval_examples: int
    eval_batch_size: int
    layout: sharding.Layout
    log_every: int = 1
    progress: bool = True
    max_nonfinite_steps: int = 5  # consecutive steps with skipped non-finite updates that stop the run
    models: Any = dataclasses.field(default_factory=dict)  # frozen auxiliary models' parameters by name (config.models)
    eval_samples: int = 0  # sampled completions per held-out prompt (0: greedy evaluation only)
    eval_pass_k: tuple[int, ...] = ()  # the ks of eval/pass@k (empty: {1, eval_samples})
    eval_prompt_prefix: tuple[int, ...] = ()  # token ids before every held-out prompt (eval.prompt_prefix)
    eval_detect_separator: int | None = None  # eval.detect: the sentence separator's id (None: no eval/detect_*)


def validate(spec: RunSpec) -> None:
    """Checks impossible combinations before anything compiles, with the field to fix.

    Besides the lengths and the layout, each phase's algorithm is traced (``jax.eval_shape``,
    no compilation) on the shapes its collector returns, so an algorithm that reads data the
    collector does not provide fails here with the transform's own message.
    """
    task, sampling = spec.task, spec.sampling
    model_len = nnx.merge(spec.graphdef, spec.init_params).max_len
    if task.max_prompt_len + sampling.max_new_tokens > model_len:
        raise ValueError(
            f"prompt ({task.max_prompt_len} tokens) + rollout.max_new_tokens ({sampling.max_new_tokens}) "
            f"exceeds model.max_len={model_len}; raise model.max_len or lower rollout.max_new_tokens"
        )
    if task.max_prompt_len + len(spec.eval_prompt_prefix) + sampling.max_new_tokens > model_len:
        raise ValueError(
            f"prompt ({task.max_prompt_len} tokens) + eval.prompt_prefix ({len(spec.eval_prompt_prefix)}) + "
            f"rollout.max_new_tokens ({sampling.max_new_tokens}) exceeds model.max_len={model_len}; raise "
            f"model.max_len or shorten eval.prompt_prefix"
        )
    if task.max_answer_len > sampling.max_new_tokens:
        raise ValueError(
            f"rollout.max_new_tokens={sampling.max_new_tokens} is shorter than the task's longest answer "
            f"({task.max_answer_len} tokens incl. EOS); raise rollout.max_new_tokens"
        )
    if spec.max_nonfinite_steps < 1:
        raise ValueError(f"guards.max_nonfinite_steps={spec.max_nonfinite_steps} must be >= 1")
    shards = spec.layout.batch_shards
    for ph in spec.phases:
        reads = ph.collector.reads(ph.prompts_per_step)
        if reads % shards:
            raise ValueError(
                f"phase {ph.name!r}: {reads} prompts per step do not split over "
                f"{' × '.join('mesh.' + a for a in spec.layout.batch_axes)} = "
                f"{shards} batch shards; make the batch size (demos.batch_size, or rollout.batch_size / "
                f"rollout.group_size) a multiple of {shards} or change the mesh"
            )
        check_phase(spec, ph)
        if ph.lookahead is not None and jax.process_count() > 1 and ph.lookahead.update_layout is None:
            raise ValueError(f"phase {ph.name!r}: async_rollouts in a multi-process run ({jax.process_count()} "
                             f"processes) gives generation a process of its own; set async_rollout_devices to the "
                             f"first process's device count ({jax.local_device_count()})")
    if not isinstance(spec.eval_samples, int) or spec.eval_samples < 0:
        raise ValueError(f"eval.samples={spec.eval_samples!r} must be an int >= 0 (0: greedy evaluation only)")
    if spec.eval_samples:
        evaluation.check_pass_k(spec.eval_samples, spec.eval_pass_k)
    elif spec.eval_pass_k:
        raise ValueError(f"eval.pass_k={list(spec.eval_pass_k)} needs eval.samples > 0 (sampled completions per prompt)")
    if spec.eval_batch_size % shards:
        raise ValueError(
            f"eval.batch_size={spec.eval_batch_size} does not split over "
            f"{' × '.join('mesh.' + a for a in spec.layout.batch_axes)} = {shards} "
            f"batch shards; make it a multiple of {shards}"
        )


def check_phase(spec: RunSpec, phase: Phase) -> None:
    """The algorithm traced on the collector's batch shapes (and, for a device collector, the
    collector traced on the data shapes), without compiling; errors name the phase."""
    algo, collector = phase.algorithm, phase.collector
    example = collector.example(phase.prompts_per_step)
    rows = example.batch_size
    if rows % algo.num_minibatches:
        raise ValueError(
            f"phase {phase.name!r}: {rows} sequences per step are not divisible by "
            f"num_minibatches={algo.num_minibatches}; change the batch size or num_minibatches"
        )
    state = jax.eval_shape(functools.partial(init_phase_state, spec, phase), spec.init_params, jax.random.key(0))
    train = functools.partial(steps.train_on_batch, algorithm=algo, graphdef=spec.graphdef,
                              temperature=spec.sampling.scoring_temperature)
    try:
        if not collector.host:
            data = data_shapes(spec.task, collector.reads(phase.prompts_per_step))
            collected = jax.eval_shape(collector.collect, state.collector_state, state, data, jax.random.key(0))[0]
            if jax.tree.structure(collected) != jax.tree.structure(example) or any(
                    (a.shape, a.dtype) != (b.shape, b.dtype)
                    for a, b in zip(jax.tree.leaves(collected), jax.tree.leaves(example))):
                raise ValueError(f"the collector's example() does not describe what it collects: {example} vs "
                                 f"{collected}; fix the collector's example")
        jax.eval_shape(train, state, example)
    except ValueError as e:
        raise ValueError(f"phase {phase.name!r}: {e}") from e


def data_shapes(task: Task, prompts: int) -> dict:
    """ShapeDtypeStructs of a step's data arrays for ``prompts`` prompts."""
    p, a = task.max_prompt_len, task.max_answer_len
    return {"prompt_bp": jax.ShapeDtypeStruct((prompts, p), jnp.int32),
            "prompt_valid_bp": jax.ShapeDtypeStruct((prompts, p), jnp.bool_),
            "answer_ba": jax.ShapeDtypeStruct((prompts, a), jnp.int32),
            "answer_valid_ba": jax.ShapeDtypeStruct((prompts, a), jnp.bool_)}


def with_prefix(data: dict, prefix: tuple[int, ...]) -> dict:
    """Held-out prompts (``task_batch``) with the tokens ``prefix`` before each left-padded prompt
    (prefix, padding, prompt: positions count only valid tokens, so the model reads prefix ++ prompt)."""
    if not prefix:
        return data
    rows = data["prompt_bp"].shape[0]
    tokens = np.broadcast_to(np.asarray(prefix, data["prompt_bp"].dtype), (rows, len(prefix)))
    return {**data, "prompt_bp": np.concatenate([tokens, data["prompt_bp"]], axis=1),
            "prompt_valid_bp": np.concatenate([np.ones((rows, len(prefix)), bool), data["prompt_valid_bp"]], axis=1)}


def with_token_prefix(data: dict, tokens, valid) -> dict:
    """Held-out prompts with the columns ``tokens`` / ``valid`` ([L]) before each left-padded prompt
    (a fixed width whatever the prefix's length, so the evaluation compiles once)."""
    rows = data["prompt_bp"].shape[0]
    tile = lambda x, dtype: np.broadcast_to(np.asarray(x, dtype), (rows, len(x)))
    return {**data, "prompt_bp": np.concatenate([tile(tokens, data["prompt_bp"].dtype), data["prompt_bp"]], axis=1),
            "prompt_valid_bp": np.concatenate([tile(valid, bool), data["prompt_valid_bp"]], axis=1)}


def init_phase_state(spec: RunSpec, phase: Phase, params, rng):
    """A fresh PolicyState for the phase: its algorithm's and collector's states, the reference
    when a transform or the collector needs it, and a copy of the run's frozen auxiliary models
    (the state is donated to every step, the spec's arrays must survive it)."""
    state = steps.init_state(params, phase.algorithm, rng, ref_params=params,
                             example=phase.collector.example(phase.prompts_per_step),
                             collector=phase.collector, prompts=phase.prompts_per_step)
    return state.replace(models=jax.tree.map(jnp.copy, dict(spec.models)))


def checkpoint_item(state) -> dict:
    """What a checkpoint holds of a PolicyState: its fields by name, all but ``models`` (the frozen
    auxiliary models, which a run reloads from their source: ``polrl.train.auxiliary``) — the tree
    checkpoints have had since before the field existed, so older runs resume too."""
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(state) if f.name != "models"}


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
        self._greedy = self.layout.jit(
            lambda params, prompt_bp, valid_bp, rng: sample(spec.graphdef, params, prompt_bp, valid_bp, rng, greedy),
            ("params", "batch", "batch", "replicated"), "batch")
        self._sampled = None
        self._steps = {}  # (id(algorithm), id(collector)) → the phase step (``_step_fn``)
        if spec.eval_samples:
            self._pass_k = evaluation.check_pass_k(spec.eval_samples, spec.eval_pass_k or
                                                   evaluation.default_pass_k(spec.eval_samples))
            run = evaluation.sampled_completions(spec.graphdef, spec.sampling, spec.eval_samples, spec.task.device_reward)
            self._sampled = self.layout.jit(run, ("params",) + ("batch",) * 4 + ("replicated",), "batch")
        self._detect = None if spec.eval_detect_separator is None else self.layout.jit(
            detectability.scored_texts(spec.graphdef, spec.eval_detect_separator), ("params",) + ("batch",) * 4, "batch")
        self._scorer_params = spec.init_params  # the frozen policy the current phase started from (eval.detect)
        self._eval_data = with_prefix(task_batch(spec.task, [spec.task.test[i] for i in
                                                             range(min(spec.eval_examples, len(spec.task.test)))]),
                                      spec.eval_prompt_prefix)

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, params, prefix=None) -> dict:
        """Greedy exact-match accuracy, mean reward and response length (``eval/greedy_length``)
        on the first ``eval_examples`` held-out prompts; with ``eval_samples`` = n > 0 also the
        metrics of n sampled completions per prompt (``polrl.evaluation``: pass@k, sampled
        accuracy, entropy, distinct answers, response length); with ``eval_detect_separator``
        (``eval.detect``) the CT² detectors' AUROCs and ADI of the greedy answers
        (``eval/detect_*``) and of the samples (``eval/detect_sampled_*``) against the held-out
        demonstrations, under the frozen policy the phase started from (``polrl.detectability``)."""
        task, bs = self.spec.task, self.spec.eval_batch_size
        # prefix: (tokens [L], valid [L]) before every prompt (Collector.eval_prefix, _evaluate_phase)
        data = self._eval_data if prefix is None else with_token_prefix(self._eval_data, *prefix)
        n = len(data["examples"])
        rewards, lengths, samples, detect = [], [], [], []
        for start in range(0, n, bs):
            chunk = {k: v[start : start + bs] for k, v in data.items()}
            size = len(chunk["examples"])
            padded = {k: np.concatenate([v, np.repeat(v[-1:], bs - size, 0)]) for k, v in chunk.items() if k != "examples"}
            prompts = (padded["prompt_bp"], padded["prompt_valid_bp"])
            prompts = self.layout.from_global(prompts)
            out = self._greedy(params, *prompts, jax.random.PRNGKey(0))
            response_bt, mask_bt = sharding.to_host((out.response_bt, out.mask_bt))
            if task.device_reward is not None:
                r = np.asarray(task.device_reward(response_bt, mask_bt, jnp.asarray(padded["answer_ba"]), jnp.asarray(padded["answer_valid_ba"])))
            else:
                r = task.host_reward(task.tokenizer.decode_batch(response_bt), chunk["examples"] + [chunk["examples"][-1]] * (bs - size))
            rewards.append(np.asarray(r)[:size])
            lengths.append(np.asarray(mask_bt, np.float64).sum(-1)[:size])
            if self._sampled is not None:
                samples.append(self._sample_chunk(params, padded, chunk["examples"], size, start))
            if self._detect is not None:
                detect.append(self._detect_chunk(prompts, (out.response_bt, out.mask_bt), padded, size,
                                                 samples[-1] if samples else None))
        r = np.concatenate(rewards)
        out = {"eval/accuracy": float((r >= 1.0).mean()), "eval/reward": float(r.mean()),
               "eval/greedy_length": float(np.concatenate(lengths).mean())}
        if samples:
            reward, entropy, response, mask = (np.concatenate(x) for x in zip(*samples))
            out.update(evaluation.sampled_metrics(reward, entropy, response, mask, self._pass_k))
        if detect:
            stats = {k: {s: np.concatenate([d[k][s] for d in detect]) for s in detectability.STATISTICS}
                     for k in detect[0]}
            out.update(detectability.detection_metrics(stats["greedy"], stats["demos"]))
            if "sampled" in stats:
                out.update(detectability.detection_metrics(stats["sampled"], stats["demos"], "eval/detect_sampled_"))
        return out

    def _detect_chunk(self, prompts, greedy, padded: dict, size: int, sampled) -> dict:
        """Per-text statistics (host float64) of the chunk's ``size`` greedy answers, demonstrations
        (the labelled answers, EOS included) and, with ``sampled`` (``_sample_chunk``'s output), samples."""
        texts = {"greedy": greedy, "demos": self.layout.from_global((padded["answer_ba"], padded["answer_valid_ba"]))}
        out = {}
        for name, (response_bt, mask_bt) in texts.items():
            stats = sharding.to_host(self._detect(self._scorer_params, *prompts, response_bt, mask_bt))
            out[name] = {k: np.asarray(v, np.float64)[:size] for k, v in stats.items()}
        if sampled is not None:
            _, _, response, mask = sampled
            n, pad = response.shape[1], (len(padded["prompt_bp"]) - size) * response.shape[1]
            rows = lambda x: np.concatenate([x.reshape((size * n,) + x.shape[2:]), np.repeat(x[-1:, -1], pad, 0)])
            repeat = lambda x: np.repeat(x, n, axis=0)
            arrays = self.layout.from_global((repeat(padded["prompt_bp"]), repeat(padded["prompt_valid_bp"]),
                                              rows(response), rows(mask)))
            stats = sharding.to_host(self._detect(self._scorer_params, *arrays))
            out["sampled"] = {k: np.asarray(v, np.float64)[:size * n] for k, v in stats.items()}
        return out

    def _evaluate_phase(self, phase: Phase, state) -> dict:
        """``evaluate`` of the phase's policy; a collector with ``eval_prefix`` is evaluated with its
        prefix before every held-out prompt (``eval/…``) and without it (``eval/bare/…``)."""
        if phase.collector.eval_prefix is None:
            return self.evaluate(state.params)
        tokens, valid = sharding.to_host(phase.collector.eval_prefix(state.collector_state))
        bare = self.evaluate(state.params)
        return {**self.evaluate(state.params, prefix=(tokens, valid)),
                **{k.replace("eval/", "eval/bare/", 1): v for k, v in bare.items()}}

    def _sample_chunk(self, params, padded: dict, examples: list, size: int, start: int):
        """``eval_samples`` completions of each of the chunk's ``size`` real prompts, as host arrays
        ``(reward [size, n], entropy sums [size, n], responses [size, n, T], masks [size, n, T])``;
        the key is fixed by the seed and the chunk's first prompt (common random numbers)."""
        task, k = self.spec.task, self.spec.eval_samples
        arrays = self.layout.from_global(tuple(padded[f] for f in ("prompt_bp", "prompt_valid_bp", "answer_ba",
                                                                  "answer_valid_ba")))
        key = jax.random.fold_in(jax.random.PRNGKey(self.spec.seed), start)
        out = sharding.to_host(self._sampled(params, *arrays, key))
        rows = size * k
        response, mask = np.asarray(out["response_bt"])[:rows], np.asarray(out["mask_bt"])[:rows]
        if "reward_b" in out:
            reward = np.asarray(out["reward_b"])[:rows]
        else:
            reward = np.asarray(task.host_reward(task.tokenizer.decode_batch(response), [e for e in examples for _ in range(k)]))
        shape = lambda x: x.reshape((size, k) + x.shape[1:])
        return shape(reward), shape(np.asarray(out["entropy_b"])[:rows]), shape(response), shape(mask)

    # ---------------------------------------------------------------- the step
    def _step_fn(self, phase: Phase) -> Callable:
        """``(state, data) -> (state, metrics)``: collect, then prepare and update. Phases that
        share their algorithm and collector (``build_spec`` gives identical phase sections the
        same objects: DNO's iterations) share one jitted step, compiled once.

        The collector gets its own key split from the state's (``rng, collect_rng =
        split(state.rng)``; the state keeps ``rng``). A device collector is compiled into the
        step; a host collector runs outside ``jit`` and the update is its own jitted call.
        """
        key = (id(phase.algorithm), id(phase.collector))
        if key not in self._steps:
            self._steps[key] = self._make_step(phase)
        return self._steps[key]

    def _make_step(self, phase: Phase) -> Callable:
        spec, collector = self.spec, phase.collector
        train = functools.partial(steps.train_on_batch, algorithm=phase.algorithm, graphdef=spec.graphdef,
                                  temperature=spec.sampling.scoring_temperature)

        def collect(state, data):
            rng, collect_rng = jax.random.split(state.rng)
            batch, collector_state, metrics = collector.collect(state.collector_state, state, data, collect_rng)
            return state.replace(rng=rng, collector_state=collector_state), batch, metrics

        def step(state, data):
            state, batch, metrics = collect(state, data)
            state, train_metrics = train(state, batch)
            return state, {**metrics, **train_metrics}

        if not collector.host:
            step_jit = self._jit(step)
            return lambda state, data: step_jit(state, {k: v for k, v in data.items() if k != "examples"})

        update_jit = self._jit(lambda state, batch, metrics: (lambda out: (out[0], {**metrics, **out[1]}))(train(state, batch)),
                               in_kinds=("state", "batch", "replicated"))
        return lambda state, data: update_jit(*collect(state, data))

    # ---------------------------------------------------------------- devices and hosts
    def _jit(self, step: Callable, in_kinds=("state", "batch")) -> Callable:
        """``step(state, …) -> (state, metrics)`` jitted with the state donated and explicit
        shardings (state in the update layout, batches split over data × fsdp)."""
        return self.layout.jit(step, in_kinds, ("state", "replicated"), donate_argnums=(0,))

    def _data_shard(self, rows: int) -> tuple[int, int]:
        """``(shard_index, shard_count)`` of the rows of a step's batch this process reads."""
        start, stop = self.layout.process_rows(rows)
        return start // (stop - start), rows // (stop - start)

    def _device_data(self, data: dict, rows: int) -> dict:
        """This process's slice of the step's prompts as (global) device arrays; the example
        dicts stay on the host."""
        arrays = self.layout.from_process_rows({k: v for k, v in data.items() if k != "examples"}, rows)
        return {**arrays, "examples": data["examples"]}

    # ---------------------------------------------------------------- the loop
    def run(self) -> dict:
        """Runs (or resumes) every phase; returns the last eval metrics of each phase.

        The final parameters are kept in ``self.params`` (e.g. to sample from the model).
        SIGTERM (preemption) makes the run save a checkpoint at the next step boundary and
        return early with ``self.preempted = True``; a relaunch resumes from there. A process that
        holds over ¾ of its memory-mapping cap in compiled programs (many runs in one notebook)
        has its jit caches cleared first (``polrl.train.programs``).
        """
        spec = self.spec
        programs.bound_compiled_programs(0.75)  # a long-lived process (a notebook) stays under its mapping cap
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
        if self._detect is not None:  # eval.detect's scorer: the policy this phase starts from (a copy: steps donate)
            self._scorer_params = jax.tree.map(jnp.copy, params)
        state = init_phase_state(spec, phase, params, rng)
        state = self.layout.put(state, self.layout.state_shardings(state))
        ckpt = checkpoint.PhaseCheckpointer(os.path.join(self.workdir, "checkpoints", phase.name))
        position, start, lines = 0, 0, self._lines_done
        if ckpt.latest_step() is not None:
            restored, position, global_step, lines = ckpt.load(checkpoint_item(state))
            state = state.replace(**restored)
            start = int(state.step)
            if start >= phase.steps:
                ckpt.close()
                self._lines_done = lines
                return state.params, global_step, {"resumed_complete": True}
        # Drop what was logged after the checkpoint we resume from (or by a start that never
        # checkpointed), so a resumed run's metrics.jsonl equals an uninterrupted run's.
        self.writer.truncate(lines)
        prompts = phase.collector.reads(phase.prompts_per_step)
        by_process = phase.lookahead is not None and phase.lookahead.update_layout is not None
        shard_index, shard_count = (0, 1) if by_process else self._data_shard(prompts)  # the generator reads it all
        data_iter = BatchIterator(
            phase.source, prompts, task=spec.task, seed=spec.seed + 1000 * index, position=position,
            shard_index=shard_index, shard_count=shard_count,
        )
        step_fn = None if phase.lookahead else self._step_fn(phase)
        pipe = None if phase.lookahead is None else self._pipeline(phase, state, start, data_iter, prompts)
        try:
            return self._loop(phase, state, start, global_step, data_iter, prompts, step_fn, pipe, ckpt)
        finally:
            if pipe is not None:
                pipe.close()

    def _pipeline(self, phase: Phase, state, start: int, data_iter, prompts: int):
        """The generator of an asynchronous phase (its jitted steps compiled once per phase method):
        a thread of this process, or the first process of a multi-process run
        (``process_pipeline``)."""
        train = functools.partial(steps.train_on_batch, algorithm=phase.algorithm, graphdef=self.spec.graphdef,
                                  temperature=self.spec.sampling.scoring_temperature)
        compiled = self._steps.setdefault(("pipeline", id(phase.algorithm), id(phase.collector)), {})
        if phase.lookahead.update_layout is not None:
            return process_pipeline.ProcessPipeline(
                lookahead=phase.lookahead, layout=self.layout, train=train, state=state, start=start,
                steps=phase.steps, data_iter=data_iter, rows=prompts, data_shapes=data_shapes(self.spec.task, prompts),
                compiled=compiled)
        return pipeline.Pipeline(lookahead=phase.lookahead, layout=self.layout, train=train, state=state, start=start,
                                 steps=phase.steps, data_iter=data_iter, rows=prompts, host=phase.collector.host,
                                 compiled=compiled)

    def _loop(self, phase: Phase, state, start: int, global_step: int, data_iter, prompts: int, step_fn, pipe, ckpt):
        spec = self.spec
        last_eval = {}
        evaluates = phase.algorithm.trains_policy  # a scorer's phase is not evaluated as a policy
        if start == 0 and evaluates:
            with contextlib.nullcontext() if pipe is None else pipe.exclusive():
                last_eval = self._evaluate_phase(phase, state)
            self.writer.write({"step": global_step, "phase": phase.name, **last_eval})
        bar = tqdm(range(start, phase.steps), desc=phase.name, disable=not (spec.progress and self.is_chief), dynamic_ncols=True)
        nonfinite_streak = 0
        for s in bar:
            if pipe is None:
                data = next(data_iter)
                t0 = time.perf_counter()
                state, m = step_fn(state, self._device_data(data, prompts))
                position = data_iter.position
            else:  # the step time counts the wait for the batch, not the generation it overlapped
                t0 = time.perf_counter()
                state, m, position = pipe.step(state)
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
            stop = self._stop_requested
            evaluating = evaluates and spec.eval_every and ((s + 1) % spec.eval_every == 0 or done)
            if pipe is not None and (evaluating or stop or done or
                                     (spec.checkpoint_every and (s + 1) % spec.checkpoint_every == 0)):
                state = pipe.home(state)  # the state in this trainer's layout, where it is read next
            if evaluating:
                with contextlib.nullcontext() if pipe is None else pipe.exclusive():
                    last_eval = self._evaluate_phase(phase, state)
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
            if stop or done or (spec.checkpoint_every and (s + 1) % spec.checkpoint_every == 0):
                ckpt.save(s + 1, checkpoint_item(state), position=position, global_step=global_step,
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

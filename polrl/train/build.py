"""From an experiment config (``ml_collections.ConfigDict``) to a ``RunSpec``.

Config layout (every experiment in ``experiments/`` follows it)::

  seed, total_steps, eval_every, checkpoint_every, log_every
  task:       name (a factory in polrl.tasks, e.g. "arithmetic") + its keyword arguments;
              data_dir ("" → $POLRL_DATA_DIR or ~/.cache/polrl/data)
  model:      TransformerConfig fields except vocab_size (taken from the task's tokenizer); or
              hf_path: a local Hugging Face checkpoint directory ("" → the random-init model
              above): weights, shape and tokenizer (handed to the task) come from it, so only
              run options may be set (dtype, param_dtype, max_len, remat and any other
              TransformerConfig field config.json does not fix); a shape field that is set
              must equal the checkpoint's. lora_rank (0 = off) / lora_alpha (None → rank): train
              LoRA adapters on every projection instead of the full model (polrl.models.lora)
  demos:      num (size of the fixed labelled set drawn from train), batch_size
  warmup:     steps (SFT warm start on the demos; 0 skips it), learning_rate
  algorithm:  a noun in polrl.algorithms ("grpo", "ppo", "dpo", "sft"); algorithm_kwargs
  then:       optional follow-up phase on the same collector: algorithm, algorithm_kwargs,
              switch_fraction (the main phase runs round(f · total_steps) steps, the follow-up
              the rest), name (default "<main phase>_then"); it starts from the main phase's
              final parameters, which also become its reference (ReMix's policy reincarnation).
              Built as the two-entry phase list below (the main phase, then the follow-up)
  phases:     optional list of phase sections run in order after the warm-up, instead of the
              single main phase: name (unique; metrics and WORKDIR/checkpoints/<name>), steps
              (int >= 0; total_steps must equal their sum), and optionally algorithm,
              algorithm_kwargs, collector, collector_kwargs, data, pairs, difficulty, reward, each defaulting
              to the top-level field (the *_kwargs only while the entry keeps the top-level noun, else
              {}). Each phase starts from the previous one's final parameters, which are also its
              reference (PolicyState.ref_params): DNO's iterations, a curriculum (SFT on demos →
              DPO on pairs → GRPO on prompts), ReMix's reincarnation. Not with then / phase_name.
              reward_model, density_ratio and staleness apply to every phase after the warm-up
              whose reward is ""
  collector:  a factory in polrl.collectors ("group_samples", "demonstrations",
              "preference_pairs", …; default "group_samples"), built with the run's
              collectors.Context and collector_kwargs (a collector reading another model takes
              its name there, e.g. mcts_pairs' prm); the algorithm's own wrapper
              (Algorithm.collector) is applied on top
  models:     optional; the run's frozen auxiliary models by name (polrl.train.auxiliary): path
              (a polrl run's WORKDIR/checkpoints/<phase>) or hf_path (a local Hugging Face
              checkpoint), model (TransformerConfig fields; default config.model), value_head
              (default False). Held once in PolicyState.models, laid out like the policy, never
              checkpointed; "policy" and "reference" are reserved (the phase's own)
  reward_model: optional; RLHF: a frozen Bradley–Terry reward model scores the main phase's
              rows instead of the task's verifier (polrl.collectors.with_reward_model, wrapped
              around the base collector; the model joins config.models as "reward_model"):
              path (a reward-model run's checkpoint directory,
              WORKDIR/checkpoints/<phase>), model (its TransformerConfig fields; default
              config.model), hidden_score ("" or "closeness": a rule the policy never sees,
              logged as hidden_score_mean beside the learned reward)
  density_ratio: optional; CDR: the log density ratio of a strong over a weak frozen policy,
              log π_strong(y|x) − log π_weak(y|x), scores the main phase's rows instead of the
              verifier (polrl.collectors.with_density_ratio; inside preference_pairs it ranks the
              samples before the pairs are chosen): strong, weak (phase checkpoint directories of
              policy runs, e.g. WORKDIR/checkpoints/rl and WORKDIR/checkpoints/sft_warmup, joining
              config.models as "cdr_strong" / "cdr_weak"; or "reference": the phase's own
              reference, held once), model
              (their TransformerConfig fields; default config.model), instruction (default "":
              text before every prompt of the strong model only). Not with reward_model
  staleness:  optional, default 0: the rows of every RL phase come from the policy of that many
              updates ago (polrl.collectors.stale wraps the phase's collector, outermost);
              staleness_old_policy (default "behavior"): π_old of those rows is the stale
              behaviour policy ("behavior") or recomputed by the trainer ("recomputed");
              async_rollouts (default False; needs staleness >= 1): the same batches generated
              asynchronously, a step's rollouts while the updates before it run
              (polrl.train.pipeline); async_rollout_devices (default 0: generation shares
              the update's mesh): n > 0 generates on the first n devices (data parallel), and
              the mesh section lays out the update over the others; in a multi-process run n
              is the first process's device count: that process generates, the others update
              (polrl.train.process_pipeline; staleness 0 allowed: the two take turns)
  data:       what the main phase reads: "train" (prompts of the train split,
              rollout.batch_size / rollout.group_size per step; the default), "demos" (the
              fixed labelled set, demos.batch_size per step) or "pairs" (offline preference
              rows, below; collector "offline_pairs" for paired rows, "offline_unpaired" for
              labelled ones)
  difficulty: optional {min, max} (inclusive; either may be left out; {} or absent = every
              example): the phase reads only the examples of its data (train prompts, demos or
              pairs) whose task-defined difficulty lies in [min, max] — ``difficulty(example)``
              in the task's module polrl.tasks.<task name> (e.g. arithmetic: the answer's digit
              count), a curriculum's "harder subset" (``select_by_difficulty``). Not the warm-up's
              demos
  reward:     optional, default "": what rewards the phase's rows: "" (the run's reward: the task's
              verifier, or config.reward_model / density_ratio when set) or "self_judge" (the
              policy's own verdict π_θ("y" | x ++ y ++ " ok?") after SPARK's judge training,
              polrl.collectors.with_self_judge; inside preference_pairs it ranks the samples)
  pairs:      with data = "pairs": path (a JSONL file) or tfds_name (+ tfds_split, default
              "train", and tfds_data_dir, default TFDS's): rows {prompt, chosen, rejected} or
              {prompt, completion, label} (polrl.tasks.preference_data, checked before
              anything is built); batch_size: rows of the file per step (a pair is two
              sequences)
  phase_name: the main phase's name in metrics and checkpoints (default "rl"; not with phases)
  rollout:    batch_size (sequences per step = prompts × group_size), group_size,
              max_new_tokens (0 → the task's longest answer),
              temperature, top_k, top_p, min_p
  eval:       num_examples, batch_size (prompts per evaluation call); prompt_prefix (default "":
              text before every held-out prompt, e.g. RA-DPO's highest reward goal; the warm-up's
              evaluations see it too); samples (default 0 = off):
              n completions per held-out prompt at the rollout's sampling options, logging
              pass@k, sampled accuracy, entropy, distinct answers and lengths
              (polrl.evaluation); pass_k (default [1, samples]): the ks of eval/pass@k;
              detect (default False): CT² detector AUROCs and ADI of the greedy (and sampled)
              answers against the held-out demonstrations under the frozen policy the phase
              started from, logged as eval/detect_* (polrl.detectability); detect_separator
              (default ","): the token that ends a sentence for burstiness
  detect_penalty: optional; every phase after the warm-up whose reward is "" gets reward −
              coef · a CT² detector's score of the response (polrl.collectors.
              with_detectability_penalty): coef (λ >= 0), detector (default "log_likelihood";
              polrl.detectability.DETECTORS), model (the scorer, default "reference"; or a name
              of config.models), separator (default ",")
  mesh:       optional; data, fsdp, tensor, expert (default 1 each; one may be -1: fills;
              1 × 1 × 1 × 1 or no section = one device; expert > 1 splits mixture-of-experts
              weights by expert, and the batch over data × fsdp × expert), update_rules /
              rollout_rules (default polrl.sharding.UPDATE_RULES / ROLLOUT_RULES)
  guards:     optional; max_nonfinite_steps (default 5): consecutive steps whose updates were
              skipped for a non-finite loss or gradient before the run stops

``model.dtype`` / ``model.param_dtype`` may be "float32" or "bfloat16".
"""
from __future__ import annotations

import importlib
import inspect
import json
import os

import jax
import numpy as np
from flax import nnx

from polrl import algorithms, collectors, models, sharding
from polrl.collectors.stale import check_options as check_stale_options, lagged
from polrl.models.hf_tokenizer import HFTokenizer
from polrl.models.lora import apply_lora, lora_algorithm
from polrl.rollout import SamplingConfig
from polrl.tasks import get_task, preference_data, registry
from polrl.tasks.closeness import closeness_reward
from polrl.tasks.data import decode_example
from polrl.train import auxiliary, pipeline
from polrl.train.auxiliary import frozen_model_structure, reward_model_structure
from polrl.train.reward_checkpoint import load_params, load_reward_params, policy_source
from polrl.train.trainer import Phase, RunSpec



def default_data_dir() -> str:
    return os.environ.get("POLRL_DATA_DIR", os.path.expanduser("~/.cache/polrl/data"))


def build_task(config, tokenizer: HFTokenizer | None = None):
    """The task of ``config.task``; ``tokenizer`` (the checkpoint's, with ``model.hf_path``) is
    passed to its factory, which must take one."""
    kwargs = dict(config.task)
    name = kwargs.pop("name")
    data_dir = kwargs.pop("data_dir", "") or default_data_dir()
    if tokenizer is not None:
        factory = getattr(registry, f"{name}_task", None)
        if factory is not None and "tokenizer" not in inspect.signature(factory).parameters:
            raise ValueError(
                f"model.hf_path is set but task {name!r} has its own tokenizer; use a task that takes "
                f"the checkpoint's tokenizer (e.g. 'gsm8k') or set model.hf_path=''"
            )
        kwargs["tokenizer"] = tokenizer
    return get_task(name, data_dir=data_dir, **kwargs)


def hf_tokenizer(hf_path: str) -> HFTokenizer | None:
    """The tokenizer of the checkpoint at ``model.hf_path`` (None when it is "")."""
    if not hf_path:
        return None
    if not os.path.isdir(hf_path):
        raise ValueError(f"model.hf_path={hf_path!r} is not a directory; point it at a local Hugging Face "
                         f"checkpoint (config.json, *.safetensors, tokenizer.json)")
    return HFTokenizer.from_dir(hf_path)


def demonstrations(task, num: int, seed: int) -> list[dict]:
    """A fixed labelled set: ``num`` training examples drawn once with ``seed``."""
    if not 0 < num <= len(task.train):
        raise ValueError(f"demos.num={num} must be in [1, {len(task.train)}] (the train split size)")
    idx = np.random.default_rng([seed, 7]).permutation(len(task.train))[:num]
    return [task.train[int(i)] for i in idx]


OFFLINE_COLLECTORS = {preference_data.PAIRED: "offline_pairs", preference_data.UNPAIRED: "offline_unpaired"}


def preference_rows(config, task, collector_name: str) -> list[dict]:
    """The checked rows of ``config.pairs`` (a JSONL ``path`` or a TFDS ``tfds_name``), as
    examples of the data stream; their schema must match the offline collector named."""
    pairs = config.get("pairs") or {}
    path, name = pairs.get("path", ""), pairs.get("tfds_name", "")
    if bool(path) == bool(name):
        raise ValueError("config.data='pairs' reads config.pairs: set exactly one of pairs.path (a JSONL file) and "
                         "pairs.tfds_name (a TFDS dataset)")
    batch_size = pairs.get("batch_size", 0)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"pairs.batch_size={batch_size!r} must be a positive int (preference rows per step)")
    limits = preference_data.Limits(task.tokenizer, task.max_prompt_len, task.max_answer_len)
    if path:
        rows = preference_data.load_jsonl(path, limits)
    else:
        rows = preference_data.load_tfds(name, pairs.get("tfds_split", "train"), limits,
                                         data_dir=pairs.get("tfds_data_dir", ""))
    wanted = OFFLINE_COLLECTORS[tuple(rows[0])]
    if collector_name != wanted:
        raise ValueError(f"config.pairs holds {'paired' if wanted == 'offline_pairs' else 'unpaired'} rows, which "
                         f"collector={wanted!r} reads; config.collector is {collector_name!r}")
    return preference_data.as_examples(rows)


def prompts_per_step(rollout) -> int:
    """Prompts per step: ``rollout.batch_size`` sequences in groups of ``rollout.group_size``."""
    if rollout.group_size < 1 or rollout.batch_size % rollout.group_size:
        raise ValueError(
            f"rollout.batch_size={rollout.batch_size} is not divisible by rollout.group_size="
            f"{rollout.group_size}; make batch_size a multiple of group_size (prompts × samples per prompt)"
        )
    return rollout.batch_size // rollout.group_size


DEFAULT_MAX_NONFINITE_STEPS = 5


def max_nonfinite_steps(config) -> int:
    """``guards.max_nonfinite_steps`` (default 5), checked to be a positive int."""
    value = config.get("guards", {}).get("max_nonfinite_steps", DEFAULT_MAX_NONFINITE_STEPS)
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"guards.max_nonfinite_steps={value!r} must be a positive int")
    return value


def split_steps(config) -> tuple[int, int]:
    """(main phase steps, follow-up steps): ``config.total_steps`` split at ``then.switch_fraction``."""
    then = config.get("then")
    if not then:
        return config.total_steps, 0
    f = then.switch_fraction
    main_steps = round(f * config.total_steps)
    if not 0 < f < 1 or not 0 < main_steps < config.total_steps:
        raise ValueError(
            f"then.switch_fraction={f} with total_steps={config.total_steps} leaves "
            f"{main_steps} main and {config.total_steps - main_steps} follow-up steps; choose a "
            f"fraction in (0, 1) that gives both phases at least one step"
        )
    return main_steps, config.total_steps - main_steps


PHASE_FIELDS = ("name", "steps", "algorithm", "algorithm_kwargs", "collector", "collector_kwargs", "data", "pairs",
                "difficulty", "reward")


def with_defaults(top: dict, entry: dict) -> dict:
    """The phase section ``entry`` over the top-level fields ``top``; a noun's keyword arguments
    (``algorithm_kwargs``, ``collector_kwargs``) default to the top-level ones only while the
    entry keeps the top-level noun (else ``{}``)."""
    section = {**top, **entry}
    for noun in ("algorithm", "collector"):
        if f"{noun}_kwargs" not in entry and section[noun] != top[noun]:
            section[f"{noun}_kwargs"] = {}
    return section


def check_phase_entry(entry, i: int, names: dict, warmup: bool) -> dict:
    """``config.phases[i]`` as a dict, checked: known fields, a unique name, steps an int >= 0."""
    where = f"phases[{i}]"
    if not hasattr(entry, "keys"):
        raise ValueError(f"{where}={entry!r} must be a section (a dict with name and steps); see polrl.train.build")
    entry = dict(entry)
    unknown = sorted(set(entry) - set(PHASE_FIELDS))
    if unknown:
        raise ValueError(f"{where}.{unknown[0]} is not a phase field; a phase takes {list(PHASE_FIELDS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"{where}.name={name!r}: give every phase a non-empty name without '/' (its metrics and "
                         f"checkpoint directory)")
    if name in names:
        raise ValueError(f"{where}.name={name!r} repeats phases[{names[name]}].name; give every phase a unique name")
    if warmup and name == "sft_warmup":
        raise ValueError(f"{where}.name='sft_warmup' is the warm-up phase's name; rename the phase")
    steps = entry.get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"{where}.steps={steps!r} must be an int >= 0 (the phase's update steps)")
    names[name] = i
    return entry


def phase_sections(config) -> list[dict]:
    """The phases after the warm-up, as sections: ``PHASE_FIELDS`` plus ``where`` (the config path
    errors name: "phases[i]", or "" for a section made from the top-level fields).

    With ``config.phases``: its entries over the top-level fields (``with_defaults``), their
    steps summing to ``total_steps``. Without: the main phase of the top-level fields
    (``phase_name``, ``total_steps``) and, with ``then``, its follow-up on the same collector, the
    steps split by ``split_steps``.
    """
    top = {"algorithm": config.algorithm, "algorithm_kwargs": config.get("algorithm_kwargs") or {},
           "collector": config.get("collector", "group_samples"),
           "collector_kwargs": config.get("collector_kwargs") or {},
           "data": config.get("data", "train"), "pairs": config.get("pairs") or {},
           "difficulty": config.get("difficulty") or {}, "reward": config.get("reward", "")}
    entries = config.get("phases")
    if entries is None:
        main_steps, follow_steps = split_steps(config)
        sections = [{**top, "name": config.get("phase_name") or "rl", "steps": main_steps}]
        if follow_steps:
            then = config.then
            sections.append(with_defaults(top, {
                "name": then.get("name") or f"{sections[0]['name']}_then", "steps": follow_steps,
                "algorithm": then.algorithm, "algorithm_kwargs": then.get("algorithm_kwargs") or {}}))
        return [{**section, "where": ""} for section in sections]
    for field in ("then", "phase_name"):
        if config.get(field):
            raise ValueError(f"config.{field} is set with config.phases; remove it and express the run as phases "
                             f"entries (each with its own name)")
    if isinstance(entries, (str, bytes)) or not isinstance(entries, (list, tuple)) or not entries:
        raise ValueError(f"config.phases={entries!r} must be a non-empty list of phase sections")
    names = {}
    sections = [{**with_defaults(top, check_phase_entry(entry, i, names, bool(config.warmup.steps))),
                 "where": f"phases[{i}]"} for i, entry in enumerate(entries)]
    total = sum(section["steps"] for section in sections)
    if total != config.total_steps:
        raise ValueError(f"total_steps={config.total_steps} but phases[*].steps sum to {total}; a run with phases "
                         f"lasts the sum of their steps: set total_steps={total} or change the steps")
    return sections


def section_call(section: dict, field: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, with an error of a ``config.phases`` entry naming ``phases[i].<field>``."""
    if not section["where"]:
        return fn(*args, **kwargs)
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError) as e:
        value = section[field]
        value = value.to_dict() if hasattr(value, "to_dict") else value  # a ConfigDict's repr spans lines
        raise ValueError(f"{section['where']}.{field}={value!r}: {e}") from e


DIFFICULTY_BOUNDS = ("min", "max")
DATA_KINDS = {"train": "train prompts", "demos": "demos", "pairs": "pairs"}


def task_difficulty(task, field: str):
    """The task's ``difficulty(example) -> number``: the function of that name in its module
    ``polrl.tasks.<task.name>``; a one-line error naming ``field`` when there is none."""
    try:
        module = importlib.import_module(f"polrl.tasks.{task.name}")
    except ImportError:
        module = None
    fn = getattr(module, "difficulty", None)
    if not callable(fn):
        raise ValueError(f"{field} is set but task {task.name!r} defines no difficulty (a difficulty(example) function "
                         f"in polrl.tasks.{task.name}); remove {field} or use a task that defines one")
    return fn


def difficulty_bounds(bounds, field: str) -> tuple[float, float]:
    """``(low, high)`` of a ``difficulty`` section {min, max} (inclusive; a missing bound is ∓inf), checked."""
    bounds = dict(bounds)
    unknown = sorted(set(bounds) - set(DIFFICULTY_BOUNDS))
    if unknown:
        raise ValueError(f"{field}.{unknown[0]} is not a difficulty bound; use min and/or max (inclusive)")
    for key in bounds:
        value = bounds[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ValueError(f"{field}.{key}={value!r} must be a number (an inclusive bound on the task's difficulty)")
    low, high = bounds.get("min", -float("inf")), bounds.get("max", float("inf"))
    if low > high:
        raise ValueError(f"{field}: min={low} > max={high}; give min <= max")
    return low, high


def select_by_difficulty(examples, difficulty, bounds, field: str, kind: str) -> list:
    """The examples x of ``examples`` with min <= difficulty(x) <= max (``bounds``, a ``difficulty``
    section), in their order; ``difficulty`` sees each example decoded (``decode_example``: str
    text), the originals are kept. An empty selection is a one-line error naming ``field``.

    A curriculum's data stages ("Light-R1: Curriculum SFT, DPO and RL for Long COT from Scratch and
    Beyond", arXiv 2503.10460: SFT stage 2 on a harder subset of stage 1's problems) are phases
    whose sections select {x : min <= d(x) <= max} of one source; the paper's d is a reference
    model's pass rate, here the task's own d (INFERRED stand-in, no model needed)."""
    low, high = difficulty_bounds(bounds, field)
    levels = [difficulty(decode_example(examples[i])) for i in range(len(examples))]
    kept = [examples[i] for i, level in enumerate(levels) if low <= level <= high]
    if not kept:
        span = f"span {min(levels)}..{max(levels)}" if levels else "are none"
        raise ValueError(f"{field}={dict(bounds)!r} selects none of the {len(levels)} {kind} (their difficulties "
                         f"{span}); widen the bounds")
    return kept


def phase_data(section: dict, task, demos: list[dict], demos_per_step: int, rollout) -> tuple:
    """``(source, prompts per step)`` of a phase section's ``data``, checked against its collector;
    with a ``difficulty`` section, only the examples it selects (``select_by_difficulty``)."""
    source, per_step = phase_source(section, task, demos, demos_per_step, rollout)
    bounds = section.get("difficulty") or {}
    if bounds:
        field = f"{section['where'] or 'config'}.difficulty"
        source = select_by_difficulty(source, task_difficulty(task, field), bounds, field,
                                      DATA_KINDS[section["data"]])
    return source, per_step


def phase_source(section: dict, task, demos: list[dict], demos_per_step: int, rollout) -> tuple:
    """``(source, prompts per step)`` of a phase section's ``data``, checked against its collector."""
    where, data, name = section["where"], section["data"], section["collector"]
    if data not in ("train", "demos", "pairs"):
        raise ValueError(f"{where or 'config'}.data={data!r}; use 'train' (prompts of the train split), 'demos' (the "
                         f"labelled set) or 'pairs' (offline preference rows, config.pairs)")
    if (data == "pairs") != (name in OFFLINE_COLLECTORS.values()):
        raise ValueError(f"{where + '.' if where else ''}collector={name!r} with data={data!r}: the offline collectors "
                         f"{sorted(OFFLINE_COLLECTORS.values())} read exactly config.data='pairs'")
    if data == "pairs":
        return preference_rows({"pairs": section["pairs"]}, task, name), section["pairs"]["batch_size"]
    if data == "demos":
        return demos, demos_per_step
    return task.train, prompts_per_step(rollout)


def collector_factory(name: str):
    """The collector factory ``polrl.collectors.<name>`` (a base collector, not a wrapper)."""
    bases = sorted(n for n in collectors.__all__ if not n.startswith("with_") and n[0].islower()
                   and callable(getattr(collectors, n)) and "ctx" in inspect.signature(getattr(collectors, n)).parameters)
    if name not in bases:
        raise ValueError(f"config.collector={name!r} is not a collector; use one of {bases}")
    return getattr(collectors, name)


def phase_collector(base, algorithm, ctx, staleness=None):
    """``base`` wrapped with what the algorithm adds (``Algorithm.collector``), then, outermost,
    with ``staleness`` (a ``collectors.stale`` wrapper, or None)."""
    collector = base if algorithm.collector is None else algorithm.collector(base, ctx)
    return collector if staleness is None else staleness(collector, ctx)


def staleness_options(config) -> tuple[int, str]:
    """``(staleness, staleness_old_policy)``, defaults ``(0, "behavior")``, validated (with
    ``async_rollouts``)."""
    k, old_policy = config.get("staleness", 0), config.get("staleness_old_policy", "behavior")
    check_stale_options(k, old_policy)
    asynchronous = config.get("async_rollouts", False)
    if not isinstance(asynchronous, bool):
        raise ValueError(f"async_rollouts={asynchronous!r} must be True or False")
    by_process = config.get("async_rollout_devices", 0) and jax.process_count() > 1
    if asynchronous and not k and not by_process:
        raise ValueError("async_rollouts=True needs staleness >= 1 (the batch of step s comes from the policy of "
                         "step s - staleness, generated while the updates in between run); set staleness (0 only "
                         "where generation has a process of its own: multi-process runs with async_rollout_devices)")
    return k, old_policy


def lookahead(config, collector, ctx, rollout_layout, update_layout=None) -> pipeline.Lookahead | None:
    """The asynchronous generator of a phase whose collector (before the ``stale`` wrapper) is
    ``collector`` (None unless ``config.async_rollouts``), generating on ``rollout_layout``'s
    devices (None: the update's), updating on ``update_layout``'s (None: the trainer's)."""
    if not config.get("async_rollouts", False):
        return None
    k, old_policy = staleness_options(config)
    if rollout_layout is not None and collector.host:
        raise ValueError("async_rollout_devices > 0 needs a collector that runs on the device; this phase's runs host "
                         "code (a verifier on strings, tools): set async_rollout_devices=0")
    generate = lagged(collector, ctx, old_policy) if k else collector.collect
    return pipeline.Lookahead(k, generate, rollout_layout, update_layout)


def layouts(config) -> tuple[sharding.Layout, sharding.Layout | None, sharding.Layout | None]:
    """``(trainer layout, rollout layout, update layout)`` of the asynchronous phases.

    * ``async_rollout_devices`` = 0: the ``mesh`` section over every device, None, None;
    * n > 0, one process: the mesh section over all but the first n devices (the trainer's layout,
      where the updates run), a data-parallel mesh over those n, None;
    * n > 0, several processes: n must be the first process's device count. The mesh section over
      every device (the synchronous phases, evaluation, checkpoints), a data-parallel mesh over the
      first process's devices (generation) and one over the other processes' (the updates:
      ``polrl.train.process_pipeline``).
    """
    n = config.get("async_rollout_devices", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"async_rollout_devices={n!r} must be an int >= 0 (0: generation shares the update's devices)")
    if not n:
        return sharding.layout_from_config(config.get("mesh")), None, None
    if not config.get("async_rollouts", False):
        raise ValueError(f"async_rollout_devices={n} needs async_rollouts=True (and staleness >= 1)")
    devices = jax.devices()
    if n >= len(devices):
        raise ValueError(f"async_rollout_devices={n} leaves none of the {len(devices)} devices for the update; "
                         f"use fewer rollout devices")
    data_parallel = lambda part: sharding.Layout(sharding.make_mesh(-1, 1, 1, devices=part))
    if jax.process_count() == 1:
        return sharding.layout_from_config(config.get("mesh"), devices=devices[n:]), data_parallel(devices[:n]), None
    first = [d for d in devices if d.process_index == devices[0].process_index]
    if devices[:n] != first:
        raise ValueError(f"async_rollout_devices={n}: in a multi-process run the first process generates and the "
                         f"others update; set it to the first process's device count ({len(first)})")
    return sharding.layout_from_config(config.get("mesh")), data_parallel(devices[:n]), data_parallel(devices[n:])


def staleness_wrapper(config):
    """``collectors.stale(config.staleness, …)`` (None when the field is 0 or absent)."""
    k, old_policy = staleness_options(config)
    return collectors.stale(k, old_policy=old_policy) if k else None


HIDDEN_SCORES = {"closeness": closeness_reward}


def reward_model_wrapper(config, tokenizer, named: dict, params: dict):
    """``collectors.with_reward_model`` for ``config.reward_model`` (None when absent): the
    reward model read from ``path`` into the shape of ``model`` (checked now) and added to the
    run's frozen models as "reward_model"."""
    rm = config.get("reward_model")
    if not rm:
        return None
    hidden = rm.get("hidden_score", "")
    if hidden and hidden not in HIDDEN_SCORES:
        raise ValueError(f"reward_model.hidden_score={hidden!r}; use '' or one of {sorted(HIDDEN_SCORES)}")
    graphdef, shapes = reward_model_structure(rm.get("model") or config.model, tokenizer.vocab_size)
    name = auxiliary.add_model(named, params, "reward_model", collectors.NamedModel(graphdef, True),
                               load_reward_params(rm.get("path", ""), shapes), "config.reward_model")
    return collectors.with_reward_model(name, hidden_score=HIDDEN_SCORES[hidden](tokenizer)
                                        if hidden else None)


DENSITY_RATIO_FIELDS = ("strong", "weak", "model", "instruction")


def density_ratio_wrapper(config, tokenizer, named: dict, params: dict):
    """``collectors.with_density_ratio`` for ``config.density_ratio`` (None when absent): the
    strong and weak policies read from their phase checkpoints into the shape of ``model`` (no
    value head, checked now) and added to the run's frozen models as "cdr_strong" / "cdr_weak" —
    or "reference", the phase's own reference, held once; ``instruction`` tokenized by the task's
    tokenizer."""
    dr = config.get("density_ratio")
    if not dr:
        return None
    unknown = sorted(set(dr) - set(DENSITY_RATIO_FIELDS))
    if unknown:
        raise ValueError(f"density_ratio has unknown field(s) {unknown}; it takes {list(DENSITY_RATIO_FIELDS)}")
    graphdef, shapes = frozen_model_structure(dr.get("model") or config.model, tokenizer.vocab_size,
                                              value_head=False, field="density_ratio.model")
    names = []
    for key in ("strong", "weak"):
        path = dr.get(key, "")
        if path == "reference":
            names.append("reference")
            continue
        value = load_params(path, shapes, policy_source(f"density_ratio.{key}", "density_ratio.model"))
        names.append(auxiliary.add_model(named, params, f"cdr_{key}", collectors.NamedModel(graphdef, False), value,
                                         f"config.density_ratio.{key}"))
    instruction = dr.get("instruction", "")
    return collectors.with_density_ratio(*names, strong_prefix=tokenizer.encode(instruction) if instruction else None)


DETECT_PENALTY_FIELDS = ("coef", "detector", "model", "separator")


def separator_id(tokenizer, text: str, field: str) -> int:
    """The one token ``text`` encodes to (a sentence separator for burstiness)."""
    ids = tokenizer.encode(text)
    if len(ids) != 1:
        raise ValueError(f"{field}={text!r} encodes to {len(ids)} tokens; give a text of exactly one token")
    return int(ids[0])


def eval_detect_separator(config, tokenizer) -> int | None:
    """``eval.detect``'s sentence separator id (``eval.detect_separator``, default ","), None when off."""
    detect = config.eval.get("detect", False)
    if not isinstance(detect, bool):
        raise ValueError(f"eval.detect={detect!r} must be True or False (CT² detector metrics at each evaluation)")
    return separator_id(tokenizer, config.eval.get("detect_separator", ","), "eval.detect_separator") if detect else None


def detect_penalty_wrapper(config, tokenizer):
    """``collectors.with_detectability_penalty`` for ``config.detect_penalty`` (None when absent)."""
    dp = config.get("detect_penalty")
    if not dp:
        return None
    unknown = sorted(set(dp) - set(DETECT_PENALTY_FIELDS))
    if unknown:
        raise ValueError(f"detect_penalty has unknown field(s) {unknown}; it takes {list(DETECT_PENALTY_FIELDS)}")
    if "coef" not in dp:
        raise ValueError("detect_penalty needs coef (λ >= 0, the weight of the detector's score in the reward)")
    return collectors.with_detectability_penalty(
        dp["coef"], model=dp.get("model", "reference"), detector=dp.get("detector", "log_likelihood"),
        separator_id=separator_id(tokenizer, dp.get("separator", ","), "detect_penalty.separator"))


def scoring_wrapper(config, tokenizer, named: dict, params: dict):
    """The wrapper whose score replaces the verifier's reward in the main phase:
    ``reward_model_wrapper`` or ``density_ratio_wrapper`` (None when neither is configured);
    the models they load join ``named`` / ``params``."""
    if config.get("reward_model") and config.get("density_ratio"):
        raise ValueError("config.reward_model and config.density_ratio both replace the verifier's reward; set only "
                         "one of them")
    rm = reward_model_wrapper(config, tokenizer, named, params)
    return rm or density_ratio_wrapper(config, tokenizer, named, params)


PHASE_REWARDS = ("", "self_judge")


def phase_scorer(section: dict, scored_by):
    """The wrapper whose score is the phase's reward: the run's (``scoring_wrapper``, None = the
    task's verifier) for ``reward`` "", the policy's own judge (SPARK's
    ``collectors.with_self_judge``) for "self_judge"."""
    reward = section["reward"]
    if reward not in PHASE_REWARDS:
        field = f"{section['where']}.reward" if section["where"] else "config.reward"
        raise ValueError(f"{field}={reward!r}; use '' (the run's reward: the verifier, or config.reward_model / "
                         f"density_ratio) or 'self_judge' (the policy's own verdict, after SPARK's judge training)")
    return collectors.with_self_judge() if reward == "self_judge" else scored_by


def scored_collector(make_collector, ctx, kwargs: dict, scored_by):
    """The main phase's base collector with ``scored_by``'s reward: passed in to a collector
    that ranks its samples by reward (one taking ``scored_by``: ``preference_pairs``, so the pairs
    are chosen by that reward), wrapped around any other."""
    if scored_by is None:
        return make_collector(ctx, **kwargs)
    if "scored_by" in inspect.signature(make_collector).parameters:
        return make_collector(ctx, scored_by=scored_by, **kwargs)
    return scored_by(make_collector(ctx, **kwargs), ctx)


def eval_options(config) -> tuple[int, tuple[int, ...]]:
    """``(eval.samples, eval.pass_k)``: samples default 0 (off); pass_k default () = {1, samples}."""
    samples = config.eval.get("samples", 0)
    pass_k = config.eval.get("pass_k", None)
    return samples, tuple(pass_k) if pass_k else ()


def method_key(section: dict) -> str:
    """What fixes a phase's compiled step: its algorithm and collector with their keywords, and its reward."""
    plain = lambda v: v.to_dict() if hasattr(v, "to_dict") else v  # a ConfigDict's keywords as a dict
    return json.dumps([plain(section[k]) for k in ("algorithm", "algorithm_kwargs", "collector", "collector_kwargs",
                                                   "reward")],
                      sort_keys=True, default=repr)


def build_spec(config, *, progress: bool = True) -> RunSpec:
    """Resolves names to real objects and validates what can be checked without compiling."""
    layout, rollout_layout, update_layout = layouts(config)  # mesh vs devices, first
    guard_steps = max_nonfinite_steps(config)
    staleness_options(config)  # a bad staleness fails before the task and the model are built
    model_kw = models.model_kwargs(config.model)
    lora_rank, lora_alpha = model_kw.pop("lora_rank", 0), model_kw.pop("lora_alpha", None)
    hf_path = model_kw.pop("hf_path", "")
    sections = phase_sections(config)
    main_algos = [section_call(s, "algorithm", lambda: algorithms.get(s["algorithm"])(**dict(s["algorithm_kwargs"])))
                  for s in sections]
    factories = [section_call(s, "collector", collector_factory, s["collector"]) for s in sections]
    task = build_task(config, tokenizer=hf_tokenizer(hf_path))
    demos = demonstrations(task, config.demos.num, config.seed)
    data = [phase_data(s, task, demos, config.demos.batch_size, config.rollout) for s in sections]
    algos = [algorithms.sft(learning_rate=config.warmup.learning_rate)] if config.warmup.steps else []
    algos += main_algos

    needs_values = any("values" in a.needs for a in algos)
    model = models.build_model(model_kw, vocab_size=task.tokenizer.vocab_size, value_head=needs_values,
                               seed=config.seed, hf_path=hf_path)
    if lora_rank:  # train LoRA adapters only: base weights get zero updates and no optimizer state
        apply_lora(model, rank=lora_rank, alpha=lora_alpha, rngs=nnx.Rngs(config.seed + 1))
        algos = [lora_algorithm(a) for a in algos]
    graphdef, params = nnx.split(model, nnx.Param)

    r = config.rollout
    sampling = SamplingConfig(
        max_new_tokens=r.max_new_tokens or task.max_answer_len,
        eos_id=task.tokenizer.eos_id,
        pad_id=task.tokenizer.pad_id,
        temperature=r.temperature,
        top_k=r.top_k,
        top_p=r.top_p,
        min_p=r.get("min_p", 0.0),
    )
    named, aux_params = auxiliary.load_models(config, task.tokenizer.vocab_size)
    scored_by = scoring_wrapper(config, task.tokenizer, named, aux_params)
    penalty = detect_penalty_wrapper(config, task.tokenizer)
    ctx = collectors.Context(graphdef=graphdef, task=task, sampling=sampling, group_size=r.group_size, layout=layout,
                             models=named, params_template=jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                                                                        params))
    phases = []
    if config.warmup.steps:
        phases.append(Phase("sft_warmup", algos.pop(0), collectors.demonstrations(ctx), config.warmup.steps,
                            config.demos.batch_size, demos))
    stale = staleness_wrapper(config)
    built = {}  # phases with the same method share one (algorithm, collector): the trainer compiles their step once
    for i, (s, algo, make_collector, (source, per_step)) in enumerate(zip(sections, algos, factories, data, strict=True)):
        key = method_key(s)
        if key not in built:
            base = section_call(s, "collector_kwargs", scored_collector, make_collector, ctx, dict(s["collector_kwargs"]),
                                phase_scorer(s, scored_by))
            if penalty is not None and s["reward"] == "":
                base = penalty(base, ctx)
            if i == 0 and "reference" in base.needs and not config.warmup.steps:
                raise ValueError(f"collector={s['collector']!r} samples from the reference, the warm model: set "
                                 f"warmup.steps > 0")
            inner = phase_collector(base, algo, ctx)
            ahead = lookahead(config, inner, ctx, rollout_layout, update_layout)
            built[key] = (algo, phase_collector(base, algo, ctx, stale), ahead)
        algo, collector, ahead = built[key]
        phases.append(Phase(s["name"], algo, collector, s["steps"], per_step, source, lookahead=ahead))
    eval_samples, eval_pass_k = eval_options(config)
    prefix = config.eval.get("prompt_prefix", "")
    return RunSpec(
        task=task,
        graphdef=graphdef,
        init_params=params,
        phases=tuple(phases),
        sampling=sampling,
        seed=config.seed,
        eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every,
        eval_examples=config.eval.num_examples,
        eval_batch_size=config.eval.batch_size,
        log_every=config.get("log_every", 1),
        progress=progress,
        layout=layout,
        max_nonfinite_steps=guard_steps,
        models=aux_params,
        eval_samples=eval_samples,
        eval_pass_k=eval_pass_k,
        eval_prompt_prefix=tuple(task.tokenizer.encode(prefix)) if prefix else (),
        eval_detect_separator=eval_detect_separator(config, task.tokenizer),
    )

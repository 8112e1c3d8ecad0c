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
  then:       optional follow-up phase on the same batches: algorithm, algorithm_kwargs,
              switch_fraction (the main phase runs round(f · total_steps) steps, the follow-up
              the rest), name (default "<main phase>_then"); it starts from the main phase's
              final parameters, which also become its reference (ReMix's policy reincarnation)
  batches:    "demonstrations" | "rollouts" | "preference_pairs"
  rollout:    batch_size (sequences per step = prompts × group_size), group_size,
              max_new_tokens (0 → the task's longest answer),
              temperature, top_k, top_p
  eval:       num_examples, batch_size
  mesh:       optional; data, fsdp, tensor (-1 fills; 1 × 1 × 1 or no section = one device, no
              mesh), update_rules / rollout_rules (default polrl.sharding.UPDATE_RULES /
              ROLLOUT_RULES)
  guards:     optional; max_nonfinite_steps (default 5): consecutive steps whose updates were
              skipped for a non-finite loss or gradient before the run stops

``model.dtype`` / ``model.param_dtype`` may be "float32" or "bfloat16".
"""
from __future__ import annotations

import dataclasses
import inspect
import os

import jax.numpy as jnp
import numpy as np
from flax import nnx

from polrl import algorithms, sharding
from polrl.models import Transformer, TransformerConfig
from polrl.models.hf import load_hf
from polrl.models.hf_tokenizer import HFTokenizer
from polrl.models.lora import apply_lora, lora_algorithm
from polrl.rollout import SamplingConfig
from polrl.tasks import get_task, registry
from polrl.train.trainer import Phase, RunSpec

PHASE_NAMES = {"demonstrations": "sft", "rollouts": "rl", "preference_pairs": "dpo"}


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


# TransformerConfig fields that a checkpoint's config.json fixes (see polrl.models.hf_config).
CHECKPOINT_FIELDS = ("vocab_size", "d_model", "num_layers", "num_heads", "num_kv_heads", "mlp_dim",
                     "head_dim", "rope_theta", "rope_scaling", "norm_eps", "tie_embeddings", "qkv_bias",
                     "activation", "norm_offset", "scale_embeddings", "post_norms", "attn_softcap",
                     "final_softcap", "query_pre_attn_scalar", "sliding_window", "sliding_layers")
LOAD_HF_OPTIONS = ("dtype", "param_dtype", "max_len", "remat")


def hf_tokenizer(hf_path: str) -> HFTokenizer | None:
    """The tokenizer of the checkpoint at ``model.hf_path`` (None when it is "")."""
    if not hf_path:
        return None
    if not os.path.isdir(hf_path):
        raise ValueError(f"model.hf_path={hf_path!r} is not a directory; point it at a local Hugging Face "
                         f"checkpoint (config.json, *.safetensors, tokenizer.json)")
    return HFTokenizer.from_dir(hf_path)


def pretrained_model(hf_path: str, model_kw: dict, *, value_head: bool) -> Transformer:
    """The checkpoint at ``hf_path`` (``load_hf``) with the run options of ``model_kw``.

    ``model_kw``: resolved ``config.model`` fields other than ``hf_path``. dtype / param_dtype /
    max_len / remat go to ``load_hf``; other run options (e.g. ``logits_chunk_size``) replace
    the loaded config's; ``CHECKPOINT_FIELDS`` must equal the checkpoint's (ValueError otherwise).
    """
    options = dict(model_kw)
    fixed = {k: options.pop(k) for k in CHECKPOINT_FIELDS if k in options}
    load = {k: options.pop(k) for k in LOAD_HF_OPTIONS if k in options}
    model, _ = load_hf(hf_path, value_head=value_head, **load)
    conflicts = [f"model.{k}={v!r} (checkpoint: {getattr(model.config, k)!r})"
                 for k, v in fixed.items() if getattr(model.config, k) != v]
    if conflicts:
        raise ValueError(
            f"model.hf_path={hf_path!r} fixes the model's shape, but the config sets {', '.join(conflicts)}; "
            f"remove these fields from config.model (with hf_path they come from config.json)"
        )
    if not options:
        return model
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(TransformerConfig)})
    if unknown:
        raise ValueError(f"config.model has {unknown}, which are not TransformerConfig fields; remove them")
    config = dataclasses.replace(model.config, **options)
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0))))
    return nnx.merge(graphdef, nnx.state(model, nnx.Param))


def demonstrations(task, num: int, seed: int) -> list[dict]:
    """A fixed labelled set: ``num`` training examples drawn once with ``seed``."""
    if not 0 < num <= len(task.train):
        raise ValueError(f"demos.num={num} must be in [1, {len(task.train)}] (the train split size)")
    idx = np.random.default_rng([seed, 7]).permutation(len(task.train))[:num]
    return [task.train[int(i)] for i in idx]


def prompts_per_step(rollout) -> int:
    """Prompts per step: ``rollout.batch_size`` sequences in groups of ``rollout.group_size``."""
    if rollout.group_size < 1 or rollout.batch_size % rollout.group_size:
        raise ValueError(
            f"rollout.batch_size={rollout.batch_size} is not divisible by rollout.group_size="
            f"{rollout.group_size}; make batch_size a multiple of group_size (prompts × samples per prompt)"
        )
    return rollout.batch_size // rollout.group_size


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
DEFAULT_MAX_NONFINITE_STEPS = 5


def model_kwargs(model) -> dict:
    """``config.model`` as TransformerConfig keywords, dtype names resolved (float32 / bfloat16)."""
    kwargs = dict(model)
    for field in ("dtype", "param_dtype"):
        if field not in kwargs:
            continue
        value = kwargs[field]
        name = value if isinstance(value, str) else jnp.dtype(value).name
        if name not in DTYPES:
            raise ValueError(f"model.{field}={value!r}; use one of {sorted(DTYPES)}")
        kwargs[field] = DTYPES[name]
    return kwargs


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


def build_spec(config, *, progress: bool = True) -> RunSpec:
    """Resolves names to real objects and validates what can be checked without compiling."""
    layout = sharding.layout_from_config(config.get("mesh"))  # mesh vs devices, first
    guard_steps = max_nonfinite_steps(config)
    model_kw = model_kwargs(config.model)
    lora_rank, lora_alpha = model_kw.pop("lora_rank", 0), model_kw.pop("lora_alpha", None)
    hf_path = model_kw.pop("hf_path", "")
    algo_fn = algorithms.get(config.algorithm)
    main = algo_fn(**dict(config.algorithm_kwargs))
    if config.batches not in PHASE_NAMES:
        raise ValueError(f"config.batches={config.batches!r}; use one of {sorted(PHASE_NAMES)}")
    task = build_task(config, tokenizer=hf_tokenizer(hf_path))
    demos = demonstrations(task, config.demos.num, config.seed)
    phases = []
    if config.warmup.steps:
        warm = algorithms.sft(learning_rate=config.warmup.learning_rate)
        phases.append(Phase("sft_warmup", warm, "demonstrations", config.warmup.steps, config.demos.batch_size, demos))
    main_is_sft = config.batches == "demonstrations"
    main_steps, follow_steps = split_steps(config)
    per_step = config.demos.batch_size if main_is_sft else prompts_per_step(config.rollout)
    source = demos if main_is_sft else task.train
    phases.append(Phase(PHASE_NAMES[config.batches], main, config.batches, main_steps, per_step, source))
    if follow_steps:
        then = config.then
        follow = algorithms.get(then.algorithm)(**dict(then.get("algorithm_kwargs", {})))
        name = then.get("name") or f"{PHASE_NAMES[config.batches]}_then"
        phases.append(Phase(name, follow, config.batches, follow_steps, per_step, source))
    if config.batches == "preference_pairs" and not config.warmup.steps:
        raise ValueError("batches='preference_pairs' samples pairs from the warm model: set warmup.steps > 0")

    needs_values = any("values" in ph.algorithm.needs for ph in phases)
    if hf_path:
        model = pretrained_model(hf_path, model_kw, value_head=needs_values)
        if task.tokenizer.vocab_size > model.config.vocab_size:
            raise ValueError(
                f"model.hf_path={hf_path!r}: the tokenizer has {task.tokenizer.vocab_size} ids but the "
                f"embedding only {model.config.vocab_size} rows; the checkpoint's tokenizer.json and "
                f"weights do not belong together"
            )
    else:
        model_cfg = TransformerConfig(vocab_size=task.tokenizer.vocab_size, value_head=needs_values, **model_kw)
        model = Transformer(model_cfg, rngs=nnx.Rngs(config.seed))
    if lora_rank:  # train LoRA adapters only: base weights get zero updates and no optimizer state
        apply_lora(model, rank=lora_rank, alpha=lora_alpha, rngs=nnx.Rngs(config.seed + 1))
        phases = [dataclasses.replace(ph, algorithm=lora_algorithm(ph.algorithm)) for ph in phases]
    graphdef, params = nnx.split(model, nnx.Param)

    r = config.rollout
    sampling = SamplingConfig(
        max_new_tokens=r.max_new_tokens or task.max_answer_len,
        eos_id=task.tokenizer.eos_id,
        pad_id=task.tokenizer.pad_id,
        temperature=r.temperature,
        top_k=r.top_k,
        top_p=r.top_p,
    )
    return RunSpec(
        task=task,
        graphdef=graphdef,
        init_params=params,
        phases=tuple(phases),
        sampling=sampling,
        group_size=r.group_size,
        seed=config.seed,
        eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every,
        eval_examples=config.eval.num_examples,
        eval_batch_size=config.eval.batch_size,
        log_every=config.get("log_every", 1),
        progress=progress,
        layout=layout,
        max_nonfinite_steps=guard_steps,
    )

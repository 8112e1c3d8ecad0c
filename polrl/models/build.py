"""Building the policy model a config describes: a random-init Transformer or a Hugging Face
checkpoint, with the run's options.

Every model polrl trains follows one protocol (what the rollout engine, the scorer and the
trainer call; ``Transformer`` implements it):

    model.config                  vocab_size, d_model, dtype (and the model's own fields)
    model.max_len                 longest sequence (cache columns, RoPE positions)
    model.init_cache(B, L)        an empty KV cache of L columns for B rows (per-row write index)
    model.forward(tokens_bt, positions_bt, valid_bt, cache=None) -> (hidden_btd, cache)
    model.logits(hidden) -> logits    (float32; the LM head)
    model.value(hidden) -> value      (float32; only with a value head)

It is split once into ``(graphdef, params)`` (``nnx.split(model, nnx.Param)``) and merged inside
jitted steps. A new model family implements these and is built here.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx

from polrl.models.hf import load_hf
from polrl.models.transformer import Transformer, TransformerConfig

# TransformerConfig fields that a checkpoint's config.json fixes (see polrl.models.hf_config).
CHECKPOINT_FIELDS = ("vocab_size", "d_model", "num_layers", "num_heads", "num_kv_heads", "mlp_dim",
                     "head_dim", "rope_theta", "rope_scaling", "norm_eps", "tie_embeddings", "qkv_bias",
                     "activation", "norm_offset", "scale_embeddings", "post_norms", "attn_softcap",
                     "final_softcap", "query_pre_attn_scalar", "sliding_window", "sliding_layers",
                     "qk_norm", "rope_local_theta", "num_experts", "experts_per_token", "expert_mlp_dim",
                     "moe_layers", "renormalize_topk")
LOAD_HF_OPTIONS = ("dtype", "param_dtype", "max_len", "remat")


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


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


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


def build_model(model_kw: dict, *, vocab_size: int, value_head: bool, seed: int, hf_path: str = "") -> nnx.Module:
    """The policy: the checkpoint at ``hf_path`` (``pretrained_model``) or a random-init
    ``Transformer(TransformerConfig(vocab_size, value_head, **model_kw))`` drawn with ``seed``.

    ``model_kw``: ``model_kwargs(config.model)`` without ``hf_path`` / LoRA fields. With a
    checkpoint, its tokenizer must fit the embedding (``vocab_size`` ≤ the checkpoint's).
    """
    if hf_path:
        model = pretrained_model(hf_path, model_kw, value_head=value_head)
        if vocab_size > model.config.vocab_size:
            raise ValueError(
                f"model.hf_path={hf_path!r}: the tokenizer has {vocab_size} ids but the embedding only "
                f"{model.config.vocab_size} rows; the checkpoint's tokenizer.json and weights do not belong together"
            )
        return model
    return Transformer(TransformerConfig(vocab_size=vocab_size, value_head=value_head, **model_kw), rngs=nnx.Rngs(seed))

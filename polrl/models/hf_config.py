"""Hugging Face ``config.json`` ↔ :class:`TransformerConfig`, for the Llama, Qwen2, Gemma and Gemma 2 families.

What each family sets (everything else is shared: GQA, RoPE rotate-half, pre-norm RMSNorm,
scores scaled by 1/√head_dim):

    =========  =============  ===========  ================  ===========  ====================
    family     MLP            q/k/v bias   RMSNorm           embeddings   head
    =========  =============  ===========  ================  ===========  ====================
    llama      SwiGLU         no           x̂ · w             E[x]         tied or untied
    qwen2      SwiGLU         yes          x̂ · w             E[x]         tied or untied
    gemma      GeGLU (tanh)   no           x̂ · (1 + w)       E[x]·√d      tied
    gemma2     as gemma, plus post-norms on both branches, tanh soft-capping of attention
               scores and logits, 1/√query_pre_attn_scalar score scale, sliding-window
               attention on the layers ``layer_types`` marks "sliding_attention"
    =========  =============  ===========  ================  ===========  ====================

Both ways of writing RoPE settings are read: the transformers<5 keys ``rope_theta`` /
``rope_scaling`` and the transformers≥5 ``rope_parameters`` dict. Exports write the former,
which every transformers version reads. Keys a checkpoint omits take the family's
transformers defaults (INFERRED from transformers 5.x ``Llama/Qwen2/GemmaConfig``).
"""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from polrl.models.transformer import RopeScaling, TransformerConfig

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "gemma", "gemma2")

# transformers' defaults for keys a config.json may leave out.
_FAMILY_DEFAULTS = {
    "llama": dict(tie_word_embeddings=False, max_position_embeddings=2048, hidden_act="silu"),
    "qwen2": dict(tie_word_embeddings=False, max_position_embeddings=32768, hidden_act="silu"),
    "gemma": dict(tie_word_embeddings=True, max_position_embeddings=8192,
                  hidden_act="gelu_pytorch_tanh", head_dim=256),
    "gemma2": dict(tie_word_embeddings=True, max_position_embeddings=8192,
                   hidden_act="gelu_pytorch_tanh", head_dim=256, query_pre_attn_scalar=256,
                   sliding_window=4096, final_logit_softcapping=30.0,
                   attn_logit_softcapping=50.0),
}
# Keys where an explicit null means "off" rather than "use the default".
_NULLABLE = ("sliding_window", "final_logit_softcapping", "attn_logit_softcapping")
_ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                  "gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM"}
# HF activation names → TransformerConfig.activation. Gemma's legacy "gelu" means the tanh
# approximation (transformers rewrites it to "gelu_pytorch_tanh" with a warning).
_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh",
                "gelu_tanh": "gelu_tanh"}


def _rope_settings(hf: dict) -> tuple[float, RopeScaling | None]:
    """(theta, scaling) from either the legacy keys or ``rope_parameters``."""
    params = dict(hf.get("rope_parameters") or {})
    legacy = hf.get("rope_scaling") or {}
    theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
    scaling = {**legacy, **params}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if float(scaling.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))) != 1.0:
        raise ValueError("config.json: partial_rotary_factor != 1 (RoPE on part of each head) is "
                         "not supported by polrl's Transformer.")
    if kind == "default":
        return theta, None
    if kind not in ("linear", "llama3"):
        raise ValueError(
            f"config.json: rope scaling type {kind!r} is not supported; supported: 'default', "
            "'linear', 'llama3'. Remove rope_scaling to run at the original context length.")
    extra = {}
    if kind == "llama3":
        extra = dict(low_freq_factor=float(scaling["low_freq_factor"]),
                     high_freq_factor=float(scaling["high_freq_factor"]),
                     original_max_len=int(scaling["original_max_position_embeddings"]))
    return theta, RopeScaling(kind, float(scaling["factor"]), **extra)


def _check_family_options(model_type: str, hf: dict) -> None:
    """Refuses options of the family that the Transformer does not implement."""
    if model_type != "qwen2" and (hf.get("attention_bias") or hf.get("mlp_bias")):
        raise ValueError(f"config.json: {model_type} with attention_bias / mlp_bias (biases on "
                         "o_proj or the MLP) is not supported; only Qwen2-style q/k/v biases are.")
    if hf.get("use_bidirectional_attention"):
        raise ValueError("config.json: use_bidirectional_attention=true (an encoder) is not "
                         "supported; polrl's Transformer is a causal decoder.")
    if model_type == "qwen2" and hf.get("use_sliding_window"):
        raise ValueError("config.json: Qwen2 with use_sliding_window=true is not supported; set "
                         "it to false (full attention) if the context fits the window.")
    if model_type.startswith("gemma") and not hf.get("tie_word_embeddings", True):
        raise ValueError("config.json: Gemma with tie_word_embeddings=false is not supported.")


def config_from_hf(hf: dict, *, dtype: Any = jnp.float32, param_dtype: Any = jnp.float32,
                   max_len: int | None = None, **overrides) -> TransformerConfig:
    """A TransformerConfig computing what transformers computes for the ``config.json`` dict ``hf``.

    ``max_len`` (default: max_position_embeddings) bounds positions and the RoPE table; a
    smaller one saves memory when sequences are short. ``overrides`` go to TransformerConfig
    (e.g. ``value_head=True``, ``remat=True``).
    """
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"config.json: unsupported model_type {model_type!r}; polrl imports "
                         f"{SUPPORTED_MODEL_TYPES}.")
    hf = {**_FAMILY_DEFAULTS[model_type],
          **{k: v for k, v in hf.items() if v is not None or k in _NULLABLE}}
    _check_family_options(model_type, hf)
    act_name = hf.get("hidden_activation") or hf["hidden_act"]
    gemma = model_type.startswith("gemma")
    if gemma and act_name == "gelu":
        act_name = "gelu_pytorch_tanh"
    if act_name not in _ACTIVATIONS:
        raise ValueError(f"config.json: hidden_act {act_name!r} is not supported; supported: "
                         f"{sorted(_ACTIVATIONS)}.")
    theta, scaling = _rope_settings(hf)
    num_heads = int(hf["num_attention_heads"])
    if model_type == "gemma2":
        overrides = {**_gemma2_options(hf, int(hf["num_hidden_layers"])), **overrides}
    return TransformerConfig(
        vocab_size=int(hf["vocab_size"]),
        d_model=int(hf["hidden_size"]),
        num_layers=int(hf["num_hidden_layers"]),
        num_heads=num_heads,
        num_kv_heads=int(hf.get("num_key_value_heads") or num_heads),
        mlp_dim=int(hf["intermediate_size"]),
        head_dim=int(hf["head_dim"]) if hf.get("head_dim") else None,
        max_len=int(max_len or hf["max_position_embeddings"]),
        rope_theta=theta,
        rope_scaling=scaling,
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(hf["tie_word_embeddings"]),
        qkv_bias=model_type == "qwen2",
        activation=_ACTIVATIONS[act_name],
        norm_offset=1.0 if gemma else 0.0,
        scale_embeddings=gemma,
        dtype=dtype,
        param_dtype=param_dtype,
        **overrides,
    )


def _gemma2_options(hf: dict, num_layers: int) -> dict:
    """Gemma 2's extra TransformerConfig fields. ``layer_types`` defaults to HF's pattern:
    even layers (0, 2, …) slide, odd ones attend to everything."""
    layer_types = hf.get("layer_types") or [
        "sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(num_layers)]
    window = hf.get("sliding_window")
    sliding = tuple(i for i, kind in enumerate(layer_types) if kind == "sliding_attention")
    caps = {name: None if hf.get(key) is None else float(hf[key]) for name, key in
            (("attn_softcap", "attn_logit_softcapping"),
             ("final_softcap", "final_logit_softcapping"))}
    return dict(post_norms=True, query_pre_attn_scalar=float(hf["query_pre_attn_scalar"]),
                sliding_window=None if window is None else int(window),
                sliding_layers=sliding if window is not None else (), **caps)


def model_type_of(config: TransformerConfig) -> str:
    """The HF family that computes what ``config`` computes, or a ValueError.

    Gemma: GeGLU + norm offset 1 + scaled, tied embeddings; Gemma 2: that plus post-norms
    (soft-caps, score scalar and sliding window optional); Qwen2: q/k/v biases (Qwen2 always
    has them); otherwise Llama (HF Llama's ``attention_bias`` would add an o_proj bias too).
    """
    gemma_parts = (config.activation == "gelu_tanh", config.norm_offset == 1.0,
                   config.scale_embeddings)
    gemma2_only = (config.attn_softcap is not None, config.final_softcap is not None,
                   config.query_pre_attn_scalar is not None, bool(config.sliding_layers))
    if all(gemma_parts) and config.tie_embeddings and not config.qkv_bias:
        if config.post_norms:
            return "gemma2"
        if not any(gemma2_only):
            return "gemma"
    elif not (any(gemma_parts) or config.post_norms or any(gemma2_only)
              or config.norm_offset != 0.0):
        return "qwen2" if config.qkv_bias else "llama"
    raise ValueError(
        "save_hf: no HF family matches this TransformerConfig (activation="
        f"{config.activation!r}, norm_offset={config.norm_offset}, scale_embeddings="
        f"{config.scale_embeddings}, tie_embeddings={config.tie_embeddings}, post_norms="
        f"{config.post_norms}); Gemma needs gelu_tanh, norm_offset=1, scale_embeddings and tied "
        "embeddings, Gemma 2 also post_norms (the only family with soft-caps, a score scalar or "
        "sliding layers), Llama/Qwen2 none of these.")


def _int_if_whole(x: float) -> int | float:
    """transformers types some float-valued fields as int (Gemma 2's query_pre_attn_scalar)."""
    return int(x) if float(x).is_integer() else x


def config_to_hf(config: TransformerConfig, *, torch_dtype: str = "float32",
                 **extra) -> dict:
    """The ``config.json`` dict of ``config`` (family from :func:`model_type_of`).

    ``extra`` adds keys such as ``bos_token_id`` / ``eos_token_id`` / ``pad_token_id``.
    """
    model_type = model_type_of(config)
    if config.rope_scaling is None:
        rope_scaling = None
    elif config.rope_scaling.kind == "linear":
        rope_scaling = {"rope_type": "linear", "factor": config.rope_scaling.factor}
    else:
        s = config.rope_scaling
        rope_scaling = {"rope_type": "llama3", "factor": s.factor,
                        "low_freq_factor": s.low_freq_factor,
                        "high_freq_factor": s.high_freq_factor,
                        "original_max_position_embeddings": s.original_max_len}
    hf = {
        "architectures": [_ARCHITECTURES[model_type]],
        "model_type": model_type,
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.mlp_dim,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.max_len,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": rope_scaling,
        "tie_word_embeddings": config.tie_embeddings,
        "hidden_act": "gelu_pytorch_tanh" if model_type.startswith("gemma") else "silu",
        "torch_dtype": torch_dtype,
    }
    if model_type == "llama":
        hf.update(attention_bias=False, mlp_bias=False)
    if model_type == "qwen2":
        hf.update(use_sliding_window=False)
    if model_type == "gemma2":
        hf.update(
            query_pre_attn_scalar=_int_if_whole(config.query_pre_attn_scalar or config.head_dim),
            attn_logit_softcapping=config.attn_softcap,
            final_logit_softcapping=config.final_softcap,
            sliding_window=config.sliding_window if config.sliding_layers else None,
            layer_types=["sliding_attention" if i in config.sliding_layers else "full_attention"
                         for i in range(config.num_layers)])
    return {**hf, **extra}

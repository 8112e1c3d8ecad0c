"""Hugging Face ``config.json`` ↔ :class:`TransformerConfig`, for the Llama, Qwen2, Qwen3, Qwen3-MoE,
Gemma, Gemma 2 and Gemma 3 (text) families.

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
    qwen3      as llama, plus RMSNorm of each query / key head (q_norm, k_norm) before RoPE;
               head_dim may differ from hidden_size / heads
    qwen3_moe  qwen3 whose sparse layers (every ``decoder_sparse_step``-th, minus
               ``mlp_only_layers``) use a top-k mixture of experts (:mod:`polrl.models.moe`)
    gemma3     gemma2 plus q/k norms (1 + w); "sliding_attention" layers (``layer_types``, or
    _text      every layer but each ``sliding_window_pattern``-th) rotate with their own RoPE base
               (``rope_local_base_freq``, unscaled); soft-capping only where configured
    =========  =============  ===========  ================  ===========  ====================

Both ways of writing RoPE settings are read: the transformers<5 keys ``rope_theta`` /
``rope_scaling`` (Gemma 3: plus ``rope_local_base_freq``) and the transformers≥5
``rope_parameters`` dict (Gemma 3: one per layer type). Exports write the former, which every
transformers version reads. Keys a checkpoint omits take the family's transformers defaults
(INFERRED from transformers 5.x ``Llama/Qwen2/Qwen3/Qwen3Moe/Gemma/Gemma3TextConfig``).
Qwen3-MoE's expert count is read from ``num_experts`` (the Hub's key) or ``num_local_experts``
(what transformers 5 writes); the router's auxiliary loss settings are not used (no logit
depends on them).
"""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from polrl.models.transformer import RopeScaling, TransformerConfig

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "gemma", "gemma2", "qwen3", "qwen3_moe", "gemma3_text")

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
    "qwen3": dict(tie_word_embeddings=False, max_position_embeddings=32768, hidden_act="silu",
                  head_dim=128),
    "qwen3_moe": dict(tie_word_embeddings=False, max_position_embeddings=32768, hidden_act="silu",
                      decoder_sparse_step=1, moe_intermediate_size=768, num_experts_per_tok=8,
                      norm_topk_prob=False),
    "gemma3_text": dict(tie_word_embeddings=True, max_position_embeddings=131072,
                        hidden_act="gelu_pytorch_tanh", head_dim=256, query_pre_attn_scalar=256,
                        sliding_window=4096, sliding_window_pattern=6, rope_theta=1e6,
                        rope_local_base_freq=10000.0, final_logit_softcapping=None,
                        attn_logit_softcapping=None),
}
# Qwen3-MoE's default expert count (not in the defaults above: the key has two spellings).
_QWEN3_MOE_EXPERTS = 128
# Keys where an explicit null means "off" rather than "use the default".
_NULLABLE = ("sliding_window", "final_logit_softcapping", "attn_logit_softcapping")
_ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                  "gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM",
                  "qwen3": "Qwen3ForCausalLM", "qwen3_moe": "Qwen3MoeForCausalLM",
                  "gemma3_text": "Gemma3ForCausalLM"}
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
    if model_type.startswith("qwen") and hf.get("use_sliding_window"):
        raise ValueError(f"config.json: {model_type} with use_sliding_window=true is not supported; "
                         "set it to false (full attention) if the context fits the window.")
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
    num_layers = int(hf["num_hidden_layers"])
    if model_type == "gemma2":
        overrides = {**_gemma2_options(hf, num_layers), **overrides}
    if model_type == "gemma3_text":
        theta, scaling, local_theta = _gemma3_rope(hf)
        overrides = {**_gemma3_options(hf, num_layers, local_theta), **overrides}
    if model_type in ("qwen3", "qwen3_moe"):
        overrides = {"qk_norm": True, **overrides}
    if model_type == "qwen3_moe":
        overrides = {**_qwen3_moe_options(hf, num_layers), **overrides}
    return TransformerConfig(
        vocab_size=int(hf["vocab_size"]),
        d_model=int(hf["hidden_size"]),
        num_layers=num_layers,
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


def _layer_types(hf: dict, num_layers: int, pattern: int) -> list[str]:
    """``layer_types``, by default HF's pattern: every ``pattern``-th layer (Gemma 2: the odd
    ones) attends to everything, the others slide."""
    return hf.get("layer_types") or [
        "sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(num_layers)]


def _gemma2_options(hf: dict, num_layers: int, pattern: int = 2) -> dict:
    """Gemma 2's extra TransformerConfig fields (layer kinds from :func:`_layer_types`)."""
    layer_types = _layer_types(hf, num_layers, pattern)
    window = hf.get("sliding_window")
    sliding = tuple(i for i, kind in enumerate(layer_types) if kind == "sliding_attention")
    caps = {name: None if hf.get(key) is None else float(hf[key]) for name, key in
            (("attn_softcap", "attn_logit_softcapping"),
             ("final_softcap", "final_logit_softcapping"))}
    return dict(post_norms=True, query_pre_attn_scalar=float(hf["query_pre_attn_scalar"]),
                sliding_window=None if window is None else int(window),
                sliding_layers=sliding if window is not None else (), **caps)


def _gemma3_rope(hf: dict) -> tuple[float, RopeScaling | None, float]:
    """(theta, scaling) of the global layers and the local layers' theta, from the per-layer-type
    ``rope_parameters`` (transformers≥5) or ``rope_theta`` / ``rope_scaling`` /
    ``rope_local_base_freq`` (transformers<5). The local layers' RoPE must be unscaled."""
    params = hf.get("rope_parameters") or {}
    if "full_attention" in params or "sliding_attention" in params:
        full = {"rope_theta": hf["rope_theta"], **(params.get("full_attention") or {})}
        local = {"rope_theta": hf["rope_local_base_freq"], **(params.get("sliding_attention") or {})}
    else:
        full = {"rope_theta": hf["rope_theta"], **(hf.get("rope_scaling") or {}), **params}
        local = {"rope_theta": hf["rope_local_base_freq"]}
    if local.get("rope_type", local.get("type", "default")) != "default":
        raise ValueError("config.json: gemma3_text with a scaled RoPE on sliding_attention layers "
                         "(rope_parameters.sliding_attention.rope_type) is not supported; only "
                         "'default' there.")
    theta, scaling = _rope_settings({"rope_parameters": full})
    return theta, scaling, float(local["rope_theta"])


def _gemma3_options(hf: dict, num_layers: int, local_theta: float) -> dict:
    """Gemma 3: Gemma 2's fields with the layer pattern ``sliding_window_pattern``, q/k norms,
    and the local layers' RoPE base (refused when layers slide without a window)."""
    pattern = int(hf["sliding_window_pattern"])
    options = _gemma2_options(hf, num_layers, pattern)
    if hf.get("sliding_window") is None and "sliding_attention" in _layer_types(hf, num_layers, pattern):
        raise ValueError("config.json: gemma3_text with sliding_window null but sliding_attention "
                         "layers is not supported; set sliding_window (Gemma 3 uses 512 to 1024).")
    local = {"rope_local_theta": local_theta} if options["sliding_layers"] else {}
    return dict(options, qk_norm=True, **local)


def _qwen3_moe_options(hf: dict, num_layers: int) -> dict:
    """Qwen3-MoE: layer i is sparse iff i ∉ mlp_only_layers and (i + 1) % decoder_sparse_step == 0."""
    experts = int(hf.get("num_experts") or hf.get("num_local_experts") or _QWEN3_MOE_EXPERTS)
    step = int(hf["decoder_sparse_step"])
    dense = set(hf.get("mlp_only_layers") or ())
    sparse = tuple(i for i in range(num_layers) if i not in dense and (i + 1) % step == 0)
    if not sparse:
        raise ValueError("config.json: qwen3_moe whose mlp_only_layers / decoder_sparse_step leave "
                         "no sparse layer is not supported; load it with model_type qwen3.")
    return dict(num_experts=experts, experts_per_token=int(hf["num_experts_per_tok"]),
                expert_mlp_dim=int(hf["moe_intermediate_size"]), moe_layers=sparse,
                renormalize_topk=bool(hf["norm_topk_prob"]))


def model_type_of(config: TransformerConfig) -> str:
    """The HF family that computes what ``config`` computes, or a ValueError.

    Gemma: GeGLU + norm offset 1 + scaled, tied embeddings; Gemma 2: that plus post-norms
    (soft-caps, score scalar and sliding window optional); Gemma 3: Gemma 2 plus q/k norms
    (and, when layers slide, their RoPE base ``rope_local_theta``). Otherwise (none of the
    Gemma parts): Qwen3-MoE with q/k norms and MoE layers, Qwen3 with q/k norms, Qwen2 with
    q/k/v biases (Qwen2 always has them), else Llama (HF Llama's ``attention_bias`` would add
    an o_proj bias too).
    """
    gemma_parts = (config.activation == "gelu_tanh", config.norm_offset == 1.0,
                   config.scale_embeddings)
    gemma2_only = (config.attn_softcap is not None, config.final_softcap is not None,
                   config.query_pre_attn_scalar is not None, bool(config.sliding_layers))
    moe, local_rope = bool(config.moe_layers), config.rope_local_theta is not None
    if all(gemma_parts) and config.tie_embeddings and not config.qkv_bias and not moe:
        if config.post_norms and config.qk_norm and (local_rope or not config.sliding_layers):
            return "gemma3_text"
        if config.post_norms and not (local_rope or config.qk_norm):
            return "gemma2"
        if not (any(gemma2_only) or config.qk_norm or local_rope):
            return "gemma"
    elif not (any(gemma_parts) or config.post_norms or any(gemma2_only) or local_rope
              or config.norm_offset != 0.0):
        if config.qk_norm and not config.qkv_bias:
            return "qwen3_moe" if moe else "qwen3"
        if not (config.qk_norm or moe):
            return "qwen2" if config.qkv_bias else "llama"
    raise ValueError(
        "save_hf: no HF family matches this TransformerConfig (activation="
        f"{config.activation!r}, norm_offset={config.norm_offset}, scale_embeddings="
        f"{config.scale_embeddings}, tie_embeddings={config.tie_embeddings}, post_norms="
        f"{config.post_norms}, qk_norm={config.qk_norm}, qkv_bias={config.qkv_bias}, moe_layers="
        f"{config.moe_layers}); Gemma needs gelu_tanh, norm_offset=1, scale_embeddings and tied "
        "embeddings, Gemma 2 also post_norms (the only family with soft-caps, a score scalar or "
        "sliding layers), Gemma 3 also qk_norm (the only one with rope_local_theta, which it needs "
        "when layers slide: HF's local layers use an unscaled RoPE of their own); Llama / Qwen2 / "
        "Qwen3 none of these, Qwen3 qk_norm without qkv_bias, and only Qwen3-MoE has moe_layers.")


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
    if model_type.startswith("qwen"):
        hf.update(use_sliding_window=False)
    if model_type.startswith("qwen3"):
        hf.update(attention_bias=False)
    if model_type == "qwen3_moe":
        hf.update(num_experts=config.num_experts, num_experts_per_tok=config.experts_per_token,
                  moe_intermediate_size=config.expert_mlp_dim, norm_topk_prob=config.renormalize_topk,
                  decoder_sparse_step=1,
                  mlp_only_layers=[i for i in range(config.num_layers) if i not in config.moe_layers])
    if model_type == "gemma3_text":
        hf.update(hidden_activation="gelu_pytorch_tanh",
                  rope_local_base_freq=config.rope_local_theta or 10000.0)
    if model_type in ("gemma2", "gemma3_text"):
        hf.update(
            query_pre_attn_scalar=_int_if_whole(config.query_pre_attn_scalar or config.head_dim),
            attn_logit_softcapping=config.attn_softcap,
            final_logit_softcapping=config.final_softcap,
            sliding_window=config.sliding_window if config.sliding_layers else None,
            layer_types=["sliding_attention" if i in config.sliding_layers else "full_attention"
                         for i in range(config.num_layers)])
    return {**hf, **extra}

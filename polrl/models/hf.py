"""Import and export Hugging Face checkpoints (``config.json`` + ``*.safetensors``).

Weight names and layouts (HF ``nn.Linear.weight`` is [out, in]; polrl kernels are [in, out]
with the head axes split, see :mod:`polrl.models.transformer`):

    ==========================================  =======================  ====================
    HF tensor (per layer i: model.layers.i.…)   polrl parameter          polrl = f(HF)
    ==========================================  =======================  ====================
    model.embed_tokens.weight [V, d]            embed [V, d]             as is
    self_attn.{q,k,v}_proj.weight [h·e, d]      attn.w{q,k,v} [d, h, e]  Wᵀ reshaped
    self_attn.{q,k,v}_proj.bias [h·e]           attn.b{q,k,v} [h, e]     reshaped (Qwen2)
    self_attn.o_proj.weight [d, h·e]            attn.wo [h, e, d]        Wᵀ reshaped
    mlp.{gate,up}_proj.weight [f, d]            mlp.w_{gate,up} [d, f]   Wᵀ
    mlp.down_proj.weight [d, f]                 mlp.w_down [f, d]        Wᵀ
    input_layernorm.weight [d]                  attn_norm.scale          as is
    post_attention_layernorm.weight [d]         mlp_norm.scale           as is
      Gemma 2: post_attention_layernorm         post_attn_norm.scale     as is
               pre_feedforward_layernorm        mlp_norm.scale           as is
               post_feedforward_layernorm       post_mlp_norm.scale      as is
    self_attn.{q,k}_norm.weight [e]             attn.{q,k}_norm.scale    as is (Qwen3, Gemma 3)
    Qwen3-MoE sparse layers, E experts:
      mlp.gate.weight [E, d]                    mlp.router [d, E]        Wᵀ
      mlp.experts.j.{gate,up}_proj.weight       mlp.experts_{gate,up}    row j = Wᵀ
        [f_e, d]                                  [E, d, f_e]
      mlp.experts.j.down_proj.weight [d, f_e]   mlp.experts_down         row j = Wᵀ
                                                  [E, f_e, d]
    model.norm.weight [d]                       final_norm.scale         as is
    lm_head.weight [V, d] (untied)              lm_head [d, V]           Wᵀ
    value_head.weight [d], value_head.bias []   value_w, value_b         as is (polrl's own)
    ==========================================  =======================  ====================

Gemma 3 (``Gemma3ForCausalLM``) names its norms as Gemma 2. Qwen3-MoE's experts are one
tensor per expert in the Hub's checkpoints (and in what transformers writes): they are stacked
on import and split on export.

RoPE needs no permutation: HF's Llama/Qwen2/Qwen3/Gemma checkpoints already use the rotate-half
pairing (i, i + e/2) that :func:`polrl.models.layers.rope` implements. The value head is not
part of any HF architecture; ``save_hf`` writes it under ``value_head.*`` (transformers ignores
those keys with a warning) so that ``load_hf`` restores it.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from polrl.models.hf_config import config_from_hf, config_to_hf
from polrl.models.hf_tokenizer import HFTokenizer
from polrl.models.transformer import Transformer, TransformerConfig

# HF per-layer suffix → (polrl path inside a layer, layout): an int is the number of leading
# input axes of a polrl kernel (HF stores its transpose, heads flattened); "heads" a bias whose
# head axes HF flattens; None a tensor stored as is.
_LAYER_TENSORS = {
    "self_attn.q_proj.weight": (("attn", "wq"), 1),
    "self_attn.k_proj.weight": (("attn", "wk"), 1),
    "self_attn.v_proj.weight": (("attn", "wv"), 1),
    "self_attn.o_proj.weight": (("attn", "wo"), 2),
    "self_attn.q_proj.bias": (("attn", "bq"), "heads"),
    "self_attn.k_proj.bias": (("attn", "bk"), "heads"),
    "self_attn.v_proj.bias": (("attn", "bv"), "heads"),
    "mlp.gate_proj.weight": (("mlp", "w_gate"), 1),
    "mlp.up_proj.weight": (("mlp", "w_up"), 1),
    "mlp.down_proj.weight": (("mlp", "w_down"), 1),
    "input_layernorm.weight": (("attn_norm", "scale"), None),
    "post_attention_layernorm.weight": (("mlp_norm", "scale"), None),
}
_TOP_TENSORS = {
    "model.embed_tokens.weight": (("embed",), None),
    "model.norm.weight": (("final_norm", "scale"), None),
    "lm_head.weight": (("lm_head",), 1),
    "value_head.weight": (("value_w",), None),
    "value_head.bias": (("value_b",), None),
}
# Gemma 2 names its four norms differently: its post_attention_layernorm normalises the
# attention output (Llama's is the pre-MLP norm).
_POST_NORM_TENSORS = {
    "input_layernorm.weight": (("attn_norm", "scale"), None),
    "post_attention_layernorm.weight": (("post_attn_norm", "scale"), None),
    "pre_feedforward_layernorm.weight": (("mlp_norm", "scale"), None),
    "post_feedforward_layernorm.weight": (("post_mlp_norm", "scale"), None),
}
_QK_NORM_TENSORS = {
    "self_attn.q_norm.weight": (("attn", "q_norm", "scale"), None),
    "self_attn.k_norm.weight": (("attn", "k_norm", "scale"), None),
}
# A sparse layer's MLP: the router, and per expert j ("expert", j, layout): row j of a stacked
# parameter, in the layout given.
_MLP_SUFFIXES = ("mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")


def _moe_tensors(num_experts: int) -> dict[str, tuple[tuple, Any]]:
    names = {"mlp.gate.weight": (("mlp", "router"), 1)}
    for j in range(num_experts):
        for proj in ("gate", "up", "down"):
            names[f"mlp.experts.{j}.{proj}_proj.weight"] = (("mlp", f"experts_{proj}"), ("expert", j, 1))
    return names


# Buffers some checkpoints carry that hold nothing to load.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
SAFETENSORS_INDEX = "model.safetensors.index.json"


def _name_map(config: TransformerConfig) -> dict[str, tuple[tuple, Any]]:
    """Every HF tensor name of ``config``'s parameters → (polrl path, layout)."""
    names = {}
    for hf_name, (path, layout) in _TOP_TENSORS.items():
        if hf_name == "lm_head.weight" and config.tie_embeddings:
            continue
        if hf_name.startswith("value_head") and not config.value_head:
            continue
        names[hf_name] = (path, layout)
    layer_tensors = dict(_LAYER_TENSORS)
    if config.post_norms:
        layer_tensors = {k: v for k, v in layer_tensors.items() if "layernorm" not in k}
        layer_tensors.update(_POST_NORM_TENSORS)
    if config.qk_norm:
        layer_tensors.update(_QK_NORM_TENSORS)
    sparse_tensors = {k: v for k, v in layer_tensors.items() if k not in _MLP_SUFFIXES}
    sparse_tensors.update(_moe_tensors(config.num_experts))
    for i in range(config.num_layers):
        for suffix, (path, layout) in (sparse_tensors if i in config.moe_layers else layer_tensors).items():
            if suffix.endswith(".bias") and not config.qkv_bias:
                continue
            names[f"model.layers.{i}.{suffix}"] = (("layers", i, *path), layout)
    return names


def _expert_row(layout) -> tuple[int | None, Any]:
    """(j, layout of row j) for row j of an expert-stacked parameter, else (None, layout)."""
    if isinstance(layout, tuple) and layout[0] == "expert":
        return layout[1], layout[2]
    return None, layout


def _from_hf(tensor: np.ndarray, shape: tuple[int, ...], layout) -> np.ndarray:
    """HF layout → polrl layout: transpose [out, in] to [in, out], then split the head axes."""
    if isinstance(layout, int):
        tensor = tensor.T
    if tensor.size != int(np.prod(shape)):
        raise ValueError(f"tensor of shape {tensor.shape} cannot fill a parameter of shape {shape}")
    return tensor.reshape(shape)


def _to_hf(param: np.ndarray, layout) -> np.ndarray:
    """polrl layout → HF layout (inverse of :func:`_from_hf`)."""
    if layout is None:
        return param
    if layout == "heads":
        return param.reshape(-1)
    flat = param.reshape(int(np.prod(param.shape[:layout])), -1)
    return np.ascontiguousarray(flat.T)


def _get(tree: dict, path: tuple):
    for key in path:
        tree = tree[key]
    return tree


def _set(tree: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


def _safetensors_files(path: str) -> dict[str, str]:
    """Tensor name → file, from ``model.safetensors.index.json`` or the ``*.safetensors`` files."""
    index = os.path.join(path, SAFETENSORS_INDEX)
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        return {name: os.path.join(path, file) for name, file in weight_map.items()}
    files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    if not files:
        raise ValueError(f"load_hf: no *.safetensors file in {path!r} (PyTorch .bin checkpoints "
                         "are not read; convert them with transformers' save_pretrained).")
    located = {}
    for file in files:
        with safe_open(os.path.join(path, file), framework="numpy") as f:
            located.update({name: os.path.join(path, file) for name in f.keys()})
    return located


def _read_tensors(files: dict[str, str], wanted) -> dict[str, np.ndarray]:
    """The tensors named in ``wanted``, read file by file (numpy; bfloat16 via ml_dtypes)."""
    by_file: dict[str, list[str]] = {}
    for name in wanted:
        by_file.setdefault(files[name], []).append(name)
    out = {}
    for file, names in by_file.items():
        with safe_open(file, framework="numpy") as f:
            out.update({name: f.get_tensor(name) for name in names})
    return out


def _abstract_params(config: TransformerConfig):
    """(graphdef, pure dict of ShapeDtypeStructs) of a Transformer, without initialising it."""
    abstract = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract, nnx.Param)
    return graphdef, state


def load_hf(path: str, *, dtype: Any = jnp.float32, param_dtype: Any = jnp.float32,
            max_len: int | None = None, value_head: bool = False, remat: bool = False,
            ) -> tuple[Transformer, HFTokenizer | None]:
    """A :class:`Transformer` (and its tokenizer) from a local HF checkpoint directory.

    Reads ``config.json`` (model_type llama, qwen2, qwen3, qwen3_moe, gemma, gemma2 or
    gemma3_text; see
    :mod:`polrl.models.hf_config`) and the weights from ``model.safetensors`` or the shards
    listed in ``model.safetensors.index.json``; tensors are cast to ``param_dtype``,
    activations run in ``dtype``. ``value_head=True`` adds a zero-initialised value head when
    the checkpoint has none (one written by :func:`save_hf` is restored either way).
    ``max_len`` defaults to ``max_position_embeddings``. The tokenizer is an
    :class:`HFTokenizer` when ``tokenizer.json`` exists, else None.

    Every tensor the model needs must be present, and every tensor present must be used
    (except RoPE ``inv_freq`` buffers and a tied model's duplicate ``lm_head.weight``); anything
    else raises a ValueError naming the tensor, so a family mismatch never loads silently.
    """
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        hf_config = json.load(f)
    files = _safetensors_files(path)
    has_value_head = "value_head.weight" in files
    config = config_from_hf(hf_config, dtype=dtype, param_dtype=param_dtype, max_len=max_len,
                            value_head=value_head or has_value_head, remat=remat)
    names = _name_map(config)
    if value_head and not has_value_head:
        names = {k: v for k, v in names.items() if not k.startswith("value_head")}
    missing = sorted(set(names) - set(files))
    if missing:
        raise ValueError(f"load_hf: {path!r} lacks {len(missing)} tensor(s) the "
                         f"{hf_config['model_type']} model needs, e.g. {missing[:3]}.")
    unused = sorted(name for name in set(files) - set(names)
                    if not name.endswith(_IGNORED_SUFFIXES)
                    and not (name == "lm_head.weight" and config.tie_embeddings))
    if unused:
        raise ValueError(f"load_hf: {path!r} has {len(unused)} tensor(s) this "
                         f"{hf_config['model_type']} config does not use, e.g. {unused[:3]}; "
                         "check model_type and the bias / tie_word_embeddings settings.")
    graphdef, state = _abstract_params(config)
    params = nnx.to_pure_dict(state)
    tensors = _read_tensors(files, names)
    stacks = {}  # expert-stacked parameters, filled row by row
    for name, (param_path, layout) in names.items():
        like = _get(params, param_path)
        row, layout = _expert_row(layout)
        try:
            value = _from_hf(tensors.pop(name), like.shape if row is None else like.shape[1:], layout)
        except ValueError as e:
            raise ValueError(f"load_hf: {name}: {e}; config.json does not match the weights.")
        if row is None:
            _set(params, param_path, jnp.asarray(value.astype(like.dtype)))
        else:
            stacks.setdefault(param_path, np.zeros(like.shape, like.dtype))[row] = value
    for param_path, stack in stacks.items():
        _set(params, param_path, jnp.asarray(stack))
    if value_head and not has_value_head:
        params["value_w"] = jnp.zeros(params["value_w"].shape, params["value_w"].dtype)
        params["value_b"] = jnp.zeros(params["value_b"].shape, params["value_b"].dtype)
    nnx.replace_by_pure_dict(state, params)
    model = nnx.merge(graphdef, state)
    tokenizer = (HFTokenizer.from_dir(path)
                 if os.path.exists(os.path.join(path, "tokenizer.json")) else None)
    return model, tokenizer


def _pure_params(model_or_params) -> dict:
    """A nested dict of arrays from a Transformer, an nnx.State or an already pure dict."""
    if isinstance(model_or_params, nnx.Module):
        model_or_params = nnx.state(model_or_params, nnx.Param)
    if isinstance(model_or_params, nnx.State):
        model_or_params = nnx.to_pure_dict(model_or_params)
    return model_or_params


def save_hf(model_or_params, config: TransformerConfig, path: str, *,
            dtype: Any = None, tokenizer: HFTokenizer | None = None,
            max_shard_bytes: int = 5 * 2 ** 30) -> None:
    """Writes ``config.json`` and safetensors weights that transformers (and :func:`load_hf`) load.

    ``model_or_params`` is a Transformer, its ``nnx.State`` of Params, or that state's pure
    dict. The family follows from the config (:func:`polrl.models.hf_config.model_type_of`).
    ``dtype`` (default: the parameters' own) is the stored dtype. Weights go to
    ``model.safetensors``, or, when they exceed ``max_shard_bytes``, to
    ``model-0000k-of-0000n.safetensors`` plus ``model.safetensors.index.json`` (HF's layout).
    With ``tokenizer``, its files and special-token ids are written too. A model with LoRA
    adapters must be merged first (:func:`polrl.models.lora.merge_lora`).
    """
    params = _pure_params(model_or_params)
    names = _name_map(config)
    lora_keys = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)
                 if "lora" in jax.tree_util.keystr(p)]
    if lora_keys:
        raise ValueError(f"save_hf: the parameters hold LoRA adapters ({lora_keys[0]}, …); fold "
                         "them in with polrl.models.lora.merge_lora before exporting.")
    tensors = {}
    for name, (param_path, layout) in names.items():
        value = np.asarray(jax.device_get(_get(params, param_path)))
        row, layout = _expert_row(layout)
        if row is not None:
            value = value[row]
        if dtype is not None:
            value = value.astype(dtype)
        tensors[name] = _to_hf(value, layout)
    stored = np.dtype(dtype) if dtype is not None else tensors["model.embed_tokens.weight"].dtype
    special = {}
    if tokenizer is not None:
        special = dict(bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id,
                       pad_token_id=tokenizer.pad_id)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config_to_hf(config, torch_dtype=stored.name, **special), f, indent=2)
    _write_shards(tensors, path, max_shard_bytes)
    if tokenizer is not None:
        tokenizer.save(path)


def _write_shards(tensors: dict[str, np.ndarray], path: str, max_shard_bytes: int) -> None:
    """One ``model.safetensors``, or shards of at most ``max_shard_bytes`` (a tensor larger than
    that gets a shard of its own) with HF's index file. Weight files of an earlier export in
    ``path`` (``model*.safetensors`` and the index) are removed first."""
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        if shards[-1] and size + tensor.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += tensor.nbytes
    for stale in os.listdir(path):  # shards of an earlier export would mix with these
        if stale == SAFETENSORS_INDEX or (stale.startswith("model") and stale.endswith(".safetensors")):
            os.remove(os.path.join(path, stale))
    metadata = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], os.path.join(path, "model.safetensors"), metadata=metadata)
        return
    weight_map = {}
    for k, shard in enumerate(shards):
        file = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, os.path.join(path, file), metadata=metadata)
        weight_map.update({name: file for name in shard})
    index = {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())},
             "weight_map": weight_map}
    with open(os.path.join(path, SAFETENSORS_INDEX), "w", encoding="utf-8") as f:
        json.dump(index, f, indent=2)

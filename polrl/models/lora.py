"""LoRA adapters on the attention and MLP projections (Hu et al., arXiv:2106.09685).

A projection y = x W (W frozen) becomes

    y = x W + s · (x A) B,   A [in, r] ~ N(0, 1/in),  B [r, out] = 0,  s = alpha / r,

so a fresh adapter leaves the model unchanged and only A, B (r·(in + out) numbers per
weight) are trained. Head-structured kernels keep their axes: for wq [d, h, e], A is [d, r]
and B is [r, h, e]; for wo [h, e, d], A is [h, e, r] and B is [r, d]. The adapters are
:class:`LoRAParam` variables (a subclass of ``nnx.Param``), so

    graphdef, lora, base = nnx.split(model, LoRAParam, nnx.Param)

gives adapter-only state: differentiate and optimise ``lora`` only, with ``base`` closed over
(or use :func:`lora_optimizer` on the full parameter state, which keeps optimizer state for
the adapters only). ``nnx.split(model, nnx.Param)`` still returns everything (adapters
included), so code that is unaware of LoRA keeps working. :func:`merge_lora` folds trained
adapters into the base weights: W ← W + s · A B.

Logical axis names: A carries the weight's input axes plus ``"lora"``, B ``"lora"`` plus its
output axes; sharding rules should map ``"lora"`` to no mesh axis (r is small).

Defaults: rank 8, alpha = rank (s = 1), every projection (wq wk wv wo w_gate w_up w_down).
Mixture-of-experts layers (``TransformerConfig.moe_layers``) take no MLP adapters: there the MLP
targets are skipped (their attention is adapted as elsewhere).
Not implemented: LoRA dropout, adapters on the embedding / LM head or on experts and routers.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from polrl.models.layers import fan_in_normal, param
from polrl.models.moe import SparseMoE


class LoRAParam(nnx.Param):
    """A LoRA factor (A or B); filter with it to split adapters from base weights."""


# weight name → (submodule of a Block, logical names of its input axes, of its output axes)
TARGETS = {
    "wq": ("attn", ("embed",), ("q_heads", "head_dim")),
    "wk": ("attn", ("embed",), ("kv_heads", "head_dim")),
    "wv": ("attn", ("embed",), ("kv_heads", "head_dim")),
    "wo": ("attn", ("q_heads", "head_dim"), ("embed",)),
    "w_gate": ("mlp", ("embed",), ("mlp",)),
    "w_up": ("mlp", ("embed",), ("mlp",)),
    "w_down": ("mlp", ("mlp",), ("embed",)),
}
ATTENTION_TARGETS = ("wq", "wk", "wv", "wo")
MLP_TARGETS = ("w_gate", "w_up", "w_down")


def _adapted(model) -> list[tuple[nnx.Module, str]]:
    """(module, weight name) of every adapter present in ``model``."""
    found = []
    for layer in model.layers:
        for name, (sub, _, _) in TARGETS.items():
            module = getattr(layer, sub)
            if hasattr(module, name + "_lora_a"):
                found.append((module, name))
    return found


def apply_lora(model, *, rank: int = 8, alpha: float | None = None,
               targets: Sequence[str] = ATTENTION_TARGETS + MLP_TARGETS, rngs: nnx.Rngs):
    """Adds adapters (A random, B zero) to ``targets`` in every block of ``model``, in place
    (MLP targets skip mixture-of-experts layers).

    Returns ``model``. ``alpha`` defaults to ``rank`` (scale s = alpha / rank = 1). Factors
    are stored in the base weight's dtype.
    """
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown or not targets:
        raise ValueError(f"apply_lora: targets={list(targets)!r} has unknown names {unknown}; "
                         f"choose among {list(TARGETS)}.")
    if not isinstance(rank, int) or rank <= 0:
        raise ValueError(f"apply_lora: rank must be a positive int, got {rank!r}.")
    if _adapted(model):
        raise ValueError("apply_lora: the model already has LoRA adapters; merge_lora first.")
    scale = float(rank if alpha is None else alpha) / rank
    for layer in model.layers:
        for name in targets:
            sub, in_names, out_names = TARGETS[name]
            module = getattr(layer, sub)
            if isinstance(module, SparseMoE):  # experts take no adapters (module docstring)
                continue
            weight = getattr(module, name)
            n_in = len(in_names)
            in_shape, out_shape = weight.shape[:n_in], weight.shape[n_in:]
            fan_in = int(jnp.prod(jnp.asarray(in_shape)))
            a = param(rngs, fan_in_normal(fan_in), (*in_shape, rank), (*in_names, "lora"),
                      weight.dtype)
            b = param(rngs, nnx.initializers.zeros, (rank, *out_shape), ("lora", *out_names),
                      weight.dtype)
            setattr(module, name + "_lora_a", LoRAParam(a[...], **a.get_metadata()))
            setattr(module, name + "_lora_b", LoRAParam(b[...], **b.get_metadata()))
            module.lora_scale = scale
    return model


def merge_lora(model):
    """A copy of ``model`` with every adapter folded in (W ← W + s · A B, in float32) and removed.

    The result has the plain Transformer structure (``nnx.split(merged, nnx.Param)`` has the
    graphdef of a model that never had adapters) and computes the same logits as ``model``
    up to rounding. ``model`` is left unchanged.
    """
    merged = nnx.clone(model)
    for module, name in _adapted(merged):
        weight = getattr(module, name)
        a = getattr(module, name + "_lora_a")[...].astype(jnp.float32)
        b = getattr(module, name + "_lora_b")[...].astype(jnp.float32)
        delta = module.lora_scale * jnp.tensordot(a, b, axes=1)
        weight[...] = (weight[...].astype(jnp.float32) + delta).astype(weight.dtype)
        delattr(module, name + "_lora_a")
        delattr(module, name + "_lora_b")
    for layer in merged.layers:
        for sub in ("attn", "mlp"):
            if hasattr(getattr(layer, sub), "lora_scale"):
                delattr(getattr(layer, sub), "lora_scale")
    return merged


def split_lora(model):
    """``(graphdef, lora_params, base_params)``: adapters and frozen weights as separate states."""
    return nnx.split(model, LoRAParam, nnx.Param)


def lora_labels(params) -> object:
    """The tree of ``params`` (an nnx.State) with "lora" at adapters and "frozen" elsewhere."""
    return jax.tree.map(lambda v: "lora" if isinstance(v, LoRAParam) else "frozen", params,
                        is_leaf=lambda x: isinstance(x, nnx.Variable))


def lora_optimizer(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    """``optimizer`` on the adapters; the base weights get zero updates and no optimizer state.

    For use on the full parameter state (``nnx.split(model, nnx.Param)``) when the training
    loop is not LoRA-aware: the updates of frozen weights are exactly 0, and ``init`` allocates
    state for the adapters only (``optax.multi_transform`` + ``optax.set_to_zero``).
    """
    return optax.multi_transform({"lora": optimizer, "frozen": optax.set_to_zero()}, lora_labels)


def lora_algorithm(algorithm):
    """``algorithm`` (a :class:`polrl.core.Algorithm`) with its optimizer wrapped by
    :func:`lora_optimizer`: the trainer then trains the adapters only."""
    return algorithm._replace(optimizer=lora_optimizer(algorithm.optimizer))

"""Decoder-only transformer (Llama / Qwen2 / Qwen3 / Gemma families) in Flax NNX, with a KV cache.

    x₀ = E[tokens]  (· √d_model when scale_embeddings, Gemma)
    xₗ₊₁ = xₗ' + MLP(RMSNorm(xₗ')),   xₗ' = xₗ + Attn(RMSNorm(xₗ))      (pre-norm)
    hidden = RMSNorm(x_L),  logits = hidden · Eᵀ (tied) or hidden · W_head (float32)

Gemma 2 options (arXiv:2408.00118): ``post_norms`` also normalises each branch's output
(xₗ' = xₗ + RMSNorm(Attn(RMSNorm(xₗ))), likewise for the MLP); ``final_softcap`` caps the
logits, logits ← cap · tanh(logits / cap); ``attn_softcap`` and ``query_pre_attn_scalar``
act on the attention scores (see ``layers.Attention``); the layers listed in
``sliding_layers`` attend only to the keys less than ``sliding_window`` positions back (query
position − key position < window; a cache records each key's position, so holes in a cached
sequence do not shift the window).

"Gemma 3 Technical Report" (arXiv:2503.19786) adds ``qk_norm`` (also in "Qwen3 Technical
Report", arXiv:2505.09388): q and k are RMS-normalised per head over head_dim before RoPE (see
``layers.Attention``), and its sliding (local) layers rotate with their own, unscaled base
``rope_local_theta``. Qwen3-MoE's ``moe_layers`` use a top-k mixture of experts in place of the
MLP (:class:`polrl.models.moe.SparseMoE`).

Numerics: parameters are stored in ``param_dtype`` (the optimizer's master copy, float32 by
default) and cast to ``dtype`` where they are used, so bfloat16 compute keeps float32 master
weights, gradients and optimizer state. Norms, RoPE, attention scores/softmax and the LM head
run in float32 whatever ``dtype`` is (in float64 for a float64 model: ``layers.wide``; tests use
one to compare computation orders free of float32 rounding). ``remat=True`` rematerializes each block in the backward
pass (``nnx.remat``): activation memory O(L·B·T·d) for the block inputs only, at the cost of
one more forward per block.

Attention is causal by array position and masked by ``valid``: query t sees key s iff
s ≤ t and valid[s]. Prompts are LEFT-padded and the caller passes RoPE positions
``cumsum(valid) − 1``, so a padded row computes exactly what its unpadded prompt does.

Logical axis names of the parameters (metadata only; map them to mesh axes with rules):

    =========  ==========================================  ==========================
    name       meaning                                      used by
    =========  ==========================================  ==========================
    vocab      token id                                     embedding, untied LM head
    embed      model width d_model                          every projection, value_w
    q_heads    query heads                                  wq, wo, bq
    kv_heads   key/value heads (GQA groups)                 wk, wv, bk, bv
    head_dim   per-head width                               wq, wk, wv, wo, biases
    mlp        gated-MLP hidden width                       w_gate, w_up, w_down, experts_*
    expert     mixture-of-experts expert index              experts_*, router
    norm       RMSNorm scale                                every RMSNorm
    =========  ==========================================  ==========================

Parameters (d model, V vocab, h/k query/kv heads, e head_dim, f mlp_dim):
    embed [V,d]; layers[i].attn: wq [d,h,e], wk wv [d,k,e], wo [h,e,d], bq [h,e], bk bv [k,e]
    (qkv_bias); layers[i].mlp: w_gate w_up [d,f], w_down [f,d]; layers[i].attn_norm,
    mlp_norm, final_norm (and post_attn_norm, post_mlp_norm with post_norms): scale [d];
    lm_head [d,V] (untied); value_w [d], value_b []; with qk_norm layers[i].attn.q_norm,
    k_norm: scale [e]; in moe_layers layers[i].mlp is a SparseMoE (E experts of width f_e):
    router [d,E], experts_gate experts_up [E,d,f_e], experts_down [E,f_e,d]. LoRA adapters, when attached
    (:mod:`polrl.models.lora`), are extra ``LoRAParam`` leaves next to the kernels. Kernels are [in, out] (transpose of torch.nn.Linear.weight).

Functional use: ``graphdef, params = nnx.split(model, nnx.Param)`` once (the model holds
nothing but Params), then ``nnx.merge(graphdef, params).forward(...)`` inside ``jax.jit``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
from flax import nnx

from polrl.models.layers import MLP, Attention, RMSNorm, param, rope_tables, wide
from polrl.models.moe import SparseMoE


ROPE_SCALING_KINDS = ("linear", "llama3")
ACTIVATION_NAMES = ("silu", "gelu_tanh")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Context-extension rescaling of the RoPE frequencies (see ``layers.rope_inv_freq``).

    kind: "linear" (ω / factor) or "llama3" (Llama 3.1's frequency-dependent blend, which
    also reads low_freq_factor, high_freq_factor and original_max_len; HF defaults 1, 4, 8192).
    """

    kind: str
    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_len: int = 8192

    def __post_init__(self):
        if self.kind not in ROPE_SCALING_KINDS:
            raise ValueError(f"RopeScaling.kind={self.kind!r} is not supported; use one of "
                             f"{ROPE_SCALING_KINDS}.")
        if self.factor <= 0:
            raise ValueError(f"RopeScaling.factor must be > 0, got {self.factor}.")
        if self.kind == "llama3" and not 0 < self.low_freq_factor < self.high_freq_factor:
            raise ValueError(
                "RopeScaling: llama3 needs 0 < low_freq_factor < high_freq_factor, got "
                f"{self.low_freq_factor}, {self.high_freq_factor}.")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Shape and numerics of the model.

    ``head_dim=None`` is resolved to d_model // num_heads at construction, so
    ``config.head_dim`` is always an int (and ``dataclasses.replace`` keeps it: pass
    ``head_dim=None`` again when changing d_model or num_heads).

    Family switches (defaults give Llama): ``qkv_bias`` (Qwen2), ``activation`` "silu"
    (SwiGLU) or "gelu_tanh" (GeGLU, Gemma), ``norm_offset`` (RMSNorm multiplies by
    offset + scale; 1.0 for Gemma), ``scale_embeddings`` (x₀ = E[tokens]·√d_model, Gemma),
    ``rope_scaling`` (None or a :class:`RopeScaling`). ``dtype`` is the compute dtype,
    ``param_dtype`` the storage dtype; ``remat`` rematerializes every block in the backward pass.
    ``logits_chunk_size`` > 0 makes the scoring forward (``polrl.train.steps.score``) apply the
    LM head to that many positions at a time, so [B, T, V] float32 logits never exist (0: all
    at once). ``micro_batches`` > 1 runs every scoring forward (the update's, the reference's,
    π_old's) over that many micro-batches of whole groups, one after another, each
    rematerialised in the backward pass: gradient accumulation whose activations are one
    micro-batch's, with the same loss and gradient as the whole minibatch (1: at once).
    ``pack_length`` L and ``pack_rows`` R > 0 pack those scoring forwards: the real tokens of all
    sequences go into R rows of L positions, each sequence attending only to itself, RoPE positions
    restarting per sequence (:mod:`polrl.train.packing`; the unpacked forward runs on a step whose
    sequences do not fit; 0: no packing).
    ``attention_impl``: "einsum" (the explicit path, float32 scores) or "dot_product"
    (``jax.nn.dot_product_attention`` in forwards without a cache: cuDNN flash attention on a
    GPU, XLA elsewhere; not with ``attn_softcap``). Gemma 2: ``post_norms``, ``attn_softcap``, ``final_softcap``,
    ``query_pre_attn_scalar``, ``sliding_window`` + ``sliding_layers`` (see the module docstring).
    Qwen3 / Gemma 3: ``qk_norm`` (RMSNorm of every query and key head before RoPE); Gemma 3:
    ``rope_local_theta``, the RoPE base of the sliding layers (unscaled; None: ``rope_theta``).
    Mixture of experts (Qwen3-MoE, :mod:`polrl.models.moe`): the layers in ``moe_layers`` replace
    the MLP by ``num_experts`` experts of width ``expert_mlp_dim``, ``experts_per_token`` chosen
    per token, their router weights renormalised to sum 1 when ``renormalize_topk``.
    """

    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    mlp_dim: int
    head_dim: int | None = None
    max_len: int = 2048
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    tie_embeddings: bool = True
    qkv_bias: bool = False
    value_head: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    activation: str = "silu"
    norm_offset: float = 0.0
    scale_embeddings: bool = False
    rope_scaling: RopeScaling | None = None
    remat: bool = False
    logits_chunk_size: int = 0
    micro_batches: int = 1
    pack_length: int = 0
    pack_rows: int = 0
    attention_impl: str = "einsum"
    post_norms: bool = False
    attn_softcap: float | None = None
    final_softcap: float | None = None
    query_pre_attn_scalar: float | None = None
    sliding_window: int | None = None
    sliding_layers: tuple[int, ...] = ()
    qk_norm: bool = False
    rope_local_theta: float | None = None
    num_experts: int = 0
    experts_per_token: int = 0
    expert_mlp_dim: int = 0
    moe_layers: tuple[int, ...] = ()
    renormalize_topk: bool = False

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "num_layers", "num_heads", "num_kv_heads",
                     "mlp_dim", "max_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"TransformerConfig.{name} must be a positive int, got {value!r}.")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"TransformerConfig.num_heads ({self.num_heads}) must be a multiple of "
                f"num_kv_heads ({self.num_kv_heads}): pick num_kv_heads among the divisors "
                "of num_heads.")
        if self.head_dim is None:
            if self.d_model % self.num_heads:
                raise ValueError(
                    f"TransformerConfig.d_model ({self.d_model}) is not divisible by num_heads "
                    f"({self.num_heads}): set head_dim explicitly or change num_heads.")
            object.__setattr__(self, "head_dim", self.d_model // self.num_heads)
        if not isinstance(self.head_dim, int) or self.head_dim <= 0 or self.head_dim % 2:
            raise ValueError(
                f"TransformerConfig.head_dim must be a positive even int (RoPE rotates pairs), "
                f"got {self.head_dim!r}.")
        if self.rope_theta <= 0:
            raise ValueError(f"TransformerConfig.rope_theta must be > 0, got {self.rope_theta}.")
        if self.norm_eps <= 0:
            raise ValueError(f"TransformerConfig.norm_eps must be > 0, got {self.norm_eps}.")
        if not isinstance(self.logits_chunk_size, int) or self.logits_chunk_size < 0:
            raise ValueError("TransformerConfig.logits_chunk_size must be an int >= 0 (0 = no "
                             f"chunking), got {self.logits_chunk_size!r}.")
        if isinstance(self.micro_batches, bool) or not isinstance(self.micro_batches, int) or self.micro_batches < 1:
            raise ValueError("TransformerConfig.micro_batches must be an int >= 1 (1 = the whole minibatch at once), "
                             f"got {self.micro_batches!r}.")
        for name in ("pack_length", "pack_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"TransformerConfig.{name} must be an int >= 0 (0 = no packing), got {value!r}.")
        if bool(self.pack_length) != bool(self.pack_rows):
            raise ValueError("TransformerConfig.pack_length and pack_rows go together: set both > 0 to pack the "
                             f"scoring forward into pack_rows rows of pack_length tokens, or both 0 (got "
                             f"{self.pack_length}, {self.pack_rows}).")
        if self.attention_impl not in ("einsum", "dot_product"):
            raise ValueError(f"TransformerConfig.attention_impl must be 'einsum' or 'dot_product', "
                             f"got {self.attention_impl!r}.")
        if self.attention_impl == "dot_product" and self.attn_softcap is not None:
            raise ValueError("TransformerConfig.attention_impl='dot_product' cannot soft-cap attention scores "
                             "(attn_softcap, Gemma 2); use attention_impl='einsum'.")
        for name in ("attn_softcap", "final_softcap", "query_pre_attn_scalar"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"TransformerConfig.{name} must be None or > 0, got {value!r}.")
        if not isinstance(self.sliding_layers, tuple) or not all(
                isinstance(i, int) and 0 <= i < self.num_layers for i in self.sliding_layers):
            raise ValueError("TransformerConfig.sliding_layers must be a tuple of layer indices in "
                             f"[0, {self.num_layers}), got {self.sliding_layers!r}.")
        if self.sliding_layers and not (isinstance(self.sliding_window, int) and self.sliding_window > 0):
            raise ValueError("TransformerConfig.sliding_layers needs sliding_window, a positive int; "
                             f"got {self.sliding_window!r}.")
        if self.rope_local_theta is not None and not (self.rope_local_theta > 0 and self.sliding_layers):
            raise ValueError("TransformerConfig.rope_local_theta (the RoPE base of sliding_layers) must be > 0 "
                             f"and needs sliding_layers; got {self.rope_local_theta!r} with sliding_layers="
                             f"{self.sliding_layers!r}.")
        self._check_experts()
        if self.activation not in ACTIVATION_NAMES:
            raise ValueError(f"TransformerConfig.activation={self.activation!r}; use one of "
                             f"{ACTIVATION_NAMES}.")
        if self.rope_scaling is not None and not isinstance(self.rope_scaling, RopeScaling):
            raise ValueError("TransformerConfig.rope_scaling must be None or a RopeScaling, got "
                             f"{self.rope_scaling!r}.")

    def _check_experts(self):
        """moe_layers (mixture-of-experts MLPs) needs num_experts, experts_per_token, expert_mlp_dim."""
        if not isinstance(self.moe_layers, tuple) or not all(
                isinstance(i, int) and 0 <= i < self.num_layers for i in self.moe_layers):
            raise ValueError("TransformerConfig.moe_layers must be a tuple of layer indices in "
                             f"[0, {self.num_layers}), got {self.moe_layers!r}.")
        sizes = (self.num_experts, self.experts_per_token, self.expert_mlp_dim)
        if not self.moe_layers:
            if any(sizes) or self.renormalize_topk:
                raise ValueError("TransformerConfig: num_experts / experts_per_token / expert_mlp_dim / "
                                 "renormalize_topk are set but moe_layers is empty; list the MoE layers "
                                 "in moe_layers or leave these at their defaults.")
            return
        if not all(isinstance(n, int) and n > 0 for n in sizes) or self.experts_per_token > self.num_experts:
            raise ValueError("TransformerConfig.moe_layers needs positive ints num_experts, expert_mlp_dim "
                             "and experts_per_token <= num_experts; got num_experts="
                             f"{self.num_experts!r}, experts_per_token={self.experts_per_token!r}, "
                             f"expert_mlp_dim={self.expert_mlp_dim!r}.")


@flax.struct.dataclass
class KVCache:
    """Rotated keys and values of past tokens, one array per layer.

    k:         tuple (one entry per layer) of [B, kv_heads, head_dim, S] (keys transposed)
    v:         tuple (one entry per layer) of [B, kv_heads, S, head_dim]
               One buffer per layer, so a decode step updates each in place without
               slicing a stack; these layouts make q·kᵀ and A·v plain batched matmuls over
               (B, kv_heads), with no per-step transpose of the cache.
    valid_bs:  bool [B, S], slot holds a real token (False for pads and unwritten slots).
    position_bs: int32 [B, S], the RoPE position of the token in each slot (sliding windows).
    index:     int32 [B], the next slot each row writes (rows may be at different lengths:
               the rollout engine's slots); writes past S are dropped.
    """

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]
    valid_bs: jax.Array
    position_bs: jax.Array
    index: jax.Array


def init_cache(config: TransformerConfig, batch: int, length: int, dtype: Any = None) -> KVCache:
    """An empty cache of ``length`` slots (≤ config.max_len); dtype defaults to config.dtype."""
    if not 0 < length <= config.max_len:
        raise ValueError(f"cache length {length} must be in [1, max_len={config.max_len}]; "
                         "raise TransformerConfig.max_len or shorten prompt + response.")
    dtype = config.dtype if dtype is None else dtype
    k_shape = (batch, config.num_kv_heads, config.head_dim, length)
    v_shape = (batch, config.num_kv_heads, length, config.head_dim)
    layers = range(config.num_layers)
    return KVCache(k=tuple(jnp.zeros(k_shape, dtype) for _ in layers),
                   v=tuple(jnp.zeros(v_shape, dtype) for _ in layers),
                   valid_bs=jnp.zeros((batch, length), bool), position_bs=jnp.zeros((batch, length), jnp.int32),
                   index=jnp.zeros((batch,), jnp.int32))


def write_columns(cache_x: jax.Array, new_x: jax.Array, index_b: jax.Array, axis: int) -> jax.Array:
    """``cache_x`` with row b of ``new_x`` written at columns ``index_b[b] … index_b[b] + T − 1``
    of ``axis`` (T = ``new_x.shape[axis]``); columns past the end are dropped.

    One column (a decode step) is a select against each row's column index: elementwise, so
    it fuses with its neighbours and needs no scatter. Several columns (a prefill, an appended
    block) are a per-row scatter vmapped over the rows. Either way the rows are a batch
    dimension, so a mesh that splits them splits the write too (no gather of the cache).
    """
    t = new_x.shape[axis]
    if t == 1:
        shape = [1] * cache_x.ndim
        shape[0], shape[axis] = cache_x.shape[0], cache_x.shape[axis]
        hit = (jnp.arange(cache_x.shape[axis])[None, :] == index_b[:, None]).reshape(shape)
        return jnp.where(hit, new_x, cache_x)

    def one_row(c, x, start):
        where = (slice(None),) * (axis - 1) + (start + jnp.arange(t),)
        return c.at[where].set(x, mode="drop")

    return jax.vmap(one_row)(cache_x, new_x, index_b)


class Block(nnx.Module):
    """One pre-norm decoder layer: x += Attn(norm(x)); x += MLP(norm(x))."""

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs, moe: bool = False):
        norm = dict(eps=cfg.norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs,
                    offset=cfg.norm_offset)
        self.attn_norm = RMSNorm(cfg.d_model, **norm)
        self.attn = Attention(cfg, rngs=rngs)
        self.mlp_norm = RMSNorm(cfg.d_model, **norm)
        self.mlp = SparseMoE(cfg, rngs=rngs) if moe else MLP(cfg, rngs=rngs)
        if cfg.post_norms:
            self.post_attn_norm = RMSNorm(cfg.d_model, **norm)
            self.post_mlp_norm = RMSNorm(cfg.d_model, **norm)
        self.post_norms = cfg.post_norms

    def __call__(self, x_btd, rope_cs, visible_bts, cached_kv, index):
        """Returns the new residual stream and the keys/values attended to (cache if given)."""
        h = self.attn_norm(x_btd)
        k, v = self.attn.project_kv(h, rope_cs)
        if cached_kv is not None:
            k_cache, v_cache = cached_kv
            k = write_columns(k_cache, k.astype(k_cache.dtype), index, axis=3)
            v = write_columns(v_cache, v.astype(v_cache.dtype), index, axis=2)
        attn = self.attn(h, rope_cs, k, v, visible_bts, cached=cached_kv is not None)
        x_btd = x_btd + (self.post_attn_norm(attn) if self.post_norms else attn)
        mlp = self.mlp(self.mlp_norm(x_btd))
        return x_btd + (self.post_mlp_norm(mlp) if self.post_norms else mlp), (k, v)


class Transformer(nnx.Module):
    """Decoder-only LM; see the module docstring for the math and the axis-name table."""

    def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
        cfg = config
        self.config = cfg
        # Embedding std 1/sqrt(d): with a tied head, unit-RMS hidden states give unit-scale logits.
        embed_init = nnx.initializers.normal(stddev=cfg.d_model ** -0.5)
        self.embed = param(rngs, embed_init, (cfg.vocab_size, cfg.d_model), ("vocab", "embed"),
                           cfg.param_dtype)
        self.layers = nnx.List([Block(cfg, rngs=rngs, moe=i in cfg.moe_layers) for i in range(cfg.num_layers)])
        self.final_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps, dtype=cfg.dtype,
                                  param_dtype=cfg.param_dtype, rngs=rngs, offset=cfg.norm_offset)
        if not cfg.tie_embeddings:
            self.lm_head = param(rngs, embed_init, (cfg.d_model, cfg.vocab_size),
                                 ("embed", "vocab"), cfg.param_dtype)
        if cfg.value_head:
            zeros = nnx.initializers.zeros
            self.value_w = param(rngs, zeros, (cfg.d_model,), ("embed",), cfg.param_dtype)
            self.value_b = param(rngs, zeros, (), (), cfg.param_dtype)

    def forward(self, tokens_bt: jax.Array, positions_bt: jax.Array, valid_bt: jax.Array,
                cache: KVCache | None = None, segment_bt: jax.Array | None = None) -> tuple[jax.Array, KVCache | None]:
        """Hidden states after the final norm [B, T, d] and the advanced cache (or None).

        Without a cache, query t sees key s iff s ≤ t and valid[s] (and, with ``segment_bt``, iff
        segment[t] = segment[s]: several sequences packed in one row). With a cache, row b's new
        keys/values go to slots index[b] … index[b]+T−1, validity is recorded there, and query t
        (slot index[b]+t) sees every cached slot s ≤ index[b]+t that is valid.
        """
        cfg = self.config
        b, t = tokens_bt.shape
        assert positions_bt.shape == (b, t), (positions_bt.shape, tokens_bt.shape)
        assert valid_bt.shape == (b, t) and valid_bt.dtype == jnp.bool_, (valid_bt.shape,
                                                                            valid_bt.dtype)
        assert jnp.issubdtype(tokens_bt.dtype, jnp.integer), tokens_bt.dtype
        x = jnp.take(self.embed[...], tokens_bt, axis=0).astype(cfg.dtype)
        if cfg.scale_embeddings:  # the multiplier is rounded to the compute dtype, as in Gemma
            x = x * jnp.asarray(cfg.d_model ** 0.5, cfg.dtype)
        if cache is None:
            assert t <= cfg.max_len, (t, cfg.max_len)
            valid_bs, position_bs, index, kv = valid_bt, positions_bt, None, [None] * cfg.num_layers
            query_slot = jnp.arange(t)[None]  # [1, T]
        else:
            assert cache.valid_bs.shape[0] == b and len(cache.k) == cfg.num_layers, (
                cache.valid_bs.shape, b, len(cache.k))
            index = cache.index
            valid_bs = write_columns(cache.valid_bs, valid_bt, index, axis=1)
            position_bs = write_columns(cache.position_bs, positions_bt, index, axis=1) if cfg.sliding_layers else cache.position_bs
            query_slot = index[:, None] + jnp.arange(t)  # [B, T]
            kv = list(zip(cache.k, cache.v))
        key_slot = jnp.arange(valid_bs.shape[1])
        visible = valid_bs[:, None, :] & (key_slot <= query_slot[:, :, None])  # [B, T, S]
        if segment_bt is not None:
            assert cache is None and segment_bt.shape == (b, t), (segment_bt.shape, cache is None)
            visible = visible & (segment_bt[:, :, None] == segment_bt[:, None, :])
        rope_cs = rope_tables(positions_bt, cfg.head_dim, cfg.rope_theta, cfg.max_len,
                              cfg.rope_scaling, wide(cfg.dtype))
        local_cs = rope_cs
        if cfg.rope_local_theta is not None:
            local_cs = rope_tables(positions_bt, cfg.head_dim, cfg.rope_local_theta, cfg.max_len, None,
                                   wide(cfg.dtype))
        block = nnx.remat(Block.__call__) if cfg.remat else Block.__call__
        if cfg.sliding_layers:
            visible_near = visible & ((positions_bt[:, :, None] - position_bs[:, None, :]) < cfg.sliding_window)
        new_kv = []
        for i, (layer, layer_kv) in enumerate(zip(self.layers, kv)):
            sliding = i in cfg.sliding_layers
            layer_visible = visible_near if sliding else visible
            x, out_kv = block(layer, x, local_cs if sliding else rope_cs, layer_visible, layer_kv, index)
            new_kv.append(out_kv)
        hidden = self.final_norm(x)
        if cache is None:
            return hidden, None
        ks, vs = zip(*new_kv)
        return hidden, KVCache(k=tuple(ks), v=tuple(vs), valid_bs=valid_bs, position_bs=position_bs, index=index + t)

    @property
    def max_len(self) -> int:
        """Longest sequence (cache columns, RoPE positions) the model supports."""
        return self.config.max_len

    def init_cache(self, batch: int, length: int) -> KVCache:
        """An empty cache of ``length`` columns for ``batch`` rows (``init_cache``)."""
        return init_cache(self.config, batch, length)

    def logits(self, hidden: jax.Array) -> jax.Array:
        """LM head in float32: [..., d] → [..., V] (soft-capped when ``final_softcap`` is set)."""
        assert hidden.shape[-1] == self.config.d_model, hidden.shape
        acc = wide(self.config.dtype)
        h = hidden.astype(acc)
        if self.config.tie_embeddings:
            logits = jnp.einsum("...d,vd->...v", h, self.embed[...].astype(acc))
        else:
            logits = h @ self.lm_head[...].astype(acc)
        cap = self.config.final_softcap
        return logits if cap is None else cap * jnp.tanh(logits / cap)

    def value(self, hidden: jax.Array) -> jax.Array:
        """Scalar value head in float32: [..., d] → [...], v = hidden · w + b."""
        if not self.config.value_head:
            raise ValueError("Transformer.value needs TransformerConfig(value_head=True).")
        assert hidden.shape[-1] == self.config.d_model, hidden.shape
        acc = wide(self.config.dtype)
        w = self.value_w[...].astype(acc)
        return hidden.astype(acc) @ w + self.value_b[...].astype(acc)

    def __call__(self, tokens_bt: jax.Array, positions_bt: jax.Array | None = None,
                 valid_bt: jax.Array | None = None) -> jax.Array:
        """Logits [B, T, V] (float32); positions default to arange(T), valid to all-true."""
        b, t = tokens_bt.shape
        if positions_bt is None:
            positions_bt = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        if valid_bt is None:
            valid_bt = jnp.ones((b, t), bool)
        hidden, _ = self.forward(tokens_bt, positions_bt, valid_bt)
        return self.logits(hidden)

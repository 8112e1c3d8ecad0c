"""Building blocks of the decoder: RMSNorm, RoPE, GQA attention, gated MLP (SwiGLU / GeGLU).

Every parameter is created through :func:`param`, which attaches logical axis names
(see the table in :mod:`polrl.models.transformer`) with ``eager_sharding=False``: the
names are metadata only, so a model can be built without a mesh and sharded later by
mapping logical names to mesh axes (``nnx.get_partition_spec`` + axis rules).

Shape suffixes: b batch, t query tokens, s key slots, d model width, h query heads,
k kv heads, g query heads per kv head (h = k·g), e head dim, f mlp width, r LoRA rank.

Every projection ``y = x W`` also adds a low-rank update ``s · (x A) B`` when the module
carries a LoRA adapter for ``W`` (attributes ``<W>_lora_a``, ``<W>_lora_b`` and the scale
``lora_scale``, attached by :func:`polrl.models.lora.apply_lora`); see :func:`lora_update`.
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Initializer = Any


def wide(dtype: Any) -> Any:
    """The dtype norms, RoPE, attention scores and the LM head run in: float32, or the compute
    dtype when it is wider (a float64 model, used to compare computation orders without float32
    rounding)."""
    return jnp.promote_types(dtype, jnp.float32)


def param(rngs: nnx.Rngs, init: Initializer, shape: tuple[int, ...], names: tuple[str, ...],
          dtype: Any) -> nnx.Param:
    """An ``nnx.Param`` of ``shape`` drawn from ``init``, annotated with logical axis ``names``."""
    assert len(shape) == len(names), (shape, names)
    annotated = nnx.with_partitioning(init, names, eager_sharding=False)
    return nnx.Param(annotated(rngs.params(), shape, dtype))


def fan_in_normal(fan_in: int) -> Initializer:
    """N(0, 1/fan_in): unit-variance outputs for unit-variance inputs, any kernel rank."""
    return nnx.initializers.normal(stddev=1.0 / math.sqrt(fan_in))


class RMSNorm(nnx.Module):
    """y = x / sqrt(mean(x², -1) + eps) · (offset + scale), in float32 (``wide``), returned in ``dtype``.

    ``offset`` is 0 for Llama / Qwen2 and 1 for Gemma (which stores ``scale − 1``); the
    parameter is initialised to ``1 − offset`` so a fresh norm multiplies by 1 either way.
    """

    def __init__(self, dim: int, *, eps: float, dtype: Any, param_dtype: Any, rngs: nnx.Rngs,
                 offset: float = 0.0):
        self.eps = eps
        self.dtype = dtype
        self.offset = offset
        init = nnx.initializers.constant(1.0 - offset)
        self.scale = param(rngs, init, (dim,), ("norm",), param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        assert x.shape[-1] == self.scale.shape[0], (x.shape, self.scale.shape)
        acc = wide(self.dtype)
        x32 = x.astype(acc)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (normed * (self.offset + self.scale[...].astype(acc))).astype(self.dtype)


def rope_inv_freq(head_dim: int, theta: float, scaling=None, dtype: Any = jnp.float32) -> jax.Array:
    """Rotation frequencies ω_i = theta^(−2i/e), i < e/2 (in ``dtype``), optionally rescaled.

    ``scaling`` (a :class:`polrl.models.transformer.RopeScaling` or None) stretches the
    context as in HF ``modeling_rope_utils``:
      * ``"linear"`` (position interpolation, arXiv:2306.15595): ω_i / factor;
      * ``"llama3"`` (Llama 3.1, arXiv:2407.21783): with wavelength λ_i = 2π/ω_i,
        L = original_max_len, λ_lo = L / low_freq_factor, λ_hi = L / high_freq_factor:
        λ_i < λ_hi keeps ω_i; λ_i > λ_lo gives ω_i / factor; in between
        ω_i · ((1 − m)/factor + m) with m = (L/λ_i − low_freq_factor) /
        (high_freq_factor − low_freq_factor).
    """
    assert head_dim % 2 == 0, head_dim
    inv_freq = theta ** (-jnp.arange(0, head_dim, 2, dtype=dtype) / head_dim)
    if scaling is None:
        return inv_freq
    if scaling.kind == "linear":
        return inv_freq / scaling.factor
    assert scaling.kind == "llama3", scaling.kind
    wavelen = 2 * math.pi / inv_freq
    old_len = scaling.original_max_len
    low, high = scaling.low_freq_factor, scaling.high_freq_factor
    smooth = (old_len / wavelen - low) / (high - low)
    medium = (1 - smooth) * inv_freq / scaling.factor + smooth * inv_freq
    scaled = jnp.where(wavelen > old_len / low, inv_freq / scaling.factor, inv_freq)
    is_medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return jnp.where(is_medium, medium, scaled)


def rope_tables(positions_bt: jax.Array, head_dim: int, theta: float, max_len: int,
                scaling=None, dtype: Any = jnp.float32) -> tuple[jax.Array, jax.Array]:
    """cos a, sin a [b, t, 1, e/2] with a_i = position · ω_i (in ``dtype``, float32 unless the
    model is float64; ω of :func:`rope_inv_freq`).

    Looked up in a [max_len, e/2] table that depends on no input, so XLA computes it once
    (hoisted out of a decode loop) instead of re-evaluating cos/sin inside every fused
    rotation. Positions must lie in [0, max_len); pads' positions are clipped.
    """
    inv_freq = rope_inv_freq(head_dim, theta, scaling, dtype)
    angle_li = jnp.arange(max_len, dtype=dtype)[:, None] * inv_freq
    cos = jnp.take(jnp.cos(angle_li), positions_bt, axis=0, mode="clip")
    sin = jnp.take(jnp.sin(angle_li), positions_bt, axis=0, mode="clip")
    return cos[:, :, None, :], sin[:, :, None, :]


def rope(x_bthe: jax.Array, cos_bt1i: jax.Array, sin_bt1i: jax.Array) -> jax.Array:
    """Rotary position embedding, rotate-half convention (HF Llama / Qwen2).

    With e = head_dim, i < e/2 and the angles a_i of :func:`rope_tables`:
      y[..., i]       = x[..., i] cos a_i − x[..., i + e/2] sin a_i
      y[..., i + e/2] = x[..., i + e/2] cos a_i + x[..., i] sin a_i
    so ⟨rope(q, m), rope(k, n)⟩ depends on m − n only. Computed in the tables' dtype (float32).
    """
    b, t, _, e = x_bthe.shape
    assert cos_bt1i.shape == (b, t, 1, e // 2), (cos_bt1i.shape, x_bthe.shape)
    x = x_bthe.astype(wide(cos_bt1i.dtype))
    x1, x2 = x[..., : e // 2], x[..., e // 2:]
    y = jnp.concatenate([x1 * cos_bt1i - x2 * sin_bt1i, x2 * cos_bt1i + x1 * sin_bt1i], axis=-1)
    return y.astype(x_bthe.dtype)


def lora_update(module: nnx.Module, name: str, x: jax.Array) -> jax.Array | None:
    """s · (x A) B for the LoRA adapter of weight ``name`` (arXiv:2106.09685), None without one.

    ``x`` [..., n_in] holds the inputs the weight contracts, flattened (d for wq, h·e for wo);
    A is ``<name>_lora_a`` [in…, r] and B is ``<name>_lora_b`` [r, out…], so the result has
    shape [..., out…] and ``x W + lora_update`` equals ``x (W + s · A B)``. s is the module's
    ``lora_scale`` (alpha / r). Computed in ``module.dtype`` like the base projection.
    """
    a = getattr(module, name + "_lora_a", None)
    if a is None:
        return None
    b = getattr(module, name + "_lora_b")
    rank = a.shape[-1]
    a_ir = a[...].astype(module.dtype).reshape(-1, rank)
    b_ro = b[...].astype(module.dtype).reshape(rank, -1)
    assert x.shape[-1] == a_ir.shape[0], (name, x.shape, a.shape)
    y = (x @ a_ir) @ b_ro * jnp.asarray(module.lora_scale, module.dtype)
    return y.reshape(*x.shape[:-1], *b.shape[1:])


def _plus(y: jax.Array, update: jax.Array | None) -> jax.Array:
    return y if update is None else y + update


class Attention(nnx.Module):
    """Grouped-query attention with RoPE.

    q = x Wq (+bq) ∈ [b,t,h,e], k = x Wk (+bk), v = x Wv (+bv) ∈ [b,t,k,e]; query head
    j reads kv head j // g. With a boolean visibility mask M[b,t,s]:
      z = q·kᵀ / sqrt(c),   z ← cap · tanh(z / cap)  (Gemma 2's soft-capping, when set),
      A = softmax_s( z masked to −inf where ¬M ),  out = (A v) Wo,
    with c = query_pre_attn_scalar (default e = head_dim). Scores and softmax are in float32.
    With ``qk_norm`` (Qwen3, Gemma 3) q and k are RMSNorm-ed per head over e (own scales of
    length e, the model's norm offset) before RoPE: q ← RMSNorm_q(q), k ← RMSNorm_k(k).
    A query that sees no key (a left pad) gets a finite, meaningless output; no real token
    ever reads it.

    Keys are kept as [b,k,e,s] and values as [b,k,s,e] (the cache layout): both attention
    matmuls then batch over (b, k) with plain row-major operands, no transpose of the cache.

    ``attention_impl = "dot_product"`` computes the same function with
    ``jax.nn.dot_product_attention`` whenever the queries attend to their own keys (a forward
    without a cache: training and scoring): cuDNN's fused flash kernel on a GPU where it applies,
    XLA's composition elsewhere. Decoding against a cache keeps the einsum path (its layout).
    """

    def __init__(self, cfg, *, rngs: nnx.Rngs):
        d, h, k, e = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        pd = cfg.param_dtype
        self.dtype = cfg.dtype
        self.score_divisor = math.sqrt(cfg.query_pre_attn_scalar or e)
        self.softcap = cfg.attn_softcap
        self.wq = param(rngs, fan_in_normal(d), (d, h, e), ("embed", "q_heads", "head_dim"), pd)
        self.wk = param(rngs, fan_in_normal(d), (d, k, e), ("embed", "kv_heads", "head_dim"), pd)
        self.wv = param(rngs, fan_in_normal(d), (d, k, e), ("embed", "kv_heads", "head_dim"), pd)
        self.wo = param(rngs, fan_in_normal(h * e), (h, e, d), ("q_heads", "head_dim", "embed"), pd)
        if cfg.qkv_bias:
            zeros = nnx.initializers.zeros
            self.bq = param(rngs, zeros, (h, e), ("q_heads", "head_dim"), pd)
            self.bk = param(rngs, zeros, (k, e), ("kv_heads", "head_dim"), pd)
            self.bv = param(rngs, zeros, (k, e), ("kv_heads", "head_dim"), pd)
        self.qkv_bias = cfg.qkv_bias
        self.fused = cfg.attention_impl == "dot_product"
        if cfg.qk_norm:
            norm = dict(eps=cfg.norm_eps, dtype=cfg.dtype, param_dtype=pd, rngs=rngs, offset=cfg.norm_offset)
            self.q_norm = RMSNorm(e, **norm)
            self.k_norm = RMSNorm(e, **norm)
        self.qk_norm = cfg.qk_norm

    def _project_qk(self, x_btd: jax.Array, name: str) -> jax.Array:
        """Queries or keys before RoPE: ``_project``, then (qk_norm) RMSNorm of each head over e."""
        y = self._project(x_btd, name)
        return getattr(self, name + "_norm")(y) if self.qk_norm else y

    def _project(self, x_btd: jax.Array, name: str) -> jax.Array:
        """x W_name (+ b_name) (+ LoRA update): [b,t,d] → [b,t,heads,e]."""
        y = jnp.einsum("btd,dhe->bthe", x_btd, getattr(self, "w" + name)[...].astype(self.dtype))
        y = _plus(y, lora_update(self, "w" + name, x_btd))
        if self.qkv_bias:
            y = y + getattr(self, "b" + name)[...].astype(self.dtype)
        return y

    def project_kv(self, x_btd: jax.Array, rope_cs) -> tuple[jax.Array, jax.Array]:
        """Rotated keys [b,k,e,t] and values [b,k,t,e] of the new tokens."""
        k = rope(self._project_qk(x_btd, "k"), *rope_cs)
        return k.transpose(0, 2, 3, 1), self._project(x_btd, "v").transpose(0, 2, 1, 3)

    def __call__(self, x_btd: jax.Array, rope_cs, k_bkes: jax.Array, v_bkse: jax.Array,
                 visible_bts: jax.Array, cached: bool = False) -> jax.Array:
        """Attend the queries of ``x_btd`` to keys [b,k,e,s] / values [b,k,s,e] where visible
        (``cached``: the keys are a cache's, not the queries' own)."""
        b, t, _ = x_btd.shape
        nk, e, s = k_bkes.shape[1:]
        assert v_bkse.shape == (b, nk, s, e), (v_bkse.shape, k_bkes.shape)
        assert visible_bts.shape == (b, t, s), (visible_bts.shape, (b, t, s))
        q = rope(self._project_qk(x_btd, "q"), *rope_cs)
        if self.fused and not cached:
            out_bthe = jax.nn.dot_product_attention(
                q, k_bkes.transpose(0, 3, 1, 2), v_bkse.transpose(0, 2, 1, 3), mask=visible_bts[:, None],
                scale=1.0 / self.score_divisor)
            return self._out(out_bthe.reshape(b, t, -1))
        q_bkgte = q.reshape(b, t, nk, -1, e).transpose(0, 2, 3, 1, 4)
        scores = jnp.einsum("bkgte,bkes->bkgts", q_bkgte, k_bkes,
                            preferred_element_type=wide(self.dtype)) / self.score_divisor
        if self.softcap is not None:
            scores = self.softcap * jnp.tanh(scores / self.softcap)
        scores = jnp.where(visible_bts[:, None, None], scores, jnp.finfo(scores.dtype).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        out_bkgte = jnp.einsum("bkgts,bkse->bkgte", probs, v_bkse)
        # One 2-D matmul over the flattened (head, head_dim) axis: XLA keeps wo as is.
        return self._out(out_bkgte.transpose(0, 3, 1, 2, 4).reshape(b, t, -1))

    def _out(self, out_bt_he: jax.Array) -> jax.Array:
        """The output projection of the heads' outputs [b,t,h·e]."""
        out = out_bt_he @ self.wo[...].astype(self.dtype).reshape(out_bt_he.shape[-1], -1)
        return _plus(out, lora_update(self, "wo", out_bt_he))


ACTIVATIONS = {
    "silu": jax.nn.silu,
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}


class MLP(nnx.Module):
    """Gated MLP: y = (act(x W_gate) ⊙ (x W_up)) W_down.

    act = silu gives SwiGLU (Llama, Qwen2); act = gelu_tanh, the tanh approximation
    0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³))), gives GeGLU (Gemma); arXiv:2002.05202.
    """

    def __init__(self, cfg, *, rngs: nnx.Rngs):
        d, f, pd = cfg.d_model, cfg.mlp_dim, cfg.param_dtype
        self.dtype = cfg.dtype
        self.activation = cfg.activation
        self.w_gate = param(rngs, fan_in_normal(d), (d, f), ("embed", "mlp"), pd)
        self.w_up = param(rngs, fan_in_normal(d), (d, f), ("embed", "mlp"), pd)
        self.w_down = param(rngs, fan_in_normal(f), (f, d), ("mlp", "embed"), pd)

    def __call__(self, x_btd: jax.Array) -> jax.Array:
        gate = _plus(x_btd @ self.w_gate[...].astype(self.dtype), lora_update(self, "w_gate", x_btd))
        up = _plus(x_btd @ self.w_up[...].astype(self.dtype), lora_update(self, "w_up", x_btd))
        hidden = ACTIVATIONS[self.activation](gate) * up
        return _plus(hidden @ self.w_down[...].astype(self.dtype),
                     lora_update(self, "w_down", hidden))

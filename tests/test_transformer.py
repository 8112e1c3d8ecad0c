"""Transformer: shapes, masking, KV cache, GQA, heads, axis names, config checks."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl.models import Transformer, TransformerConfig, init_cache
from polrl.models.layers import rope, rope_tables

TINY = TransformerConfig(vocab_size=61, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2,
                         mlp_dim=48, max_len=64)
# Every optional part on: q/k/v biases (set nonzero by make), untied head, value head.
FULL = dataclasses.replace(TINY, qkv_bias=True, tie_embeddings=False, value_head=True)
AXIS_NAMES = {"vocab", "embed", "q_heads", "kv_heads", "head_dim", "mlp", "norm", "expert"}
# Qwen3-MoE-like: q/k norms, layer 1 a mixture of 4 experts (top 2).
MOE = dataclasses.replace(TINY, qk_norm=True, num_experts=4, experts_per_token=2, expert_mlp_dim=8,
                          moe_layers=(1,))


@functools.lru_cache(maxsize=None)
def make(config=TINY, seed=0):
    """A model per (config, seed), built once: eager init compiles every op it meets."""
    model = Transformer(config, rngs=nnx.Rngs(seed))
    if config.qkv_bias:
        for i, layer in enumerate(model.layers):
            for name in ("bq", "bk", "bv"):
                var = getattr(layer.attn, name)
                var[...] = 0.5 * jax.random.normal(jax.random.key(100 + i), var.shape)
    return model


@functools.lru_cache(maxsize=None)
def jitted(model, method="__call__"):
    """model.method(*args) compiled once per shape, shared across tests (eager op-by-op
    dispatch is slow)."""
    graphdef, params = nnx.split(model, nnx.Param)
    fn = jax.jit(lambda p, *args: getattr(nnx.merge(graphdef, p), method)(*args))
    return lambda *args: fn(params, *args)


def tokens(shape, seed=1):
    return jax.random.randint(jax.random.key(seed), shape, 0, TINY.vocab_size, dtype=jnp.int32)


def arange_positions(b, t):
    return jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))


def test_logits_shape_and_dtype():
    logits = jitted(make())(tokens((3, 7)))
    assert logits.shape == (3, 7, TINY.vocab_size) and logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_bfloat16_activations_give_float32_logits():
    model = make(dataclasses.replace(TINY, dtype=jnp.bfloat16))
    hidden, _ = jitted(model, "forward")(tokens((2, 5)), arange_positions(2, 5),
                                         jnp.ones((2, 5), bool))
    assert hidden.dtype == jnp.bfloat16
    assert jitted(model, "logits")(hidden).dtype == jnp.float32


def test_causality():
    model = jitted(make())
    x = tokens((2, 8))
    y = x.at[:, 5].set((x[:, 5] + 1) % TINY.vocab_size)
    lx, ly = model(x), model(y)
    np.testing.assert_array_equal(lx[:, :5], ly[:, :5])
    assert not np.allclose(lx[:, 5:], ly[:, 5:])


@pytest.mark.parametrize("config", [TINY, FULL], ids=["tiny", "full"])
def test_left_padding_invariance(config):
    model = jitted(make(config))
    prompt = tokens((1, 6))
    for pads in (1, 3):
        padded = jnp.concatenate([jnp.full((1, pads), 7, jnp.int32), prompt], axis=1)
        valid = jnp.arange(6 + pads)[None] >= pads
        positions = jnp.cumsum(valid, axis=1) - 1
        np.testing.assert_allclose(model(padded, positions, valid)[:, pads:], model(prompt),
                                   atol=1e-5, rtol=0)


@pytest.mark.parametrize("config", [TINY, FULL, MOE], ids=["tiny", "full", "moe"])
def test_prefill_then_decode_matches_full_forward(config):
    model = make(config)
    forward, logits = jitted(model, "forward"), jitted(model, "logits")
    seq = tokens((2, 9))
    valid = jnp.array([[False, False] + [True] * 7, [True] * 9])  # row 0 left-padded by 2
    positions = jnp.cumsum(valid, axis=1) - 1
    full, _ = forward(seq, positions, valid)

    prefill = 5
    hidden, cache = forward(seq[:, :prefill], positions[:, :prefill], valid[:, :prefill],
                            init_cache(config, 2, 12))
    steps = [hidden]
    for t in range(prefill, 9):
        hidden, cache = forward(seq[:, t:t + 1], positions[:, t:t + 1], valid[:, t:t + 1], cache)
        steps.append(hidden)
    np.testing.assert_array_equal(cache.index, 9)
    np.testing.assert_array_equal(cache.valid_bs[:, :9], valid)
    assert not bool(cache.valid_bs[:, 9:].any())
    real = valid[..., None]
    np.testing.assert_allclose(jnp.where(real, logits(jnp.concatenate(steps, axis=1)), 0),
                               jnp.where(real, logits(full), 0), atol=1e-5, rtol=0)


def test_gqa_equals_multihead_with_repeated_kv():
    """Query head j reads kv head j // (num_heads // num_kv_heads), as HF's repeat_kv."""
    gqa = make()
    mha = make(dataclasses.replace(TINY, num_kv_heads=TINY.num_heads), seed=5)
    assert gqa.layers[0].attn.wk.shape == (32, 2, 8)
    assert mha.layers[0].attn.wk.shape == (32, 4, 8)
    group = TINY.num_heads // TINY.num_kv_heads
    gqa_values = dict(nnx.to_flat_state(nnx.state(gqa, nnx.Param)))
    graphdef, mha_params = nnx.split(mha, nnx.Param)
    copied = {}
    for path, var in nnx.to_flat_state(mha_params):
        value = gqa_values[path][...]
        copied[path] = var.replace(jnp.repeat(value, group, axis=1)
                                   if path[-1] in ("wk", "wv") else value)
    merged = nnx.merge(graphdef, nnx.from_flat_state(copied))
    x = tokens((2, 6))
    np.testing.assert_allclose(jitted(merged)(x), jitted(gqa)(x), atol=1e-5, rtol=0)


def test_tied_and_untied_heads():
    tied, untied = make(), make(FULL)
    assert not hasattr(tied, "lm_head")
    assert untied.lm_head.shape == (TINY.d_model, TINY.vocab_size)
    hidden = jax.random.normal(jax.random.key(2), (3, TINY.d_model))
    np.testing.assert_allclose(jitted(tied, "logits")(hidden), hidden @ tied.embed[...].T,
                               atol=1e-5)
    np.testing.assert_allclose(jitted(untied, "logits")(hidden), hidden @ untied.lm_head[...],
                               atol=1e-5)


def test_every_param_has_logical_axis_names():
    flat = list(nnx.to_flat_state(nnx.state(make(FULL), nnx.Param)))
    assert {path[-1] for path, _ in flat} >= {"lm_head", "value_w", "bq", "scale", "w_down"}
    for path, var in flat:
        names = var.get_metadata()["out_sharding"]
        assert len(names) == var.ndim and set(names) <= AXIS_NAMES, (path, names)


def test_value_head():
    model = make(FULL)
    hidden, _ = jitted(model, "forward")(tokens((2, 5)), arange_positions(2, 5),
                                         jnp.ones((2, 5), bool))
    values = jitted(model, "value")(hidden)
    assert values.shape == (2, 5) and values.dtype == jnp.float32
    np.testing.assert_array_equal(values, 0.0)  # zero-initialized
    with pytest.raises(ValueError, match="value_head=True"):
        make().value(hidden)


def test_model_state_is_params_only():
    """``nnx.split(model, nnx.Param)`` captures everything a forward needs."""
    _, params, rest = nnx.split(make(FULL), nnx.Param, ...)
    assert len(jax.tree.leaves(params)) > 0 and len(jax.tree.leaves(rest)) == 0


def test_rope_depends_on_relative_position():
    q = jax.random.normal(jax.random.key(3), (1, 1, 1, 8))
    k = jax.random.normal(jax.random.key(4), (1, 1, 1, 8))

    @jax.jit
    def dot(m, n):
        rotated = lambda x, p: rope(x, *rope_tables(jnp.reshape(p, (1, 1)), 8, 10000.0, 16))
        return jnp.sum(rotated(q, m) * rotated(k, n)), jnp.linalg.norm(rotated(q, m))

    assert float(dot(3, 1)[0]) == pytest.approx(float(dot(12, 10)[0]), abs=1e-5)
    assert float(dot(3, 1)[0]) != pytest.approx(float(dot(3, 2)[0]), abs=1e-3)
    assert float(dot(7, 0)[1]) == pytest.approx(float(jnp.linalg.norm(q)), rel=1e-6)


@pytest.mark.parametrize("change, message", [
    ({"num_kv_heads": 3}, "num_kv_heads"),
    ({"d_model": 30}, "head_dim"),
    ({"head_dim": 7}, "head_dim"),
    ({"num_layers": 0}, "num_layers"),
    ({"rope_theta": 0.0}, "rope_theta"),
    ({"rope_local_theta": 1e4}, "rope_local_theta .* needs sliding_layers"),
    ({"moe_layers": (0,)}, "moe_layers needs positive ints num_experts"),
    ({"moe_layers": (0,), "num_experts": 2, "experts_per_token": 3, "expert_mlp_dim": 4},
     "experts_per_token <= num_experts"),
    ({"num_experts": 4}, "moe_layers is empty"),
    ({"moe_layers": (2,), "num_experts": 2, "experts_per_token": 1, "expert_mlp_dim": 4}, "moe_layers must"),
])
def test_config_validation(change, message):
    fields = dict(vocab_size=61, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2,
                  mlp_dim=48)
    with pytest.raises(ValueError, match=message):
        TransformerConfig(**{**fields, **change})


def test_cache_length_is_bounded_by_max_len():
    with pytest.raises(ValueError, match="max_len"):
        init_cache(TINY, 1, TINY.max_len + 1)


# ----------------------------------------------------------------------------- mixture of experts


@pytest.mark.parametrize("renormalize", [False, True])
def test_moe_layer_by_hand(renormalize):
    """SparseMoE in float64 against numpy: softmax router, top 2, weights p_j (or p_j / Σ_top p),
    the weighted sum of the two chosen SwiGLU experts; jit == no-jit."""
    from polrl.models.moe import SparseMoE

    with jax.enable_x64(True):
        cfg = dataclasses.replace(MOE, renormalize_topk=renormalize, dtype=jnp.float64,
                                  param_dtype=jnp.float64)
        layer = SparseMoE(cfg, rngs=nnx.Rngs(0))
        x = np.random.default_rng(0).normal(size=(2, 3, cfg.d_model))
        w_r, w_g, w_u, w_d = (np.asarray(getattr(layer, n)[...]) for n in
                              ("router", "experts_gate", "experts_up", "experts_down"))
        z = x @ w_r
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        expected = np.zeros_like(x)
        for b, t in np.ndindex(2, 3):
            top = np.argsort(p[b, t])[-2:]
            weights = p[b, t, top] / (p[b, t, top].sum() if renormalize else 1.0)
            for j, w in zip(top, weights):
                gate = x[b, t] @ w_g[j]
                expected[b, t] += w * ((gate / (1 + np.exp(-gate)) * (x[b, t] @ w_u[j])) @ w_d[j])
        graphdef, params = nnx.split(layer)
        jitted_layer = jax.jit(lambda p_, x_: nnx.merge(graphdef, p_)(x_))
        np.testing.assert_allclose(layer(jnp.asarray(x)), expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(jitted_layer(params, jnp.asarray(x)), expected, rtol=1e-12, atol=1e-12)
        routed = np.asarray(layer.routing_weights(jnp.asarray(x)))
        assert ((routed > 0).sum(-1) == 2).all()
        top_mass = np.sort(p, -1)[..., -2:].sum(-1)
        np.testing.assert_allclose(routed.sum(-1), 1.0 if renormalize else top_mass, rtol=1e-12)


def test_moe_model_params_flops_and_lora():
    """Layer 1's MLP is the mixture (stacked [E, …] experts with the expert axis named), matmul
    FLOPs count its router and k experts, and LoRA adapts its attention but not its experts."""
    from polrl.models.flops import matmul_params
    from polrl.models.lora import apply_lora

    model = make(MOE)
    assert model.layers[1].mlp.experts_gate.shape == (4, 32, 8) and hasattr(model.layers[0].mlp, "w_gate")
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        names = var.get_metadata()["out_sharding"]
        assert len(names) == var.ndim and set(names) <= AXIS_NAMES, (path, names)
        assert ("expert" in names) == (path[-1] in ("router", "experts_gate", "experts_up", "experts_down"))
    # per layer: attention 32·8·(2·4 + 2·2) = 3072; dense MLP 3·32·48 = 4608; MoE 32·4 + 2·3·32·8 = 1664
    assert matmul_params(MOE) == 2 * 3072 + 4608 + 1664 + 32 * 61
    adapted = apply_lora(nnx.clone(model), rank=2, rngs=nnx.Rngs(1))
    assert hasattr(adapted.layers[0].mlp, "w_gate_lora_a") and hasattr(adapted.layers[1].attn, "wq_lora_a")
    assert not any("lora" in name for name in vars(adapted.layers[1].mlp))

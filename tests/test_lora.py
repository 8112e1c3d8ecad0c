"""LoRA: the low-rank update by hand, zero-B identity, merge equivalence, adapter-only gradients
and optimizer state, orbax round trip of the adapter state."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from polrl.models import (LoRAParam, TransformerConfig, apply_lora, lora_optimizer, merge_lora,
                          split_lora)
from polrl.models.layers import lora_update
from polrl.models.lora import ATTENTION_TARGETS
from tiny_models import tiny_params

CONFIG = TransformerConfig(vocab_size=29, d_model=16, num_layers=2, num_heads=4, num_kv_heads=2,
                           mlp_dim=24, max_len=16, qkv_bias=True, tie_embeddings=False)
TOKENS = jax.random.randint(jax.random.key(3), (2, 7), 0, CONFIG.vocab_size, dtype=jnp.int32)


def base_model():
    graphdef, params = tiny_params(CONFIG)
    return nnx.merge(graphdef, params)


def adapted_model(rank=2, alpha=4.0, randomize_b=True, **kw):
    model = apply_lora(base_model(), rank=rank, alpha=alpha, rngs=nnx.Rngs(5), **kw)
    if randomize_b:  # a trained adapter: B ≠ 0 (drawn with numpy: nothing to compile)
        rng = np.random.default_rng(0)
        for path, var in nnx.iter_graph(model):
            if isinstance(var, LoRAParam) and str(path[-1]).endswith("_lora_b"):
                var[...] = jnp.asarray(rng.normal(0.0, 0.3, var.shape), jnp.float32)
    return model


@functools.lru_cache(maxsize=None)
def _forward(graphdef):
    """One compiled forward per model structure (base, adapted), shared by the tests."""
    return jax.jit(lambda p: nnx.merge(graphdef, p)(TOKENS))


def logits(model):
    graphdef, params = nnx.split(model, nnx.Param)
    return np.asarray(_forward(graphdef)(params))


def leaves(state):
    return jax.tree.leaves(state)


def test_low_rank_update_by_hand():
    class Proj(nnx.Module):
        pass

    m = Proj()
    m.dtype, m.lora_scale = jnp.float32, 2.0
    m.w_lora_a = LoRAParam(jnp.asarray([[1.0], [2.0]]))  # A [in=2, r=1]
    m.w_lora_b = LoRAParam(jnp.asarray([[3.0, -1.0, 0.5]]))  # B [r=1, out=3]
    x = jnp.asarray([[1.0, 1.0], [0.0, -1.0]])  # xA = [3, −2]
    np.testing.assert_allclose(lora_update(m, "w", x), [[18, -6, 3], [-12, 4, -2]])
    assert lora_update(m, "v", x) is None


def test_zero_b_leaves_the_model_unchanged():
    np.testing.assert_array_equal(logits(adapted_model(randomize_b=False)), logits(base_model()))


def test_adapted_model_differs_and_merge_equals_adapted():
    adapted = adapted_model()
    assert np.abs(logits(adapted) - logits(base_model())).max() > 1e-2
    merged = merge_lora(adapted)
    np.testing.assert_allclose(logits(merged), logits(adapted), rtol=1e-5, atol=1e-5)
    # merged has the plain structure; the adapted model still has its adapters
    assert nnx.split(merged, nnx.Param)[0] == nnx.split(base_model(), nnx.Param)[0]
    assert len(leaves(split_lora(adapted)[1])) == 2 * 7 * CONFIG.num_layers


def test_adapter_shapes_and_targets():
    model = adapted_model(alpha=None, targets=ATTENTION_TARGETS, randomize_b=False)
    attn, mlp = model.layers[0].attn, model.layers[0].mlp
    h, k, e, d = CONFIG.num_heads, CONFIG.num_kv_heads, CONFIG.head_dim, CONFIG.d_model
    assert attn.wq_lora_a.shape == (d, 2) and attn.wq_lora_b.shape == (2, h, e)
    assert attn.wk_lora_b.shape == (2, k, e)
    assert attn.wo_lora_a.shape == (h, e, 2) and attn.wo_lora_b.shape == (2, d)
    assert not hasattr(mlp, "w_up_lora_a") and not hasattr(mlp, "lora_scale")
    assert attn.lora_scale == 1.0  # alpha defaults to the rank


@pytest.mark.parametrize("kwargs, message", [
    (dict(targets=("wq", "q_proj")), "unknown names \\['q_proj'\\]"),
    (dict(rank=0), "rank must be a positive int"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        apply_lora(base_model(), rngs=nnx.Rngs(0), **kwargs)


def test_applying_twice_raises():
    with pytest.raises(ValueError, match="already has LoRA"):
        apply_lora(adapted_model(), rank=2, rngs=nnx.Rngs(0))


def _loss(graphdef):
    return lambda lora, base: logits_sum(nnx.merge(graphdef, lora, base))


def test_gradient_reaches_only_adapters_and_a_gets_none_while_b_is_zero():
    graphdef, lora, base = split_lora(adapted_model(randomize_b=False))
    g_lora, g_base = jax.jit(jax.grad(_loss(graphdef), argnums=(0, 1)))(lora, base)
    for path, g in jax.tree_util.tree_leaves_with_path(g_lora):
        name = jax.tree_util.keystr(path)
        # dL/dA = s·xᵀ(dL/dy)Bᵀ = 0 at B = 0; dL/dB = s·(xA)ᵀ dL/dy ≠ 0
        assert (float(jnp.abs(g).max()) == 0.0) == ("_lora_a" in name), name
    assert all(float(jnp.abs(g).max()) > 0 for g in leaves(g_base))  # base is not frozen by itself


def logits_sum(model):
    return jnp.mean(jax.nn.log_softmax(model(TOKENS))[..., 0])


def test_lora_optimizer_updates_adapters_only_and_holds_adapter_state_only():
    model = adapted_model()
    graphdef, params = nnx.split(model, nnx.Param)
    _, lora, base = split_lora(model)
    opt = lora_optimizer(optax.adam(1e-2))
    opt_state = opt.init(params)
    base_shapes = {x.shape for x in leaves(base)}
    state_shapes = [x.shape for x in leaves(opt_state) if x.ndim]
    assert not base_shapes & set(state_shapes)
    assert sum(int(np.prod(s)) for s in state_shapes) == 2 * sum(x.size for x in leaves(lora))

    @jax.jit
    def step(params, opt_state):  # the trainer's view: one state holding adapters and base
        grads = jax.grad(lambda p: logits_sum(nnx.merge(graphdef, p)))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates)

    new = nnx.merge(graphdef, step(params, opt_state))
    _, new_lora, new_base = split_lora(new)
    jax.tree.map(np.testing.assert_array_equal, new_base, base)
    assert all(float(jnp.abs(a - b).max()) > 0 for a, b in zip(leaves(new_lora), leaves(lora)))


def test_adapter_state_round_trips_through_orbax(tmp_path):
    _, lora, _ = split_lora(adapted_model())
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(tmp_path / "lora", lora)
        ckpt.wait_until_finished()
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, lora)
        restored = ckpt.restore(tmp_path / "lora", abstract)
    assert jax.tree.structure(restored) == jax.tree.structure(lora)
    jax.tree.map(np.testing.assert_array_equal, restored, lora)


def test_build_spec_with_lora_rank_trains_adapters_only(tmp_path, monkeypatch):
    """``model.lora_rank`` in an experiment config: adapters in the initial parameters, and every
    phase's optimizer keeps state for the adapters only."""
    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path / "data"))
    from experiments import arithmetic_grpo
    from polrl.train.build import build_spec

    config = arithmetic_grpo.get_config("smoke")
    config.model.lora_rank = 2
    spec = build_spec(config, progress=False)
    lora = nnx.state(nnx.merge(spec.graphdef, spec.init_params), LoRAParam)
    assert len(leaves(lora)) == 2 * 7 * config.model.num_layers
    adapter_size = sum(x.size for x in leaves(lora))
    for phase in spec.phases:
        opt_state = jax.eval_shape(phase.algorithm.optimizer.init, spec.init_params)
        state_size = sum(int(np.prod(x.shape)) for x in leaves(opt_state) if x.ndim)
        assert 0 < state_size <= 2 * adapter_size  # Adam's two moments, adapters only

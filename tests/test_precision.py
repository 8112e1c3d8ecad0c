"""Precision and memory options: bf16 compute with fp32 master weights, bf16 storage, remat,
chunked scoring over positions."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl import algorithms
from polrl.core import Batch
from polrl.models import TransformerConfig, init_cache, load_hf
from polrl.train import steps
from test_hf_import import fixture, reference
from tiny_models import tiny_params

V = 40
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=2, num_heads=4, num_kv_heads=2,
                        mlp_dim=32, max_len=24, value_head=True)
BF16 = dataclasses.replace(CFG, dtype=jnp.bfloat16)
REMAT = dataclasses.replace(CFG, remat=True)


@functools.lru_cache(maxsize=None)
def model(config=CFG):
    """(graphdef, params); every config shares the same numpy-drawn parameters."""
    return tiny_params(config, seed=0)


def batch(b=4, p=5, t=7, group_size=1, seed=0) -> Batch:
    """Numpy-built batch; groups of ``group_size`` rows share a prompt; the second group's
    prompt is left-padded."""
    rng = np.random.default_rng(seed)
    prompt = np.repeat(rng.integers(1, V, (b // group_size, p)), group_size, axis=0)
    valid = np.ones((b, p), bool)
    valid[group_size:2 * group_size, 0] = False
    return Batch(
        prompt_bp=np.where(valid, prompt, 0).astype(np.int32),
        prompt_valid_bp=valid,
        response_bt=rng.integers(1, V, (b, t)).astype(np.int32),
        mask_bt=np.ones((b, t), np.float32),
        reward_b=np.arange(b, dtype=np.float32),
        group_b=np.arange(b, dtype=np.int32) // group_size,
        group_size=group_size,
    )


def forward_logits(config, tokens):
    graphdef, params = model(config)
    return jax.jit(lambda p: nnx.merge(graphdef, p)(tokens))(params)


TOKENS = jnp.asarray(np.random.default_rng(1).integers(0, V, (2, 9)), jnp.int32)


# ----------------------------------------------------------------------------- bf16


def test_bfloat16_compute_is_close_to_float32():
    full, half = forward_logits(CFG, TOKENS), forward_logits(BF16, TOKENS)
    assert half.dtype == jnp.float32  # the LM head runs in float32
    scale = float(jnp.abs(full).max())
    err = float(jnp.abs(half - full).max())
    assert 0 < err <= 0.05 * scale, (err, scale)  # bf16 has an 8-bit mantissa


def test_bfloat16_compute_keeps_float32_master_weights_and_optimizer_state():
    graphdef, params = model(BF16)
    alg = algorithms.sft(learning_rate=1e-2)
    state = steps.init_state(params, alg, jax.random.key(0))
    update = jax.jit(functools.partial(steps.update, algorithm=alg, graphdef=graphdef))
    new_state, metrics = update(state, batch())
    assert np.isfinite(float(metrics["loss"]))
    for tree in (new_state.params, new_state.opt_state):
        float_leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
        assert float_leaves and all(x.dtype == jnp.float32 for x in float_leaves)
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), new_state.params, params)
    assert max(jax.tree.leaves(moved)) > 0


def test_bfloat16_storage_of_a_loaded_checkpoint():
    loaded, _ = load_hf(fixture("llama"), dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(nnx.state(loaded, nnx.Param)))
    tokens, expected = reference("llama")
    graphdef, params = nnx.split(loaded, nnx.Param)
    got = jax.jit(lambda p: nnx.merge(graphdef, p)(jnp.asarray(tokens)))(params)
    assert float(jnp.abs(got - expected).max()) <= 0.05 * float(np.abs(expected).max())


# ----------------------------------------------------------------------------- remat


def _loss(graphdef, params, tokens):
    logp = jax.nn.log_softmax(nnx.merge(graphdef, params)(tokens))
    return -jnp.mean(jnp.take_along_axis(logp[:, :-1], tokens[:, 1:, None], axis=-1))


def test_remat_gives_the_same_loss_and_gradients():
    (g_plain, params), (g_remat, _) = model(CFG), model(REMAT)
    assert g_plain != g_remat  # remat is part of the static structure
    plain = jax.jit(jax.value_and_grad(functools.partial(_loss, g_plain)))(params, TOKENS)
    remat = jax.jit(jax.value_and_grad(functools.partial(_loss, g_remat)))(params, TOKENS)
    np.testing.assert_allclose(remat[0], plain[0], rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 remat[1], plain[1])


def test_remat_forward_with_cache_matches():
    def decode(config):
        graphdef, params = model(config)

        def run(p):
            m = nnx.merge(graphdef, p)
            cache = init_cache(config, 2, 9)
            pos = jnp.broadcast_to(jnp.arange(9, dtype=jnp.int32), (2, 9))
            valid = jnp.ones((2, 9), bool)
            hidden, cache = m.forward(TOKENS[:, :5], pos[:, :5], valid[:, :5], cache)
            hidden2, _ = m.forward(TOKENS[:, 5:], pos[:, 5:], valid[:, 5:], cache)
            return jnp.concatenate([hidden, hidden2], axis=1)

        return jax.jit(run)(params)

    np.testing.assert_allclose(decode(REMAT), decode(CFG), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- chunked scoring


@pytest.mark.parametrize("group_size, chunk_size", [(1, 3), (2, 16)])
def test_chunked_score_equals_unchunked_in_value_and_gradient(group_size, chunk_size):
    """T = 7 response positions: chunks of 3 leave a padded tail, 16 > T is one chunk; groups
    of 2 take the shared-prompt path.

    Chunking changes the order in which the LM head's gradient is accumulated over positions, so
    in float32 the two differ by rounding that depends on the CPU's kernels; the comparison runs on
    a float64 model, where they agree to ~1e-15 and any real difference (a dropped or doubled
    position) is still ≥ 1e-3."""
    with jax.enable_x64(True):
        config = dataclasses.replace(CFG, dtype=jnp.float64, param_dtype=jnp.float64)
        graphdef, params = tiny_params(config, seed=0)
        b = batch(group_size=group_size)

        def scored(chunk, p):
            out = steps.score(graphdef, p, b, temperature=0.7, values=True, chunk_size=chunk)
            return jnp.sum(out["logp_bt"]) + 0.1 * jnp.sum(out["entropy_bt"]), out

        both = jax.jit(lambda p: [jax.value_and_grad(functools.partial(scored, c), has_aux=True)(p)
                                  for c in (chunk_size, 0)])
        ((_, chunked), g_chunked), ((_, plain), g_plain) = both(params)
        assert chunked["logp_bt"].dtype == jnp.float64
        for key in ("logp_bt", "entropy_bt", "value_bt"):
            np.testing.assert_allclose(chunked[key], plain[key], rtol=1e-10, atol=1e-12)
        jax.tree.map(lambda a, b_: np.testing.assert_allclose(a, b_, rtol=1e-9, atol=1e-12),
                     g_chunked, g_plain)


def test_config_chunk_size_is_the_default_and_never_builds_full_logits():
    config = dataclasses.replace(CFG, logits_chunk_size=2)
    graphdef, params = model(config)
    b = batch()
    chunked = jax.jit(lambda p: steps.score(graphdef, p, b))(params)
    plain = jax.jit(lambda p: steps.score(graphdef, p, b, chunk_size=0))(params)
    np.testing.assert_allclose(chunked["logp_bt"], plain["logp_bt"], rtol=1e-5, atol=1e-6)
    # no [B, T, V] array anywhere in the chunked program (B = 4 rows, T = 7 response
    # positions), only [B, 2, V] blocks; the unchunked program has the full array.
    program = str(jax.make_jaxpr(lambda p: steps.score(graphdef, p, b))(params))
    assert f"f32[4,7,{V}]" not in program and f"f32[4,2,{V}]" in program
    unchunked = str(jax.make_jaxpr(lambda p: steps.score(graphdef, p, b, chunk_size=0))(params))
    assert f"f32[4,7,{V}]" in unchunked


def test_bad_chunk_size_raises():
    with pytest.raises(ValueError, match="logits_chunk_size"):
        dataclasses.replace(CFG, logits_chunk_size=-1)


# ----------------------------------------------------------------------------- micro-batches


@pytest.mark.parametrize("group_size, micro", [(1, 4), (2, 2)])
def test_micro_batched_score_equals_the_whole_batch_in_value_and_gradient(group_size, micro):
    """Rows scored in ``micro`` rematerialised micro-batches of whole groups (groups i, i + m, …)
    give every row's scores and the gradient of the whole batch; compared on a float64 model."""
    with jax.enable_x64(True):
        config = dataclasses.replace(CFG, dtype=jnp.float64, param_dtype=jnp.float64)
        graphdef, params = tiny_params(config, seed=0)
        b = batch(b=8, group_size=group_size)
        weight = jnp.asarray(np.random.default_rng(2).normal(size=(8, 7)))  # rows weighted apart

        def scored(m, p):
            out = steps.score(graphdef, p, b, temperature=0.7, values=True, micro_batches=m)
            return jnp.sum(weight * out["logp_bt"]) + 0.1 * jnp.sum(out["value_bt"]), out

        ((_, split), g_split), ((_, whole), g_whole) = jax.jit(
            lambda p: [jax.value_and_grad(functools.partial(scored, m), has_aux=True)(p) for m in (micro, 1)])(params)
        for key in ("logp_bt", "entropy_bt", "value_bt"):
            np.testing.assert_allclose(split[key], whole[key], rtol=1e-10, atol=1e-12)
        jax.tree.map(lambda a, b_: np.testing.assert_allclose(a, b_, rtol=1e-9, atol=1e-12), g_split, g_whole)
        program = str(jax.make_jaxpr(lambda p: steps.score(graphdef, p, b, micro_batches=micro))(params))
        assert "remat" in program or "checkpoint" in program  # each micro-batch is rematerialised


def test_a_grpo_update_with_micro_batches_equals_the_whole_minibatch():
    """``model.micro_batches`` = 2 through prepare (reference, π_old) and two minibatch updates:
    the loss and the parameters after one iteration equal the unsplit run's to 1e-6. Adam's
    first step moves each weight by ≈ lr·sign(g), which float32 rounding of a near-zero gradient
    element can flip on one CPU and not another, so the run is in float64."""
    b = batch(b=8, group_size=2)
    algo = algorithms.grpo(learning_rate=1e-2, kl_coef=0.1, num_minibatches=2)
    results = []
    with jax.enable_x64(True):
        for micro in (2, 1):
            config = dataclasses.replace(CFG, dtype=jnp.float64, param_dtype=jnp.float64, micro_batches=micro)
            graphdef, params = tiny_params(config, seed=0)
            state = steps.init_state(params, algo, jax.random.key(0), ref_params=params, example=b)
            step = jax.jit(functools.partial(steps.train_on_batch, algorithm=algo, graphdef=graphdef))
            state, metrics = step(state, b)
            results.append((state.params, metrics["loss"]))
    (p_split, loss_split), (p_whole, loss_whole) = results
    np.testing.assert_allclose(loss_split, loss_whole, rtol=1e-6, atol=1e-9)
    jax.tree.map(lambda a, b_: np.testing.assert_allclose(a, b_, rtol=1e-6, atol=1e-9), p_split, p_whole)


def test_micro_batches_that_split_a_group_are_refused():
    graphdef, params = model(dataclasses.replace(CFG, micro_batches=3))
    with pytest.raises(ValueError, match=r"^model\.micro_batches=3 does not split the 4 groups of 2 rows"):
        steps.score(graphdef, params, batch(b=8, group_size=2))
    with pytest.raises(ValueError, match="micro_batches must be an int >= 1"):
        dataclasses.replace(CFG, micro_batches=0)


# ----------------------------------------------------------------------------- attention kernels


def test_dot_product_attention_equals_the_einsum_path():
    """``attention_impl="dot_product"`` (jax.nn.dot_product_attention; XLA on a CPU) computes the
    einsum path's logits and gradients — GQA (4 query heads, 2 KV heads), a left-padded row whose
    pads see no key, q/k/v biases and a query_pre_attn_scalar. On a float64 model, so the only
    difference is the fused path's float32 attention scores (jax's XLA composition accumulates
    q·k in float32): relative 2⁻²⁴ per score, ≈ 1e-7 on the log-probs here, bounded by 1e-6."""
    with jax.enable_x64(True):
        base = dataclasses.replace(CFG, dtype=jnp.float64, param_dtype=jnp.float64, qkv_bias=True,
                                   query_pre_attn_scalar=6.0)
        b = batch(group_size=1)

        def loss_and_scores(config):
            graphdef, params = tiny_params(config, seed=0)

            def loss(p):
                out = steps.score(graphdef, p, b, values=True)
                return jnp.sum(out["logp_bt"]) + jnp.sum(out["value_bt"]), out

            return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)

        (_, fused), g_fused = loss_and_scores(dataclasses.replace(base, attention_impl="dot_product"))
        (_, plain), g_plain = loss_and_scores(base)
        for key in ("logp_bt", "value_bt"):
            np.testing.assert_allclose(fused[key], plain[key], rtol=1e-6, atol=1e-6)
        jax.tree.map(lambda a, b_: np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-6), g_fused, g_plain)


def test_bad_attention_impl_raises():
    with pytest.raises(ValueError, match="attention_impl must be 'einsum' or 'dot_product'"):
        dataclasses.replace(CFG, attention_impl="flash")
    with pytest.raises(ValueError, match="cannot soft-cap"):
        dataclasses.replace(CFG, attention_impl="dot_product", attn_softcap=50.0)

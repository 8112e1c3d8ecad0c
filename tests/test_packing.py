"""Sequence packing (``model.pack_length`` / ``pack_rows``): the next-fit layout by hand, the packed
inputs by hand, and the packed scoring forward equal to the unpacked one in value and gradient
(float64) — with left pads, responses of different lengths, a tool observation inside a response,
groups, micro-batches, the unpacked fallback, and a GRPO iteration."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms
from polrl.core import Batch
from polrl.models import TransformerConfig
from polrl.train import packing, steps
from tiny_models import tiny_params

V = 40
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=32,
                        max_len=24, value_head=True, dtype=jnp.float64, param_dtype=jnp.float64)


def test_next_fit_by_hand():
    # L = 8: [3] [3+4=7] | [2] [2+5=7]: two rows.
    row, start, fits = packing.next_fit(jnp.array([3, 4, 2, 5]), length=8, rows=3)
    np.testing.assert_array_equal(row, [0, 0, 1, 1])
    np.testing.assert_array_equal(start, [0, 3, 0, 2])
    assert bool(fits)
    assert not bool(packing.next_fit(jnp.array([3, 4, 2, 5]), length=8, rows=1)[2])  # needs 2 rows
    assert not bool(packing.next_fit(jnp.array([3, 9]), length=8, rows=4)[2])  # one longer than L


def test_pack_by_hand():
    # P = 4, T = 2. Row 0: prompt _ _ 11 12, response 13 14 (both masked in): 4 real tokens.
    # Row 1: prompt _ 21 22 23, response 24 (masked in) 25 (past the last masked-in token): 4 real tokens.
    prompt_valid = jnp.array([[0, 0, 1, 1], [0, 1, 1, 1]], bool)
    real_len, response_len = packing.sequence_lengths(prompt_valid, jnp.array([[1, 1], [1, 0]], jnp.float32))
    np.testing.assert_array_equal(real_len, [4, 4])
    np.testing.assert_array_equal(response_len, [2, 1])
    tokens = jnp.array([[0, 0, 11, 12, 13, 14], [0, 21, 22, 23, 24, 25]])
    valid = jnp.concatenate([prompt_valid, jnp.ones((2, 2), bool)], axis=1)
    (tok, pos, seg), (row, col, real), fits = packing.pack(tokens, valid, jnp.array([4, 4]), length=6, rows=2)
    assert bool(fits)
    np.testing.assert_array_equal(tok, [[11, 12, 13, 14, 0, 0], [21, 22, 23, 24, 0, 0]])
    np.testing.assert_array_equal(pos, [[0, 1, 2, 3, 0, 0], [0, 1, 2, 3, 0, 0]])
    np.testing.assert_array_equal(seg, [[1, 1, 1, 1, 0, 0], [2, 2, 2, 2, 0, 0]])
    np.testing.assert_array_equal(real, [[0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0]])
    np.testing.assert_array_equal(col[1, 1:5], [0, 1, 2, 3])
    # Both fit one row of 8: the second sequence starts at column 4 with positions from 0.
    (tok, pos, seg), _, fits = packing.pack(tokens, valid, jnp.array([4, 4]), length=8, rows=1)
    np.testing.assert_array_equal(tok, [[11, 12, 13, 14, 21, 22, 23, 24]])
    np.testing.assert_array_equal(pos, [[0, 1, 2, 3, 0, 1, 2, 3]])
    np.testing.assert_array_equal(seg, [[1, 1, 1, 1, 2, 2, 2, 2]])


def ragged_batch(b=8, p=5, t=7, group_size=1, seed=0) -> Batch:
    """Left-padded prompts of 3–5 tokens, responses masked in for 1–7 tokens, one response with
    a masked-out observation inside it (context, not trained on)."""
    rng = np.random.default_rng(seed)
    prompt = np.repeat(rng.integers(1, V, (b // group_size, p)), group_size, axis=0)
    pads = np.repeat(rng.integers(0, 3, b // group_size), group_size)
    valid = np.arange(p)[None] >= pads[:, None]
    lengths = rng.integers(1, t + 1, b)
    mask = (np.arange(t)[None] < lengths[:, None]).astype(np.float32)
    mask[0, 1:3] = 0.0
    mask[0, 3:] = 1.0  # row 0: tokens 1–2 are an observation inside the response
    return Batch(prompt_bp=np.where(valid, prompt, 0).astype(np.int32), prompt_valid_bp=valid,
                 response_bt=rng.integers(1, V, (b, t)).astype(np.int32), mask_bt=mask,
                 reward_b=rng.normal(size=b).astype(np.float32), group_b=np.arange(b, dtype=np.int32) // group_size,
                 group_size=group_size)


@pytest.mark.parametrize("group_size, micro, rows", [(1, 1, 4), (2, 2, 2), (1, 1, 1)])
def test_packed_score_equals_unpacked_in_value_and_gradient(group_size, micro, rows):
    """At every masked-in position the packed forward gives the unpacked log-probs, entropies and
    values, and the gradient of a weighted masked sum; rows = 1 cannot hold the batch, so the
    unpacked forward runs (``lax.cond``) with the same values."""
    with jax.enable_x64(True):
        b = ragged_batch(group_size=group_size)
        packed_cfg = dataclasses.replace(CFG, pack_length=24, pack_rows=rows, micro_batches=micro)
        graphdef_p, params = tiny_params(packed_cfg, seed=0)
        graphdef_u, _ = tiny_params(CFG, seed=0)
        weight = jnp.asarray(np.random.default_rng(2).normal(size=b.mask_bt.shape)) * b.mask_bt

        def loss(graphdef, p):
            out = steps.score(graphdef, p, b, temperature=0.7, values=True, pack=True)
            return jnp.sum(weight * (out["logp_bt"] + 0.1 * out["value_bt"] + 0.01 * out["entropy_bt"])), out

        (_, packed), g_packed = jax.jit(jax.value_and_grad(functools.partial(loss, graphdef_p), has_aux=True))(params)
        (_, whole), g_whole = jax.jit(jax.value_and_grad(functools.partial(loss, graphdef_u), has_aux=True))(params)
        assert bool(steps.fits_packed(packed_cfg, b)) == (rows > 1)
        keep = np.asarray(b.mask_bt) > 0
        for key in ("logp_bt", "entropy_bt", "value_bt"):
            np.testing.assert_allclose(np.asarray(packed[key])[keep], np.asarray(whole[key])[keep], rtol=1e-10, atol=1e-12)
        jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12), g_packed, g_whole)


def test_packing_shrinks_the_forward():
    """The packed program's forward runs on [R, L] = [3, 32] positions instead of [8, 12]."""
    b = ragged_batch()
    graphdef, params = tiny_params(dataclasses.replace(CFG, dtype=jnp.float32, param_dtype=jnp.float32, max_len=32,
                                                       pack_length=32, pack_rows=3), seed=0)
    program = str(jax.make_jaxpr(lambda p: steps.score(graphdef, p, b, pack=True))(params))
    assert "f32[3,32,16]" in program  # hidden states of the packed rows (d_model 16)
    unpacked = str(jax.make_jaxpr(lambda p: steps.score(graphdef, p, b))(params))
    assert "f32[3,32,16]" not in unpacked and "f32[8,12,16]" in unpacked


@pytest.mark.parametrize("length", [24, 12])
def test_a_grpo_update_with_packing_equals_the_unpacked_one(length):
    """Reference, π_old and two minibatch updates with packing: the loss and parameters after one
    iteration equal the unpacked run's (float64, as for micro-batches: Adam's first step
    amplifies rounding of near-zero gradients). In 2 rows of 24 every minibatch fits (pack/fits = 1);
    in 2 rows of 12 none does, and the update takes the unpacked gradient in micro-batches of at
    most 2 rows (pack/fits = 0)."""
    b = ragged_batch(group_size=2)
    algo = algorithms.grpo(learning_rate=1e-2, kl_coef=0.1, num_minibatches=2)
    results = []
    with jax.enable_x64(True):
        for pack in ((length, 2), (0, 0)):
            config = dataclasses.replace(CFG, pack_length=pack[0], pack_rows=pack[1])
            graphdef, params = tiny_params(config, seed=0)
            state = steps.init_state(params, algo, jax.random.key(0), ref_params=params, example=b)
            state, metrics = jax.jit(functools.partial(steps.train_on_batch, algorithm=algo, graphdef=graphdef))(state, b)
            results.append((state.params, metrics))
    (p_packed, m_packed), (p_whole, m_whole) = results
    assert float(m_packed["pack/fits"]) == (1.0 if length == 24 else 0.0) and "pack/fits" not in m_whole
    np.testing.assert_allclose(m_packed["loss"], m_whole["loss"], rtol=1e-6, atol=1e-9)
    jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-9), p_packed, p_whole)


def test_fallback_micro_batches_hold_at_most_pack_rows_rows():
    config = dataclasses.replace(CFG, pack_length=24, pack_rows=3, micro_batches=2)
    assert steps.fallback_micro_batches(config, rows=16, group_size=2) == 2 * 4  # 8 rows → 4 micro-batches of 2
    assert steps.fallback_micro_batches(dataclasses.replace(config, pack_rows=8), rows=16, group_size=2) == 2
    with pytest.raises(ValueError, match=r"^model\.pack_rows=3 is smaller than a group of 4 rows"):
        steps.fallback_micro_batches(config, rows=16, group_size=4)


def test_bad_packing_options_are_refused():
    with pytest.raises(ValueError, match="pack_length and pack_rows go together"):
        dataclasses.replace(CFG, pack_length=16)
    with pytest.raises(ValueError, match=r"TransformerConfig.pack_rows must be an int >= 0"):
        dataclasses.replace(CFG, pack_length=16, pack_rows=-1)

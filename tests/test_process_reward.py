"""The process reward model (``process_reward_model`` noun, ``process_reward_loss``) and its
Monte-Carlo step labels (``collectors.step_labels``): hand-computed losses, the loss's logits are
the logits of ``polrl.search.scoring.token_scores`` at the step ends, the collector's labels equal
a brute-force recomputation of every prefix's completions, jit = no jit. Float64 tiny models."""
import functools
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl import algorithms, collectors, sharding
from polrl.algorithms.process_reward import process_reward_loss, step_logits
from polrl.collectors.step_labels import STEP_END, STEP_LABEL
from polrl.core import Batch, Collector, PolicyState
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig, engine, sample
from polrl.search.scoring import step_ends, token_scores
from polrl.train import steps
from tiny_models import tiny_params

V, PAD, SEP, EOS = 8, 0, 5, 7
P, N, G, M, K = 3, 10, 2, 3, 3
KEY = 1  # with the seed-4 model: 9 labelled steps, 7 of them by completions, mixed labels and rewards
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=32,
                        value_head=True, dtype=jnp.float64, param_dtype=jnp.float64)
SAMPLING = SamplingConfig(max_new_tokens=N, eos_id=EOS, pad_id=PAD)


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def toy_reward(response_bt, mask_bt, answer_ba, answer_valid_ba):
    """1 iff the row ended with EOS and holds an even number of 3s: mixed outcomes on a random model."""
    del answer_ba, answer_valid_ba
    real = mask_bt > 0
    ended = (real & (response_bt == EOS)).any(axis=1)
    threes = (real & (response_bt == 3)).sum(axis=1)
    return (ended & (threes % 2 == 0)).astype(jnp.float32)


def _context():
    tokenizer = types.SimpleNamespace(encode=lambda text: [SEP] if text == "," else [1, 2])
    task = types.SimpleNamespace(name="toy", tokenizer=tokenizer, device_reward=toy_reward, step_separator=",",
                                 max_prompt_len=P)
    graphdef, params = tiny_params(CFG, seed=4)
    ctx = collectors.Context(graphdef=graphdef, task=task, sampling=SAMPLING, group_size=G,
                             layout=sharding.layout_from_config(None))
    return ctx, params


def _data():
    rng = np.random.default_rng(1)
    prompt = rng.integers(1, V - 1, (2, P))
    prompt[1, 0] = PAD  # a left-padded prompt
    return {"prompt_bp": jnp.asarray(prompt, jnp.int32), "prompt_valid_bp": jnp.asarray(prompt != PAD),
            "answer_ba": jnp.zeros((2, 2), jnp.int32), "answer_valid_ba": jnp.ones((2, 2), bool)}


@functools.cache
def _collect():
    """(ctx, completer params, the collected batch, metrics) with rng ``key(KEY)``, computed once."""
    with jax.enable_x64(True):
        ctx, params = _context()
        collector = collectors.step_labels(ctx, continuations=M, max_steps=K)
        state = PolicyState(step=jnp.zeros((), jnp.int32), rng=None, params=None, opt_state=None, ref_params=params)
        batch, _, metrics = jax.jit(collector.collect)((), state, _data(), jax.random.key(KEY))
    return ctx, params, batch, metrics


# ----------------------------------------------------------------------------- the loss


def _scored(value, end, label):
    b, t = np.shape(value)
    return Batch(prompt_bp=jnp.zeros((b, 1), jnp.int32), prompt_valid_bp=jnp.ones((b, 1), bool),
                 response_bt=jnp.zeros((b, t), jnp.int32), mask_bt=jnp.ones((b, t), jnp.float64),
                 value_bt=jnp.asarray(value, jnp.float64),
                 aux={STEP_END: jnp.asarray(end, jnp.int32), STEP_LABEL: jnp.asarray(label, jnp.float64)})


def _bce(z, y):
    return -(y * math.log(1 / (1 + math.exp(-z))) + (1 - y) * math.log(1 / (1 + math.exp(z))))


def test_loss_and_metrics_equal_hand_values():
    value = [[0.3, -1.2, 2.0, 0.5, 9.0], [-0.4, 0.8, -2.5, 0.0, 1.5]]
    end = [[0, 2, -1], [3, 1, 0]]                 # z = value[b, e + 1]; row 0 has two steps
    label = [[0.25, 1.0, 0.0], [0.0, 0.5, 1.0]]
    z = [-1.2, 0.5, 1.5, -2.5, 0.8]
    y = [0.25, 1.0, 0.0, 0.5, 1.0]
    out, _ = process_reward_loss().apply(_scored(value, end, label), ())
    np.testing.assert_allclose(float(out.losses["process_reward"]), sum(map(_bce, z, y)) / 5, rtol=1e-12)
    p = [1 / (1 + math.exp(-x)) for x in z]
    np.testing.assert_allclose(float(out.metrics["prm_brier"]), sum((a - b) ** 2 for a, b in zip(p, y)) / 5, rtol=1e-12)
    # p > ½ vs y > ½: (F, F) (T, T) (T, F) (F, F) (T, T) → 4 of 5 agree (a label of ½ counts as "wrong")
    assert float(out.metrics["prm_step_accuracy"]) == pytest.approx(0.8) and float(out.metrics["prm_steps"]) == 5.0


def test_loss_gradient_is_sigmoid_minus_label_at_step_ends_only():
    value = np.zeros((1, 4))
    batch = _scored(value, [[0, 2]], [[1.0, 0.25]])
    grad = jax.grad(lambda v: process_reward_loss().apply(batch.replace(value_bt=v), ())[0].losses["process_reward"])(
        batch.value_bt)
    np.testing.assert_allclose(np.asarray(grad), [[0.0, (0.5 - 1.0) / 2, 0.0, (0.5 - 0.25) / 2]], rtol=1e-12)


def test_jit_equals_no_jit():
    rng = np.random.default_rng(0)
    batch = _scored(rng.normal(size=(3, 6)), [[0, 3, 4], [1, -1, -1], [5, 2, -1]], rng.uniform(size=(3, 3)))
    loss = lambda b: process_reward_loss().apply(b, ())[0]
    eager, jitted = loss(batch), jax.jit(loss)(batch)
    for name in ("process_reward",):
        np.testing.assert_allclose(float(jitted.losses[name]), float(eager.losses[name]), rtol=1e-12)
    for name in ("prm_step_accuracy", "prm_brier", "prm_steps"):
        np.testing.assert_allclose(float(jitted.metrics[name]), float(eager.metrics[name]), rtol=1e-12)


def test_missing_labels_name_the_collector():
    batch = _scored(np.zeros((1, 3)), [[0]], [[1.0]]).replace(aux={})
    with pytest.raises(ValueError, match=r"step_end_bk.*step_labels collector"):
        process_reward_loss().apply(batch, ())


def test_noun():
    alg = algorithms.process_reward_model(learning_rate=1e-3)
    assert alg.needs == {"values"} and alg.collector is not None
    with pytest.raises(TypeError, match=r"process_reward_model\(\) got unexpected keyword argument\(s\) \['beta'\]"):
        algorithms.process_reward_model(beta=0.1)


# ----------------------------------------------------------------------------- the collector


def test_rows_are_the_completers_samples_and_steps_are_step_ends():
    """The rows equal ``sample`` with the row key; the labelled step ends are the first K of
    ``scoring.step_ends``; labels are means of M rewards (multiples of 1/M) in [0, 1]."""
    ctx, params, batch, metrics = _collect()
    row_key, _ = jax.random.split(jax.random.key(KEY))
    data = _data()
    ref = jax.jit(sample, static_argnums=(0, 5, 6))(ctx.graphdef, params, data["prompt_bp"], data["prompt_valid_bp"], row_key, SAMPLING, G)
    np.testing.assert_array_equal(np.asarray(batch.response_bt), np.asarray(ref.response_bt))
    np.testing.assert_array_equal(np.asarray(batch.mask_bt), np.asarray(ref.mask_bt))
    ends = np.asarray(step_ends(batch.response_bt, batch.mask_bt, SEP))
    end_bk = np.asarray(batch.aux[STEP_END])
    for b in range(batch.batch_size):
        first = np.flatnonzero(ends[b])[:K]
        np.testing.assert_array_equal(end_bk[b], np.pad(first, (0, K - len(first)), constant_values=-1))
    label = np.asarray(batch.aux[STEP_LABEL])
    np.testing.assert_allclose(label * M, np.round(label * M), atol=1e-6)
    assert (end_bk >= 0).sum() >= 6 and 0 < float(metrics["prm/mixed_label_fraction"])  # the toy is not degenerate
    np.testing.assert_allclose(float(metrics["prm/steps_per_row"]), (end_bk >= 0).sum() / batch.batch_size)


def _brute_force_labels(graphdef, params, prompt_rp, response_rn, end_r, uniform_nrm):
    """Mean reward of M completions of each prefix prompt_r ++ response_r[:end_r + 1], the prefix
    prefilled anew (left-padded to P + N columns, no fork) and completion m drawn with
    ``uniform_nrm[:, r, m]``."""
    model = nnx.merge(graphdef, params)
    r = prompt_rp.shape[0]
    keep_rn = jnp.arange(N)[None, :] <= end_r[:, None]
    tokens = jnp.concatenate([prompt_rp, jnp.where(keep_rn, response_rn, PAD)], axis=1)
    valid = jnp.concatenate([prompt_rp != PAD, keep_rn], axis=1)
    order = jnp.argsort(valid, axis=1, stable=True)  # left-pad: the valid tokens last, in order
    tokens, valid = jnp.take_along_axis(tokens, order, axis=1), jnp.take_along_axis(valid, order, axis=1)
    slots = engine.repeat(engine.extend(model, engine.init_slots(model, r, 2 * (P + N)), tokens, valid), M)
    gen, _ = engine.generate(model, slots, None, SAMPLING, uniform_ns=uniform_nrm.reshape(N, r * M),
                             max_new_s=jnp.repeat(N - end_r - 1, M), commit_last=False)
    prefix_len = jnp.repeat(end_r + 1, M)
    cols = jnp.arange(N)[None, :]
    shifted = jnp.take_along_axis(gen.tokens_sn, jnp.clip(cols - prefix_len[:, None], 0, N - 1), axis=1)
    full = jnp.where(cols < prefix_len[:, None], jnp.repeat(response_rn, M, axis=0), shifted)
    full_mask = (cols < (prefix_len + gen.length_s)[:, None]).astype(jnp.float64)
    return toy_reward(full, full_mask, None, None).reshape(r, M).mean(axis=1)


def test_labels_equal_brute_force_completions():
    """Every completion-estimated label recomputed from scratch: the prefix prompt ++ y_{≤e_j}
    prefilled anew (no fork), its M completions drawn by ``engine.generate`` with the same
    uniforms (slots b·M … b·M + M − 1 of step j's draw), each verified; the label of a row's last
    step is its own reward."""
    ctx, params, batch, _ = _collect()
    _, cont_key = jax.random.split(jax.random.key(KEY))
    uniform_knbm = jax.vmap(lambda k: jax.random.uniform(k, (N, batch.batch_size * M)))(jax.random.split(cont_key, K))
    uniform_knbm = uniform_knbm.reshape(K, N, batch.batch_size, M)
    end_bk, label = np.asarray(batch.aux[STEP_END]), np.asarray(batch.aux[STEP_LABEL])
    last_bk = end_bk == np.asarray(batch.mask_bt).sum(axis=1, keepdims=True) - 1
    np.testing.assert_array_equal(label[last_bk], np.broadcast_to(np.asarray(batch.reward_b)[:, None], label.shape)[last_bk])
    rows, ks = np.nonzero((end_bk >= 0) & ~last_bk)
    assert len(rows) >= 5
    expected = jax.jit(_brute_force_labels, static_argnums=0)(
        ctx.graphdef, params, batch.prompt_bp[rows], batch.response_bt[rows], jnp.asarray(end_bk[rows, ks]),
        uniform_knbm[ks, :, rows].transpose(1, 0, 2))
    np.testing.assert_allclose(label[rows, ks], np.asarray(expected), rtol=1e-6)
    assert 0 < label[rows, ks].min() < 1 or 0 < label[rows, ks].max() < 1  # the check sees a mixed label


def test_loss_logits_are_token_score_logits_at_step_ends():
    """The noun's wrapper widens the rows; the trainer's scoring forward (shared-prompt path) read
    by ``step_logits`` equals logit(``token_scores``) at each step end — the quantity search reads."""
    ctx, params, batch, _ = _collect()
    wide = algorithms.process_reward_model().collector(
        Collector(init=lambda p: (), collect=lambda c, s, d, r: (batch, c, {}), example=None), ctx
    ).collect((), None, {}, None)[0]
    assert wide.response_bt.shape[1] == N + 1 and wide.group_size == G
    value_bt = steps.score(ctx.graphdef, params, wide, values=True)["value_bt"]
    z = np.asarray(step_logits(wide.replace(value_bt=value_bt)))
    p = np.asarray(token_scores(ctx.graphdef, params, batch.prompt_bp, batch.prompt_valid_bp, batch.response_bt))
    end = np.asarray(batch.aux[STEP_END])
    rows, ks = np.nonzero(end >= 0)
    expected = np.log(p[rows, end[rows, ks]]) - np.log1p(-p[rows, end[rows, ks]])
    np.testing.assert_allclose(z[rows, ks], expected, rtol=1e-9, atol=1e-10)
    assert len(rows) >= 6 and np.all(z[end < 0] == 0)


def test_example_matches_collect():
    ctx, params, batch, _ = _collect()
    example = collectors.step_labels(ctx, continuations=M, max_steps=K).example(2)
    assert jax.tree.structure(batch) == jax.tree.structure(example)
    assert [(x.shape, x.dtype) for x in jax.tree.leaves(batch)] == [(x.shape, x.dtype) for x in jax.tree.leaves(example)]


def test_bad_options_name_the_field():
    ctx, _ = _context()
    with pytest.raises(ValueError, match=r"step_labels: continuations=0 must be an int >= 1"):
        collectors.step_labels(ctx, continuations=0)
    no_steps = ctx.task.__class__(**{**vars(ctx.task), "step_separator": None})
    with pytest.raises(ValueError, match=r"step_separator=None"):
        collectors.step_labels(collectors.Context(ctx.graphdef, no_steps, SAMPLING, G, ctx.layout))

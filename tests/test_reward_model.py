"""The Bradley–Terry reward model (``reward_model`` noun, ``bradley_terry_loss``) and where it
reads r(x, y) (``collectors.score_position``): hand-computed losses, the training-time score
equals the direct forward's, and a few updates on fixed pairs rank them. Float64 tiny models."""
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl import algorithms, collectors
from polrl.algorithms.reward_model import bradley_terry_loss
from polrl.collectors.score_position import score_index, sequence_scores, widen_rows
from polrl.core import Batch, Collector
from polrl.models import TransformerConfig
from polrl.train import steps
from tiny_models import tiny_params

V, PAD, EOS, P, T = 8, 0, 7, 3, 4
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16,
                        value_head=True, dtype=jnp.float64, param_dtype=jnp.float64)


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def _sp(x):  # −log σ(x)
    return math.log1p(math.exp(-x))


def _scored(value, index, reward, group):
    b = len(reward)
    return Batch(prompt_bp=jnp.zeros((b, 1), jnp.int32), prompt_valid_bp=jnp.ones((b, 1), bool),
                 response_bt=jnp.zeros((b, T), jnp.int32), mask_bt=jnp.ones((b, T), jnp.float64),
                 reward_b=jnp.asarray(reward, jnp.float64), group_b=jnp.asarray(group, jnp.int32),
                 value_bt=jnp.asarray(value, jnp.float64), aux={"score_index_b": jnp.asarray(index, jnp.int32)},
                 group_size=2)


def test_loss_and_metrics_equal_hand_values():
    value = np.arange(6 * (T + 1), dtype=np.float64).reshape(6, T + 1) / 10 - 1.0
    index = [4, 1, 2, 0, 3, 3]
    r = [value[i, j] for i, j in enumerate(index)]  # -0.6, -0.4, 0.2, 0.5, 1.3, 1.8
    # pair 0: row 0 chosen; pair 1: row 3 chosen (rewards 0 / 2); pair 2: a tie, left out
    batch = _scored(value, index, [1.0, 0.0, 0.0, 2.0, 0.5, 0.5], [0, 0, 1, 1, 2, 2])
    out, _ = bradley_terry_loss().apply(batch, ())
    d = [r[0] - r[1], r[3] - r[2]]
    np.testing.assert_allclose(float(out.losses["bradley_terry"]), (_sp(d[0]) + _sp(d[1])) / 2, rtol=1e-12)
    np.testing.assert_allclose(float(out.metrics["rm_margin"]), (d[0] + d[1]) / 2, rtol=1e-12)
    np.testing.assert_allclose(float(out.metrics["rm_reward_mean"]), sum(r[:4]) / 4, rtol=1e-12)
    assert float(out.metrics["rm_accuracy"]) == 0.5 and float(out.metrics["rm_pairs"]) == 2.0  # pair 0 is misranked


def test_a_wrongly_ranked_pair_counts_against_accuracy():
    batch = _scored([[0.0, 2.0, 0, 0, 0], [0.0, 3.0, 0, 0, 0]], [1, 1], [1.0, 0.0], [0, 0])
    out, _ = bradley_terry_loss().apply(batch, ())
    np.testing.assert_allclose(float(out.losses["bradley_terry"]), _sp(-1.0), rtol=1e-12)
    assert float(out.metrics["rm_accuracy"]) == 0.0


def test_loss_gradient_raises_the_chosen_and_lowers_the_rejected():
    batch = _scored(np.zeros((2, T + 1)), [2, 2], [1.0, 0.0], [0, 0])
    grad = jax.grad(lambda v: bradley_terry_loss().apply(batch.replace(value_bt=v), ())[0].losses["bradley_terry"])(
        batch.value_bt)
    expected = np.zeros((2, T + 1))
    expected[0, 2], expected[1, 2] = -0.5, 0.5  # ∂/∂r_w = −σ(−Δ) = −½ at Δ = 0
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-12)


def test_missing_score_index_names_the_wrapper():
    batch = _scored(np.zeros((2, T + 1)), [1, 1], [1.0, 0.0], [0, 0])
    with pytest.raises(ValueError, match=r"aux field\(s\) \['score_index_b'\].*with_score_position"):
        bradley_terry_loss().apply(batch.replace(aux={}), ())


def test_noun():
    alg = algorithms.reward_model(learning_rate=1e-3)
    assert alg.needs == {"values"} and alg.collector is not None
    with pytest.raises(TypeError, match=r"reward_model\(\) got unexpected keyword argument\(s\) \['beta'\]"):
        algorithms.reward_model(beta=0.1)


# ----------------------------------------------------------------------------- the scored position


def _rows():
    """Two pairs (rows sharing a prompt): responses of 1, 4 (= T, no spare column), 2 and 3 tokens."""
    prompt = np.array([[PAD, 1, 2], [PAD, 1, 2], [3, 4, 5], [3, 4, 5]])
    response = np.array([[EOS, PAD, PAD, PAD], [4, 5, 6, EOS], [6, EOS, PAD, PAD], [1, 2, EOS, PAD]])
    mask = (np.cumsum(response == EOS, axis=1) - (response == EOS) == 0).astype(np.float64)
    return Batch(prompt_bp=jnp.asarray(prompt), prompt_valid_bp=jnp.asarray(prompt != PAD),
                 response_bt=jnp.asarray(response), mask_bt=jnp.asarray(mask),
                 reward_b=jnp.asarray([1.0, 0.0, 0.0, 1.0]), group_b=jnp.asarray([0, 0, 1, 1], jnp.int32), group_size=2)


def _direct(graphdef, params, batch):
    """r(x, y) row by row: the value head at the last token of the unpadded prompt ++ response."""
    model = nnx.merge(graphdef, params)
    out = []
    for b in range(batch.batch_size):
        prompt = [int(x) for x, ok in zip(batch.prompt_bp[b], batch.prompt_valid_bp[b]) if ok]
        response = [int(x) for x, m in zip(batch.response_bt[b], batch.mask_bt[b]) if m]
        tokens = jnp.asarray([prompt + response])
        hidden, _ = model.forward(tokens, jnp.arange(tokens.shape[1])[None], jnp.ones(tokens.shape, bool))
        out.append(float(model.value(hidden[0, -1])))
    return np.asarray(out)


def test_score_index_is_one_past_the_last_masked_column():
    np.testing.assert_array_equal(score_index(jnp.asarray([[1.0, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]])),
                                  [2, 4, 0, 3])


def test_training_score_equals_the_direct_forward():
    """The trainer's scoring forward on the widened rows (shared-prompt path, groups of two),
    read at score_index, gives r(x, y) of the unpadded sequences; so does sequence_scores."""
    graphdef, params = tiny_params(CFG)
    batch = _rows()
    direct = _direct(graphdef, params, batch)
    wide = widen_rows(batch, PAD)
    value_bt = steps.score(graphdef, params, wide, values=True)["value_bt"]
    trained = jnp.take_along_axis(value_bt, wide.aux["score_index_b"][:, None], axis=1)[:, 0]
    np.testing.assert_allclose(np.asarray(trained), direct, rtol=1e-10, atol=1e-12)
    # sequence_scores returns a Batch reward (float32): one rounding of the float64 value
    np.testing.assert_allclose(np.asarray(sequence_scores(graphdef, params, batch)), direct, rtol=2**-23)
    assert wide.response_bt.shape == (4, T + 1) and float(wide.mask_bt[:, T].sum()) == 0.0


def test_widened_example_matches_widened_rows():
    rows = _rows()
    fixed = Collector(init=lambda prompts: (), collect=lambda c, s, d, r: (rows, c, {}),
                      example=lambda prompts: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), rows))
    ctx = types.SimpleNamespace(pad_id=PAD)  # all a device wrapper reads of the run's Context
    wrapped = collectors.with_score_position()(fixed, ctx)
    batch, _, _ = wrapped.collect((), None, {}, None)
    assert jax.tree.structure(batch) == jax.tree.structure(wrapped.example(2))
    assert [(x.shape, x.dtype) for x in jax.tree.leaves(batch)] == [(x.shape, x.dtype) for x in jax.tree.leaves(wrapped.example(2))]


def test_updates_on_fixed_pairs_rank_them():
    """The noun through the trainer's prepare and update (values need, widened rows): the loss
    falls and every training pair ends up ranked right."""
    graphdef, params = tiny_params(CFG)
    alg = algorithms.reward_model(learning_rate=3e-2)
    batch = widen_rows(_rows(), PAD)
    state = steps.init_state(params, alg, jax.random.key(0))
    train = jax.jit(lambda s, b: steps.train_on_batch(s, b, algorithm=alg, graphdef=graphdef))
    losses = []
    for _ in range(30):
        state, metrics = train(state, batch)
        losses.append(float(metrics["bradley_terry"]))
    assert losses[-1] < 0.1 * losses[0] and float(metrics["rm_accuracy"]) == 1.0
    r = np.asarray(sequence_scores(graphdef, state.params, _rows()))
    assert r[0] > r[1] and r[3] > r[2]

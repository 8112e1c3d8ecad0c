"""DRAGON (arXiv 2504.15217): the set distance and leave-one-out credit of
``collectors.with_distributional_reward`` against numpy (float64), its invariances, the wrapper on
a fixed inner collector, the ``dragon`` noun's set-contrast loss on hand values, jit == no-jit and
the configuration errors."""
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms, collectors
from polrl.algorithms.dragon import set_contrast_loss
from polrl.collectors.distributional_reward import set_distance_and_credit, token_sq_distances
from polrl.core import Batch, Collector


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


# Three samples and one exemplar, width 4 (0 = padding): y1 = the exemplar, y2 one token off,
# y3 one token off and one shorter.
Y_TOK = np.array([[3, 4, 7, 0], [3, 5, 7, 0], [3, 7, 0, 0]])
Y_VALID = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0]], bool)
E_TOK = np.array([[3, 4, 7, 0]])
E_VALID = np.array([[1, 1, 1, 0]], bool)
N_TOK = np.array([[3, 7, 0, 0], [5, 7, 0, 0]])
N_VALID = np.array([[1, 1, 0, 0], [1, 1, 0, 0]], bool)


def np_sq(a, va, b, vb):
    """‖φ(a) − φ(b)‖² of explicit one-hot embeddings (vocabulary 8)."""
    onehot = lambda t, v: (np.eye(8)[t] * v[..., None]).reshape(len(t), -1)
    fa, fb = onehot(a, va), onehot(b, vb)
    return ((fa[:, None] - fb[None]) ** 2).sum(-1)


def np_mmd2(y, vy, e, ve, sigma):
    k = lambda a, va, b, vb: np.exp(-np_sq(a, va, b, vb) / (2 * sigma**2))
    return k(y, vy, y, vy).mean() - 2 * k(y, vy, e, ve).mean() + k(e, ve, e, ve).mean()


def np_distance(y, vy, neg=True, sigma=1.0, w=1.0):
    d = np_mmd2(y, vy, E_TOK, E_VALID, sigma)
    return d - w * np_mmd2(y, vy, N_TOK, N_VALID, sigma) if neg else d


def np_credit(y, vy, **kw):
    full = np_distance(y, vy, **kw)
    keep = lambda i: np.arange(len(y)) != i
    return np.array([np_distance(y[keep(i)], vy[keep(i)], **kw) - full for i in range(len(y))])


def test_token_distances_are_one_hot_distances():
    d = np.asarray(token_sq_distances(Y_TOK, Y_VALID, E_TOK, E_VALID))
    np.testing.assert_array_equal(d[:, 0], [0.0, 2.0, 3.0])  # by hand: same; one token differs; + one length
    np.testing.assert_array_equal(np.asarray(token_sq_distances(Y_TOK, Y_VALID, Y_TOK, Y_VALID)),
                                  np_sq(Y_TOK, Y_VALID, Y_TOK, Y_VALID))


def test_set_distance_and_credit_match_numpy():
    d, d_pos, d_neg, credit = set_distance_and_credit(Y_TOK, Y_VALID, (E_TOK, E_VALID), bandwidth=1.0)
    # by hand (σ = 1, k = e^{−d²/2}): mean K_yy = (3 + 2e^{-1} + 4e^{-1.5})/9, mean K_ye = (1 + e^{-1} + e^{-1.5})/3
    hand = (3 + 2 * np.exp(-1) + 4 * np.exp(-1.5)) / 9 - 2 * (1 + np.exp(-1) + np.exp(-1.5)) / 3 + 1
    np.testing.assert_allclose(float(d), hand, rtol=1e-12)
    np.testing.assert_allclose(float(d_pos), hand, rtol=1e-12)
    assert float(d_neg) == 0.0
    np.testing.assert_allclose(np.asarray(credit), np_credit(Y_TOK, Y_VALID, neg=False), rtol=1e-10, atol=1e-14)
    c = np.asarray(credit)
    assert c[0] > 0 > c[2]  # the exemplar itself helps the set, the furthest sample hurts it


def test_negative_set_and_weight_match_numpy():
    d, d_pos, d_neg, credit = set_distance_and_credit(Y_TOK, Y_VALID, (E_TOK, E_VALID), (N_TOK, N_VALID),
                                                      bandwidth=1.5, negative_weight=0.5)
    np.testing.assert_allclose(float(d), np_distance(Y_TOK, Y_VALID, sigma=1.5, w=0.5), rtol=1e-12)
    np.testing.assert_allclose(float(d_neg), np_mmd2(Y_TOK, Y_VALID, N_TOK, N_VALID, 1.5), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(credit), np_credit(Y_TOK, Y_VALID, sigma=1.5, w=0.5), rtol=1e-10, atol=1e-14)


def test_permuting_samples_permutes_the_credit_and_keeps_the_score():
    perm = np.array([2, 0, 1])
    base = set_distance_and_credit(Y_TOK, Y_VALID, (E_TOK, E_VALID), (N_TOK, N_VALID))
    moved = set_distance_and_credit(Y_TOK[perm], Y_VALID[perm], (E_TOK, E_VALID), (N_TOK, N_VALID))
    np.testing.assert_allclose(float(moved[0]), float(base[0]), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(moved[3]), np.asarray(base[3])[perm], rtol=1e-12, atol=1e-15)


def test_duplicating_the_exemplar_sets_changes_nothing():
    twice = lambda t, v: (np.concatenate([t, t]), np.concatenate([v, v]))
    base = set_distance_and_credit(Y_TOK, Y_VALID, (E_TOK, E_VALID), (N_TOK, N_VALID))
    dup = set_distance_and_credit(Y_TOK, Y_VALID, twice(E_TOK, E_VALID), twice(N_TOK, N_VALID))
    for a, b in zip(base, dup):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-15)


def test_identical_samples_get_zero_credit():
    same = np.repeat(Y_TOK[1:2], 3, axis=0), np.repeat(Y_VALID[1:2], 3, axis=0)
    credit = set_distance_and_credit(*same, (E_TOK, E_VALID))[3]
    np.testing.assert_allclose(np.asarray(credit), 0.0, atol=1e-15)


# ----------------------------------------------------------------------------- the wrapper


def _inner(response, mask, verifier):
    batch = Batch(prompt_bp=jnp.zeros((len(response), 1), jnp.int32), prompt_valid_bp=jnp.ones((len(response), 1), bool),
                  response_bt=jnp.asarray(response, jnp.int32), mask_bt=jnp.asarray(mask, jnp.float32),
                  reward_b=jnp.asarray(verifier, jnp.float32), group_b=jnp.arange(len(response), dtype=jnp.int32) // 3,
                  group_size=3)
    collect = lambda cstate, state, data, rng: (batch, cstate, {"accuracy": batch.reward_b.mean()})
    return Collector(init=lambda prompts: (), collect=collect, example=lambda prompts: batch)


CTX = types.SimpleNamespace(pad_id=0, task=types.SimpleNamespace(tokenizer=None))


def _two_prompts():
    # prompt 0's answer is E (width 3 here, narrower than the responses); prompt 1's is [5, 7]
    response = np.concatenate([Y_TOK, Y_TOK[::-1]])
    mask = np.concatenate([Y_VALID, Y_VALID[::-1]])
    data = {"prompt_bp": jnp.zeros((2, 1), jnp.int32), "prompt_valid_bp": jnp.ones((2, 1), bool),
            "answer_ba": jnp.asarray([[3, 4, 7], [5, 7, 0]], jnp.int32),
            "answer_valid_ba": jnp.asarray([[1, 1, 1], [1, 1, 0]], bool)}
    return _inner(response, mask, [1, 0, 0, 0, 0, 1]), data, response, mask


def test_wrapper_scores_each_group_against_its_answer():
    inner, data, response, mask = _two_prompts()
    wrapped = collectors.with_distributional_reward(bandwidth=1.0)(inner, CTX)
    batch, _, metrics = wrapped.collect((), None, data, jax.random.key(0))
    answers = [(E_TOK, E_VALID), (np.array([[5, 7, 0, 0]]), np.array([[1, 1, 0, 0]], bool))]
    expected, dist = [], []
    for k, (e, ve) in enumerate(answers):
        y, vy = response[3 * k:3 * k + 3], mask[3 * k:3 * k + 3]
        full = np_mmd2(y, vy, e, ve, 1.0)
        dist.append(full)
        keep = lambda i: np.arange(3) != i
        expected += [np_mmd2(y[keep(i)], vy[keep(i)], e, ve, 1.0) - full for i in range(3)]
    np.testing.assert_allclose(np.asarray(batch.reward_b), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(metrics["set_distance"]), np.mean(dist), rtol=1e-6)
    np.testing.assert_allclose(float(metrics["set_mmd_positive"]), np.mean(dist), rtol=1e-6)
    np.testing.assert_allclose(float(metrics["verifier_reward_mean"]), 1 / 3, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["accuracy"]), 1 / 3, rtol=1e-6)  # the inner metrics are kept
    assert "set_mmd_negative" not in metrics


def test_wrapper_jit_equals_eager():
    inner, data, _, _ = _two_prompts()
    negative = types.SimpleNamespace(pad_id=0, task=types.SimpleNamespace(tokenizer=types.SimpleNamespace(
        encode=lambda text, eos: [int(ch) for ch in text] + [7] * eos)))
    wrapped = collectors.with_distributional_reward(negative=["5", "34"], negative_weight=0.5)(inner, negative)
    eager = wrapped.collect((), None, data, jax.random.key(0))
    jitted = jax.jit(wrapped.collect)((), None, data, jax.random.key(0))
    np.testing.assert_allclose(np.asarray(jitted[0].reward_b), np.asarray(eager[0].reward_b), rtol=1e-6, atol=1e-7)
    for name in ("set_distance", "set_mmd_negative", "credit_positive_frac"):
        np.testing.assert_allclose(float(jitted[2][name]), float(eager[2][name]), rtol=1e-6)


# ----------------------------------------------------------------------------- the loss


def _loss_batch():
    # group 0: credits (0.3, −0.1, 0, 0.2) → D⁺ = {0, 3}, D⁻ = {1}; group 1: all zero → no pair
    logp = np.array([[0.5, 0.5], [-0.25, -0.25], [1.0, 1.0], [0.125, 0.125]] + [[0.1, 0.2]] * 4)
    return Batch(prompt_bp=jnp.zeros((8, 1), jnp.int32), prompt_valid_bp=jnp.ones((8, 1), bool),
                 response_bt=jnp.zeros((8, 2), jnp.int32), mask_bt=jnp.ones((8, 2)),
                 logp_bt=jnp.asarray(logp), ref_logp_bt=jnp.zeros((8, 2)),
                 reward_b=jnp.asarray([0.3, -0.1, 0.0, 0.2, 0, 0, 0, 0.0]),
                 group_b=jnp.arange(8, dtype=jnp.int32) // 4, group_size=4)


def test_set_contrast_loss_on_hand_values():
    loss = set_contrast_loss(beta=0.1)
    out, _ = loss.apply(_loss_batch(), loss.init())
    # r = (1, −0.5, 2, 0.25): pairs (0, 1) h = 1.5 and (3, 1) h = 0.75
    hand = (np.log1p(np.exp(-0.15)) + np.log1p(np.exp(-0.075))) / 2
    np.testing.assert_allclose(float(out.losses["dragon"]), hand, rtol=1e-12)
    assert float(out.metrics["dragon_pairs"]) == 2.0
    assert float(out.metrics["pref_accuracy"]) == 1.0
    np.testing.assert_allclose(float(out.metrics["pref_margin"]), 1.125, rtol=1e-12)
    assert loss.needs == {"ref_logp"}


def test_set_contrast_loss_gradient_raises_positives_and_lowers_negatives():
    loss = set_contrast_loss(beta=0.1)

    def total(logp):
        return loss.apply(_loss_batch().replace(logp_bt=logp), loss.init())[0].losses["dragon"]

    grad = np.asarray(jax.grad(total)(_loss_batch().logp_bt)).sum(-1)
    assert grad[0] < 0 and grad[3] < 0 and grad[1] > 0  # descent raises D⁺, lowers D⁻
    np.testing.assert_array_equal(grad[[2, 4, 5, 6, 7]], 0.0)


def test_set_contrast_loss_jit_equals_eager_and_no_pairs_is_zero():
    loss = set_contrast_loss(beta=0.2)
    batch = _loss_batch()
    eager = loss.apply(batch, loss.init())[0].losses["dragon"]
    jitted = jax.jit(lambda b: loss.apply(b, loss.init())[0].losses["dragon"])(batch)
    np.testing.assert_allclose(float(jitted), float(eager), rtol=1e-12)
    none = loss.apply(batch.replace(reward_b=jnp.zeros(8)), loss.init())[0]
    assert float(none.losses["dragon"]) == 0.0 and float(none.metrics["dragon_pairs"]) == 0.0


def test_dragon_noun():
    alg = algorithms.dragon()
    assert alg.needs == {"ref_logp"} and alg.collector is not None
    assert algorithms.get("dragon") is algorithms.dragon


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kwargs, field", [
    (dict(bandwidth=0.0), "bandwidth"), (dict(bandwidth=True), "bandwidth"),
    (dict(negative_weight=-1.0), "negative_weight"), (dict(positive="labels"), "positive"),
    (dict(beta=0.0), "beta"),
])
def test_config_errors_name_the_keyword(kwargs, field):
    with pytest.raises(ValueError, match=field) as err:
        algorithms.dragon(**kwargs)
    assert "\n" not in str(err.value)


def test_exemplar_strings_and_group_size_errors():
    inner, data, _, _ = _two_prompts()
    for kwargs, field in [(dict(negative="5"), "negative"), (dict(positive=[]), "positive"),
                          (dict(positive=["5"]), "tokenizer")]:
        with pytest.raises(ValueError, match=field) as err:
            collectors.with_distributional_reward(**kwargs)(inner, CTX)
        assert "\n" not in str(err.value)
    single = Collector(init=lambda p: (), example=None,
                       collect=lambda c, s, d, r: (inner.collect(c, s, d, r)[0].replace(group_size=1), c, {}))
    wrapped = collectors.with_distributional_reward()(single, CTX)
    with pytest.raises(ValueError, match="group_size") as err:
        wrapped.collect((), None, {**data, "prompt_bp": jnp.zeros((6, 1), jnp.int32)}, None)
    assert "\n" not in str(err.value)
    with pytest.raises(TypeError, match="dragon"):
        algorithms.dragon(temperature=1.0)

"""DNO's pair construction in ``preference_pairs``: the gold answer as one more ranked candidate
and the large-margin filter (``margin_ties``), on hand-made groups with hand-computed rows."""
import importlib
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import collectors, objectives, sharding
from polrl.collectors.preference_pairs import margin_ties
from polrl.core import EXPERT, ON_POLICY, Batch, Collector
from polrl.rollout import SamplingConfig
from polrl.tasks import Task, token_exact_match

# the module (the package's attribute of that name is the collector factory)
preference_pairs_module = importlib.import_module("polrl.collectors.preference_pairs")
P, G, T, EOS, PAD = 3, 3, 3, 7, 0
# answers (width 2, EOS-terminated): prompt k's answer is [k + 1, EOS]
ANSWER = np.array([[1, EOS], [2, EOS], [3, EOS]], np.int32)


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def _data():
    return {"prompt_bp": jnp.asarray([[4, 5], [5, 4], [6, 6]], jnp.int32),
            "prompt_valid_bp": jnp.ones((P, 2), bool),
            "answer_ba": jnp.asarray(ANSWER), "answer_valid_ba": jnp.ones((P, 2), bool)}


def _samples(reward_pg):
    """A stand-in for ``group_samples``: G rows per prompt, row k·G + j holding the marker token
    10·k + j + 10 (never an answer), with the given rewards."""
    reward_b = jnp.asarray(np.asarray(reward_pg, np.float32).reshape(-1))
    rows = np.arange(P * G)

    def collect(cstate, state, data, rng):
        batch = Batch(
            prompt_bp=jnp.repeat(data["prompt_bp"], G, axis=0),
            prompt_valid_bp=jnp.repeat(data["prompt_valid_bp"], G, axis=0),
            response_bt=jnp.asarray(np.stack([rows + 10, np.full(P * G, EOS), np.zeros(P * G)], 1), jnp.int32),
            mask_bt=jnp.asarray(np.tile([1.0, 1.0, 0.0], (P * G, 1)), jnp.float32),
            reward_b=reward_b,
            group_b=jnp.asarray(rows // G, jnp.int32),
            behavior_logp_bt=-jnp.ones((P * G, T), jnp.float32),
            version_b=jnp.zeros(P * G, jnp.int32),
            group_size=G,
        )
        return batch, cstate, {"reward_mean": reward_b.mean()}

    def example(prompts):
        return jax.eval_shape(lambda: collect((), None, _data(), None)[0])

    return Collector(init=lambda prompts: (), collect=collect, example=example)


def _pairs(monkeypatch, reward_pg, **kwargs):
    """``preference_pairs(ctx, **kwargs)`` over the hand-made groups: (jitted batch, metrics),
    checked equal to the eager call and to the collector's example."""
    monkeypatch.setattr(preference_pairs_module, "group_samples", lambda ctx, **kw: _samples(reward_pg))
    task = Task(name="tiny", tokenizer=None, max_prompt_len=2, max_answer_len=2, train=[], test=[],
                host_reward=None, device_reward=token_exact_match)
    ctx = collectors.Context(graphdef=None, task=task, sampling=SamplingConfig(max_new_tokens=T, eos_id=EOS, pad_id=PAD),
                             group_size=G, layout=sharding.layout_from_config(None))
    collector = collectors.preference_pairs(ctx, **kwargs)
    state = types.SimpleNamespace(step=jnp.int32(5))  # the policy state: only the gold rows' version reads it
    eager = collector.collect((), state, _data(), jax.random.key(0))
    jitted = jax.jit(lambda data: collector.collect((), state, data, jax.random.key(0)))(_data())
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    example = collector.example(P)
    assert [(x.shape, x.dtype) for x in jax.tree.leaves(jitted[0])] == [(x.shape, x.dtype) for x in jax.tree.leaves(example)]
    return jitted[0], jitted[2]


def test_gold_answer_is_ranked_last_among_the_candidates(monkeypatch):
    # prompt 0: samples [0, 1, 0] + gold 1 → chosen sample 1 (first arg-max), rejected sample 0
    # prompt 1: samples [0, 0, 0] + gold 1 → chosen the gold answer [2, EOS], rejected sample 0
    # prompt 2: samples [1, 1, 1] + gold 1 → a tie (sample 0 twice)
    pairs, metrics = _pairs(monkeypatch, [[0, 1, 0], [0, 0, 0], [1, 1, 1]], gold=True)
    np.testing.assert_array_equal(pairs.response_bt, [[11, EOS, 0], [10, EOS, 0],
                                                      [2, EOS, PAD], [13, EOS, 0],
                                                      [16, EOS, 0], [16, EOS, 0]])
    np.testing.assert_array_equal(pairs.mask_bt, [[1, 1, 0]] * 6)
    np.testing.assert_array_equal(pairs.reward_b, [1, 0, 1, 0, 1, 1])
    np.testing.assert_array_equal(pairs.source_b, [ON_POLICY, ON_POLICY, EXPERT, ON_POLICY, ON_POLICY, ON_POLICY])
    np.testing.assert_array_equal(pairs.behavior_logp_bt[:, 0], [-1, -1, 0, -1, -1, -1])  # the gold's policy is unknown
    np.testing.assert_array_equal(pairs.version_b, [0, 0, 5, 0, 0, 0])
    np.testing.assert_array_equal(pairs.prompt_bp, np.repeat(np.asarray(_data()["prompt_bp"]), 2, axis=0))
    np.testing.assert_array_equal(pairs.group_b, [0, 0, 1, 1, 2, 2])
    assert pairs.group_size == 2
    np.testing.assert_allclose(float(metrics["pairs_kept"]), 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["reward_mean"]), 4 / 9, rtol=1e-6)  # the samples', not the gold's


def test_pairs_under_the_margin_become_ties(monkeypatch):
    # prompt 0: best 0.9 (sample 1), worst 0.2 (sample 0): gap 0.7 >= 0.5, kept
    # prompt 1: best 0.4 (sample 0), worst 0.1 (sample 1): gap 0.3 < 0.5, both get 0.25
    # prompt 2: all 1: a tie already
    pairs, metrics = _pairs(monkeypatch, [[0.2, 0.9, 0.6], [0.4, 0.1, 0.3], [1, 1, 1]], margin=0.5)
    np.testing.assert_array_equal(pairs.response_bt[:, 0], [11, 10, 13, 14, 16, 16])
    np.testing.assert_allclose(pairs.reward_b, [0.9, 0.2, 0.25, 0.25, 1, 1], rtol=1e-6)
    assert pairs.reward_b[2] == pairs.reward_b[3]  # an exact tie, whatever the rounding
    np.testing.assert_allclose(float(metrics["pairs_kept"]), 1 / 3, rtol=1e-6)
    assert pairs.source_b is None  # no gold: the rows of plain preference_pairs


def test_margin_zero_and_no_gold_is_plain_best_and_worst(monkeypatch):
    reward = [[0.2, 0.9, 0.6], [0.4, 0.1, 0.3], [1, 1, 1]]
    pairs, metrics = _pairs(monkeypatch, reward)
    plain = collectors.best_and_worst(_samples(reward).collect((), None, _data(), None)[0])
    for a, b in zip(jax.tree.leaves(pairs), jax.tree.leaves(plain), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert "pairs_kept" not in metrics


def _pair_batch(reward_b):
    # per-row log-ratio s = logp − ref_logp (one token): [0.5, −0.5, 2, 1, 0.3, 0.1, −0.2, 0.4]
    logp = np.array([0.0, -1.0, 1.0, -1.0, -0.5, -0.5, -1.0, -0.6])
    ref = logp - np.array([0.5, -0.5, 2.0, 1.0, 0.3, 0.1, -0.2, 0.4])
    return Batch(prompt_bp=jnp.zeros((8, 1), jnp.int32), prompt_valid_bp=jnp.ones((8, 1), bool),
                 response_bt=jnp.ones((8, 1), jnp.int32), mask_bt=jnp.ones((8, 1)), reward_b=jnp.asarray(reward_b),
                 group_b=jnp.arange(8, dtype=jnp.int32) // 2, logp_bt=jnp.asarray(logp)[:, None],
                 ref_logp_bt=jnp.asarray(ref)[:, None], group_size=2)


def test_margin_ties_are_left_out_of_the_dpo_loss():
    # pair gaps |3−1| = 2, |0.5−0.2| = 0.3, |2−2| = 0, |−1−4| = 5; margin 1 keeps pairs 0 and 3
    reward = np.array([3.0, 1.0, 0.5, 0.2, 2.0, 2.0, -1.0, 4.0])
    tied = margin_ties(_pair_batch(reward), 1.0)
    np.testing.assert_allclose(tied.reward_b, [3, 1, 0.35, 0.35, 2, 2, -1, 4], rtol=1e-12)
    assert jnp.array_equal(jax.jit(margin_ties, static_argnums=1)(_pair_batch(reward), 1.0).reward_b, tied.reward_b)
    np.testing.assert_array_equal(margin_ties(_pair_batch(reward), 0.0).reward_b, reward)  # margin 0 keeps all
    t = objectives.preference_loss(beta=0.1)
    out, _ = t.apply(tied, t.init())
    # kept: pair 0, chosen row 0: h = 0.5 − (−0.5) = 1;  pair 3, chosen row 7: h = 0.4 − (−0.2) = 0.6
    log_sigmoid = lambda x: -math.log1p(math.exp(-x))
    expected = -(log_sigmoid(0.1 * 1.0) + log_sigmoid(0.1 * 0.6)) / 2
    np.testing.assert_allclose(float(out.losses["dpo"]), expected, rtol=1e-12)
    assert float(out.metrics["pref_pairs"]) == 2.0
    untied, _ = t.apply(_pair_batch(reward), t.init())
    assert float(untied.metrics["pref_pairs"]) == 3.0  # pair 1 (h = 2 − 1 = 1) counts without the filter


@pytest.mark.parametrize("kwargs,message", [
    (dict(margin=-0.5), r"margin=-0.5 must be a finite number >= 0"),
    (dict(margin=float("inf")), r"margin=inf must be a finite number >= 0"),
    (dict(gold=1), r"gold=1 must be True or False"),
])
def test_bad_options_are_refused(monkeypatch, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _pairs(monkeypatch, [[0, 1, 0]] * P, **kwargs)

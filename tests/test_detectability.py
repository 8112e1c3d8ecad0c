"""``polrl.detectability`` (CT²'s detector statistics and AI Detectability Index): each statistic on
a hand-computed 2-text, 3-token case, token statistics against a numpy reading of the scorer's
logits, AUROC against a brute-force pair count, the ADI on hand numbers, jit == no-jit; the
detectability penalty on a collector's reward; the config fields' errors."""
import itertools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from polrl import algorithms, collectors, detectability
from polrl.core import Batch, Collector
from polrl.tasks import CharTokenizer
from polrl.train import build, steps
from test_collectors import _context, _data, _model

SEP = 2


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def _two_texts():
    """Two texts of 3 tokens: [5, SEP, 6] (two sentences) and [5, 6, pad] (one sentence, 2 tokens)."""
    tokens = {"logp_bt": jnp.array([[-1.0, -2.0, -4.0], [-1.0, -3.0, -9.0]]),
              "log_rank_bt": jnp.array([[0.0, math.log(2), math.log(3)], [math.log(4), 0.0, 5.0]]),
              "entropy_bt": jnp.array([[0.5, 1.0, 1.5], [2.0, 1.0, 7.0]])}
    response_bt = jnp.array([[5, SEP, 6], [5, 6, 0]])
    mask_bt = jnp.array([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    return tokens, response_bt, mask_bt


def test_text_statistics_hand_values():
    tokens, response_bt, mask_bt = _two_texts()
    out = detectability.text_statistics(tokens, response_bt, mask_bt, SEP)
    np.testing.assert_allclose(out["log_likelihood"], [-7 / 3, -2.0], rtol=1e-14)
    np.testing.assert_allclose(out["perplexity"], [math.exp(7 / 3), math.exp(2.0)], rtol=1e-14)
    np.testing.assert_allclose(out["log_rank"], [math.log(6) / 3, math.log(4) / 2], rtol=1e-14)
    np.testing.assert_allclose(out["entropy"], [1.0, 1.5], rtol=1e-14)
    # text 0: sentences {5, SEP} (mean surprisal 1.5) and {6} (4): m = 2.75, σ = 1.25 → (1.25 − 2.75) / 4;
    # text 1: one sentence, σ = 0 → −1
    np.testing.assert_allclose(out["burstiness"], [-0.375, -1.0], rtol=1e-14)


def test_burstiness_without_separator_is_one_sentence_and_scale_free():
    tokens, response_bt, mask_bt = _two_texts()
    one = detectability.burstiness(tokens["logp_bt"], response_bt, mask_bt, separator_id=-1)
    np.testing.assert_allclose(one, [-1.0, -1.0])
    # (σ − m)/(σ + m) does not change when every surprisal is scaled
    a = detectability.burstiness(tokens["logp_bt"], response_bt, mask_bt, SEP)
    b = detectability.burstiness(3.0 * tokens["logp_bt"], response_bt, mask_bt, SEP)
    np.testing.assert_allclose(a, b, rtol=1e-14)


def test_text_statistics_jit_equals_eager():
    tokens, response_bt, mask_bt = _two_texts()
    eager = detectability.text_statistics(tokens, response_bt, mask_bt, SEP)
    jitted = jax.jit(detectability.text_statistics, static_argnums=3)(tokens, response_bt, mask_bt, SEP)
    for k in detectability.STATISTICS:
        np.testing.assert_allclose(jitted[k], eager[k], rtol=1e-13)


def test_token_statistics_match_the_scorers_logits():
    graphdef, params = _model()
    data = _data(0, 2)
    batch = Batch(prompt_bp=data["prompt_bp"], prompt_valid_bp=data["prompt_valid_bp"],
                  response_bt=data["answer_ba"], mask_bt=data["answer_valid_ba"].astype(jnp.float64))
    out = jax.jit(detectability.token_statistics, static_argnums=0)(graphdef, params, batch)
    logits = np.asarray(jax.jit(lambda p, b: steps.score(graphdef, p, b, full_logits=True)["logits_btv"])(params, batch))
    logq = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    taken = np.asarray(batch.response_bt)
    for b, t in itertools.product(range(2), range(3)):
        row = logq[b, t]
        assert out["logp_bt"][b, t] == pytest.approx(row[taken[b, t]], rel=1e-12)
        assert out["log_rank_bt"][b, t] == pytest.approx(math.log(1 + int((row > row[taken[b, t]]).sum())), abs=1e-15)
        assert out["entropy_bt"][b, t] == pytest.approx(-(np.exp(row) * row).sum(), rel=1e-12)
    texts = detectability.scored_texts(graphdef, SEP)
    args = (params, batch.prompt_bp, batch.prompt_valid_bp, batch.response_bt, batch.mask_bt)
    eager, jitted = texts(*args), jax.jit(texts)(*args)
    for k in detectability.STATISTICS:
        np.testing.assert_allclose(jitted[k], eager[k], rtol=1e-12)


def test_auroc_is_the_pair_count():
    rng = np.random.default_rng(0)
    for _ in range(20):
        pos, neg = rng.integers(0, 4, rng.integers(1, 7)), rng.integers(0, 4, rng.integers(1, 7))  # many ties
        brute = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))
        assert detectability.auroc(pos, neg) == pytest.approx(brute, abs=1e-15)
    assert detectability.auroc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert detectability.auroc([1.0], [1.0]) == 0.5
    assert detectability.auroc([0.0, 2.0], [1.0, 3.0]) == 0.25  # 1 of 4 pairs
    with pytest.raises(ValueError, match="both classes"):
        detectability.auroc([], [1.0])


def test_adi_hand_numbers():
    # reference perplexities [4, 6]: mean 5, std 1; burstiness [−0.5, 0.5]: mean 0, std 0.5
    # generated (P, B) = (3, −0.5) and (5, −1): terms (−2, −1) and (0, −2) → 100/4 · ½ · (−3 − 2)
    adi = detectability.ai_detectability_index([3.0, 5.0], [-0.5, -1.0], [4.0, 6.0], [-0.5, 0.5])
    assert adi == pytest.approx(-62.5, abs=1e-12)
    same = detectability.ai_detectability_index([4.0, 6.0], [-0.5, 0.5], [4.0, 6.0], [-0.5, 0.5])
    assert same == pytest.approx(0.0, abs=1e-12)  # the reference's own statistics
    weighted = detectability.ai_detectability_index([3.0], [-0.5], [4.0, 6.0], [-0.5, 0.5], delta1=1.0, delta2=0.0)
    assert weighted == pytest.approx(100 / 2 * -2.0, abs=1e-12)
    with pytest.raises(ValueError, match=">= 2 reference texts"):
        detectability.ai_detectability_index([3.0], [0.0], [4.0], [0.0])


def test_detection_metrics_orientation():
    tokens, response_bt, mask_bt = _two_texts()
    stats = {k: np.asarray(v) for k, v in detectability.text_statistics(tokens, response_bt, mask_bt, SEP).items()}
    likely = {**stats, "log_likelihood": stats["log_likelihood"] + 10, "perplexity": stats["perplexity"] / 100,
              "log_rank": stats["log_rank"] - 10, "entropy": stats["entropy"] - 10, "burstiness": stats["burstiness"] - 1}
    out = detectability.detection_metrics(likely, stats)
    assert {k: out[f"eval/detect_auroc_{k}"] for k in detectability.DETECTORS} == dict.fromkeys(detectability.DETECTORS, 1.0)
    assert out["eval/detect_adi"] < 0  # less perplexing and less bursty than the reference
    swapped = detectability.detection_metrics(stats, likely, prefix="x_")
    assert all(swapped[f"x_auroc_{k}"] == 0.0 for k in detectability.DETECTORS)
    with pytest.raises(ValueError, match="detector 'bleu'"):
        detectability.detector_score(stats, "bleu")


def test_penalty_subtracts_the_detectors_score_under_the_scorer():
    """An inner collector with fixed rows (the labelled answers, rewards 1 and 0.25): the wrapped
    reward is r − λ·d with d the detector's score of each row under the reference."""
    ctx = _context()
    data = _data(0, 2)
    base = Batch(prompt_bp=data["prompt_bp"], prompt_valid_bp=data["prompt_valid_bp"], response_bt=data["answer_ba"],
                 mask_bt=data["answer_valid_ba"].astype(jnp.float64), reward_b=jnp.array([1.0, 0.25]))
    inner = Collector(init=lambda prompts: (), collect=lambda cstate, state, data, rng: (base, cstate, {}),
                      example=lambda prompts: jax.eval_shape(lambda: base))
    wrapped = collectors.with_detectability_penalty(0.5, detector="log_rank")(inner, ctx)
    assert "reference" in wrapped.needs
    graphdef, params = _model()
    state = steps.init_state(params, algorithms.grpo(kl_coef=0.0), jax.random.key(0), ref_params=params,
                             collector=wrapped, prompts=2)
    batch, _, metrics = jax.jit(wrapped.collect)(state.collector_state, state, data, jax.random.key(1))
    stats = detectability.text_statistics(jax.jit(detectability.token_statistics, static_argnums=0)(
        graphdef, params, base), base.response_bt, base.mask_bt, -1)
    np.testing.assert_allclose(batch.reward_b, base.reward_b + 0.5 * stats["log_rank"], rtol=1e-12, atol=1e-14)
    assert float(metrics["verifier_reward_mean"]) == pytest.approx(0.625, abs=1e-15)
    assert float(metrics["detect_score_mean"]) == pytest.approx(-float(stats["log_rank"].mean()), rel=1e-12)
    assert float(metrics["reward_mean"]) == pytest.approx(float(batch.reward_b.mean()), rel=1e-12)


def test_penalty_and_config_errors():
    with pytest.raises(ValueError, match="detect_penalty.detector='bleu'"):
        collectors.with_detectability_penalty(0.1, detector="bleu")
    with pytest.raises(ValueError, match="detect_penalty.coef=-1"):
        collectors.with_detectability_penalty(-1)
    with pytest.raises(ValueError, match="detect_penalty.model='nope' is not a model of this run"):
        collectors.with_detectability_penalty(0.1, model="nope")(collectors.group_samples(_context()), _context())
    tok = CharTokenizer()
    with pytest.raises(ValueError, match="detect_penalty.separator=',,' encodes to 2 tokens"):
        build.detect_penalty_wrapper(ml_collections.ConfigDict(dict(detect_penalty=dict(coef=0.1, separator=",,"))), tok)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['lam'\]"):
        build.detect_penalty_wrapper(ml_collections.ConfigDict(dict(detect_penalty=dict(lam=1, coef=0.1))), tok)
    with pytest.raises(ValueError, match="needs coef"):
        build.detect_penalty_wrapper(ml_collections.ConfigDict(dict(detect_penalty=dict(detector="entropy"))), tok)
    assert build.detect_penalty_wrapper(ml_collections.ConfigDict(dict()), tok) is None
    with pytest.raises(ValueError, match="eval.detect='yes' must be True or False"):
        build.eval_detect_separator(ml_collections.ConfigDict(dict(eval=dict(detect="yes"))), tok)
    assert build.eval_detect_separator(ml_collections.ConfigDict(dict(eval=dict(detect=False))), tok) is None
    assert build.eval_detect_separator(ml_collections.ConfigDict(dict(eval=dict(detect=True))), tok) == tok.encode(",")[0]

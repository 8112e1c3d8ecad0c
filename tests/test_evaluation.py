"""``polrl.evaluation``: pass@k against hand-computed values and brute force over k-subsets,
the diversity measure, the jitted sampler + scorer against its parts, and an end-to-end run of
a :smoke config with sampled evaluation (and staleness) on."""
import importlib
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import evaluation, sharding
from polrl.rollout import sample
from polrl.tasks import token_exact_match
from polrl.train import metrics as metrics_lib, steps
from polrl.core import Batch
from test_collectors import SAMPLING, _data, _model


# ----------------------------------------------------------------------------- pass@k

@pytest.mark.parametrize("n, c, k, want", [
    (5, 2, 2, 1 - math.comb(3, 2) / math.comb(5, 2)),  # = 0.7
    (5, 2, 1, 0.4),
    (5, 0, 3, 0.0),
    (5, 5, 1, 1.0),
    (4, 3, 2, 1.0),       # n − c < k: every pair holds a correct sample
    (10, 1, 10, 1.0),
    (200, 1, 100, 0.5),   # C(199,100)/C(200,100) = 100/200; binomials of ~1e59 never formed
])
def test_pass_at_k_hand_values(n, c, k, want):
    assert evaluation.pass_at_k(n, c, k) == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_pass_at_k_hand_value_point_seven():
    assert evaluation.pass_at_k(5, 2, 2) == pytest.approx(0.7, abs=1e-15)


def test_pass_at_k_is_the_mean_over_k_subsets():
    """1 − C(n−c,k)/C(n,k) is the fraction of the C(n,k) subsets of k samples holding a correct one."""
    for n in range(1, 8):
        for c in range(n + 1):
            correct = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(correct, k))
                brute = sum(any(s) for s in subsets) / len(subsets)
                assert evaluation.pass_at_k(n, np.array([c]), k)[0] == pytest.approx(brute, rel=1e-12, abs=1e-15)


def test_pass_at_k_rejects_impossible_k():
    with pytest.raises(ValueError, match="1 <= k <= n"):
        evaluation.pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match=r"eval.pass_k=\[1, 9\] has \[9\] outside \[1, eval.samples=4\]"):
        evaluation.check_pass_k(4, [1, 9])
    assert evaluation.check_pass_k(4, [4, 1, 4]) == (1, 4)
    assert evaluation.default_pass_k(1) == (1,) and evaluation.default_pass_k(8) == (1, 8)


# ----------------------------------------------------------------------------- diversity, summary

def test_distinct_fraction_counts_completions_up_to_eos():
    # prompt 0: samples "1 2 EOS", "1 2 EOS" (+ different junk after EOS), "3 EOS"; prompt 1: all same
    response = np.array([[[1, 2, 7, 0], [1, 2, 7, 5], [3, 7, 0, 0]],
                         [[4, 7, 0, 0], [4, 7, 0, 0], [4, 7, 0, 0]]])
    mask = np.array([[[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0]],
                     [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]])
    np.testing.assert_array_equal(evaluation.distinct_fraction(response, mask), [2 / 3, 1 / 3])


def test_sampled_metrics_hand_values():
    reward = np.array([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])    # c = 2 and 0 of n = 4
    response = np.zeros((2, 4, 3), np.int32)
    response[0, :, 0] = [1, 2, 1, 3]                                    # 3 distinct, then 1
    mask = np.zeros((2, 4, 3))
    mask[..., 0] = 1
    mask[0, 0, 1] = 1                                                   # lengths 2,1,1,1 / 1,1,1,1
    entropy = np.full((2, 4), 0.5) * mask.sum(-1)                       # 0.5 nats per token
    out = evaluation.sampled_metrics(reward, entropy, response, mask, (1, 2, 4))
    assert out["eval/pass@1"] == pytest.approx(0.25)
    assert out["eval/pass@2"] == pytest.approx((1 - math.comb(2, 2) / math.comb(4, 2)) / 2)
    assert out["eval/pass@4"] == pytest.approx(0.5)
    assert out["eval/sampled_accuracy"] == pytest.approx(0.25)
    assert out["eval/entropy"] == pytest.approx(0.5)
    # prompt 0: tokens (1,0), (2), (1), (3) -> 4 distinct masked sequences; prompt 1: 1
    assert out["eval/distinct_answers"] == pytest.approx((4 / 4 + 1 / 4) / 2)
    assert out["eval/response_length"] == pytest.approx(9 / 8)


# ----------------------------------------------------------------------------- the jitted program

@pytest.fixture
def float64():
    with jax.enable_x64(True):
        yield


def test_sampled_completions_match_their_parts_and_compile_once(float64):
    """The jitted program = the sampler's n samples per prompt, the scoring forward's entropy,
    the task's reward; two calls with new prompts and keys trace once."""
    graphdef, params = _model()
    n, prompts = 3, 2
    run = evaluation.sampled_completions(graphdef, SAMPLING, n, token_exact_match)
    traces = []
    layout = sharding.layout_from_config(None)
    jitted = layout.jit(lambda *a: (traces.append(None), run(*a))[1], ("params",) + ("batch",) * 4 + ("replicated",),
                        "batch")
    for seed in (0, 1):
        data = _data(seed, prompts)
        args = (data["prompt_bp"], data["prompt_valid_bp"], data["answer_ba"], data["answer_valid_ba"])
        key = jax.random.key(10 + seed)
        out = jitted(params, *args, key)
        eager = run(params, *args, key)
        for name in out:
            np.testing.assert_allclose(np.asarray(out[name]), np.asarray(eager[name]), rtol=1e-9, atol=1e-12)
        want = sample(graphdef, params, args[0], args[1], key, SAMPLING, n)
        np.testing.assert_array_equal(np.asarray(eager["response_bt"]), np.asarray(want.response_bt))
        mask = np.asarray(want.mask_bt, np.float64)
        batch = Batch(prompt_bp=jnp.repeat(args[0], n, 0), prompt_valid_bp=jnp.repeat(args[1], n, 0),
                      response_bt=want.response_bt, mask_bt=want.mask_bt)
        entropy = np.asarray(steps.score(graphdef, params, batch)["entropy_bt"], np.float64)
        np.testing.assert_allclose(np.asarray(eager["entropy_b"]), (entropy * mask).sum(-1), rtol=1e-9, atol=1e-12)
        reward = token_exact_match(want.response_bt, want.mask_bt, jnp.repeat(args[2], n, 0), jnp.repeat(args[3], n, 0))
        np.testing.assert_array_equal(np.asarray(eager["reward_b"]), np.asarray(reward))
    assert len(traces) == 1, "the sampled evaluation retraced"


# ----------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_smoke_run_logs_sampled_eval_and_staleness(tmp_path, monkeypatch):
    """arithmetic_grpo:smoke with eval.samples = 4 and staleness = 1: every evaluation logs the
    sampled metrics (pass@1 = sampled accuracy, pass@1 <= pass@4), the sampled program compiles
    once for the whole run, and the RL phase's rows are one update stale after its first step."""
    from polrl.train.build import build_spec
    from polrl.train.trainer import Trainer

    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path / "data"))
    config = importlib.import_module("experiments.arithmetic_grpo").get_config("smoke")
    config.eval.samples = 4
    config.staleness = 1
    traces = []
    make = evaluation.sampled_completions

    def counting(*args, **kwargs):
        run = make(*args, **kwargs)
        return lambda *a: (traces.append(None), run(*a))[1]

    monkeypatch.setattr(evaluation, "sampled_completions", counting)
    Trainer(build_spec(config, progress=False), str(tmp_path / "run")).run()
    records = metrics_lib.read_metrics(str(tmp_path / "run"))
    evals = [r for r in records if "eval/accuracy" in r]
    assert len(evals) >= 4  # start and end of each phase, and every eval_every
    for r in evals:
        for key in ("eval/pass@1", "eval/pass@4", "eval/sampled_accuracy", "eval/entropy", "eval/distinct_answers",
                    "eval/response_length", "eval/greedy_length"):
            assert key in r and np.isfinite(r[key]), (key, r)
        assert r["eval/pass@1"] == pytest.approx(r["eval/sampled_accuracy"], abs=1e-12)
        assert 0 <= r["eval/pass@1"] <= r["eval/pass@4"] <= 1
        assert 0.25 <= r["eval/distinct_answers"] <= 1 and r["eval/entropy"] >= 0
        assert r["eval/response_length"] >= 1 and r["eval/greedy_length"] >= 1  # EOS counts
    assert len(traces) == 1, "the sampled evaluation compiled more than once"
    stale = [r["offpolicy/staleness_mean"] for r in records if r["phase"] == "rl" and "offpolicy/staleness_mean" in r]
    assert stale == [0.0] + [1.0] * (config.total_steps - 1)

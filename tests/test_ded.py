"""DED (polrl.ops.edit_distance, polrl.collectors.distilled_corpus, polrl.algorithms.ded): the edit
distance by hand and against the textbook loop, the diverse subset by hand and against the greedy
rule written as a loop, the corpus rows against the teacher's own samples, the quick distillation's
first step as Adam's, the probe choosing the teacher that helps the student (constructed teachers,
either pool order) and freezing its choice, the loss by hand, the one-line errors, and held-out
evaluation without teachers. Tiny float64 models, so jitted and eager values cannot differ by
float32 rounding (the collector's jit == no-jit: tests/test_collectors.py's contract)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from polrl import algorithms, collectors, ops, sharding
from polrl.collectors.distilled_corpus import (corpus_rows, distinct_right, diverse_subset, nll, quick_distillation,
                                               sampled_accuracy, with_distilled_corpus)
from polrl.core import TEACHER, Batch, PolicyState, total_loss
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig, sample
from polrl.tasks import Task
from held_out_testing import check_evaluation_sees_the_policy_alone
from tiny_models import tiny_params

V, EOS, PAD = 8, 7, 0
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16,
                        dtype=jnp.float64, param_dtype=jnp.float64)
SAMPLING = SamplingConfig(max_new_tokens=3, eos_id=EOS, pad_id=PAD)


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def _levenshtein(a, b) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[:], i
        for j, y in enumerate(b, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (x != y))
    return row[-1]


# ----------------------------------------------------------------------------- edit distance
def test_edit_distance_by_hand():
    """kitten → sitting: 2 substitutions and an insertion; a sequence against the empty one: its
    length; tokens past the lengths never count."""
    kitten, sitting = [1, 2, 3, 3, 4, 5, 0, 9], [6, 2, 3, 3, 2, 5, 7, 9]  # k i t t e n / s i t t i n g
    assert int(ops.edit_distance(jnp.asarray(kitten), 6, jnp.asarray(sitting), 7)) == 3
    assert int(ops.edit_distance(jnp.asarray(kitten), 6, jnp.asarray(sitting), 0)) == 6
    assert int(ops.edit_distance(jnp.asarray(kitten), 0, jnp.asarray(sitting), 0)) == 0
    assert int(ops.edit_distance(jnp.asarray([1, 2, 3]), 3, jnp.asarray([2, 3, 1]), 3)) == 2  # delete 1, insert 1


def test_edit_distance_matches_the_textbook_loop():
    rng = np.random.default_rng(0)
    jitted = jax.jit(ops.edit_distance)
    for _ in range(100):
        a, b = rng.integers(0, 3, 7), rng.integers(0, 3, 5)
        la, lb = int(rng.integers(0, 8)), int(rng.integers(0, 6))
        want = _levenshtein(list(a[:la]), list(b[:lb]))
        assert int(ops.edit_distance(jnp.asarray(a), la, jnp.asarray(b), lb)) == want
        assert int(jitted(jnp.asarray(a), la, jnp.asarray(b), lb)) == want


def test_pairwise_edit_distance_is_a_metric_table():
    rng = np.random.default_rng(1)
    tokens, lengths = jnp.asarray(rng.integers(0, 3, (6, 5))), jnp.asarray(rng.integers(0, 6, 6))
    d = np.asarray(ops.pairwise_edit_distance(tokens, lengths))
    np.testing.assert_array_equal(np.diag(d), 0)
    np.testing.assert_array_equal(d, d.T)
    for i in range(6):
        for j in range(6):
            assert d[i, j] == _levenshtein(list(np.asarray(tokens[i, :lengths[i]])), list(np.asarray(tokens[j, :lengths[j]])))
            assert all(d[i, j] <= d[i, k] + d[k, j] for k in range(6))


# ----------------------------------------------------------------------------- diverse subset
def test_diverse_subset_by_hand():
    """Samples 0–4, sample 0 wrong. First pick: sample 1 (the first right one). Distances to it:
    2 → 1, 3 → 4, 4 → 0 (a copy of 1): next pick 3. Smallest distances to {1, 3}: 2 → min(1, 2)
    = 1, 4 → 0: next pick 2. Sample 4 is a copy of 1, so a fourth slot stays empty."""
    d = jnp.asarray([[0, 5, 5, 5, 5],
                     [5, 0, 1, 4, 0],
                     [5, 1, 0, 2, 1],
                     [5, 4, 2, 0, 4],
                     [5, 0, 1, 4, 0]], jnp.int32)
    right = jnp.asarray([False, True, True, True, True])
    index, filled = diverse_subset(d, right, 4)
    np.testing.assert_array_equal(index, [1, 3, 2, 0])
    np.testing.assert_array_equal(filled, [True, True, True, False])
    assert int(distinct_right(d, right)) == 3  # 1, 2, 3 (4 repeats 1)
    index, filled = diverse_subset(d, jnp.zeros(5, bool), 2)
    np.testing.assert_array_equal(filled, [False, False])


def _greedy_loop(d, right, keep):
    chosen = []
    for _ in range(keep):
        best, best_score = None, 0
        for s in range(len(right)):
            if not right[s] or s in chosen:
                continue
            score = min((d[s][c] for c in chosen), default=np.inf)
            if score > 0 and (best is None or score > best_score):
                best, best_score = s, score
        if best is None:
            break
        chosen.append(best)
    return chosen


def test_diverse_subset_matches_the_greedy_rule_written_as_a_loop():
    rng = np.random.default_rng(2)
    pairwise, subset = jax.jit(ops.pairwise_edit_distance), jax.jit(lambda d, r: diverse_subset(d, r, 4))
    for _ in range(50):
        tokens, lengths = rng.integers(1, 3, (6, 3)), rng.integers(1, 4, 6)
        d = np.asarray(pairwise(jnp.asarray(tokens), jnp.asarray(lengths)))
        right = rng.random(6) < 0.7
        index, filled = subset(jnp.asarray(d), jnp.asarray(right))
        want = _greedy_loop(d, right, 4)
        assert list(np.asarray(index)[np.asarray(filled)]) == want
        assert int(np.asarray(filled).sum()) == len(want)


# ----------------------------------------------------------------------------- corpus rows
def _first_token_two_to_four(response_bt, mask_bt, answer_ba, answer_valid_ba):
    """Reward 1 for a response whose first token is 2, 3 or 4."""
    del mask_bt, answer_ba, answer_valid_ba
    return ((response_bt[:, 0] >= 2) & (response_bt[:, 0] <= 4)).astype(jnp.float32)


@functools.lru_cache(maxsize=None)
def _student():
    with jax.enable_x64(True):
        return tiny_params(CFG)


def _writer(token: int):
    """A frozen model that writes ``token`` after any prompt: attention and MLP outputs zeroed, so
    the last hidden state is the last token's embedding; every embedding has a large first
    coordinate (10, 20 for ``token``), so with the tied head the logit of ``token`` exceeds every
    other by ~40."""
    graphdef, params = _student()

    def rewrite(path, x):
        name = jax.tree_util.keystr(path)
        if "wo" in name or "w_down" in name:
            return jnp.zeros_like(x)
        if "embed" in name:
            first = jnp.where(jnp.arange(V) == token, 20.0, 10.0)
            return x.at[:, 0].set(first) * jnp.where(jnp.arange(x.shape[1]) == 0, 1.0, 0.1)
        return x

    return graphdef, jax.tree_util.tree_map_with_path(rewrite, params)


def _context(teachers=("right", "wrong")):
    task = Task(name="tiny", tokenizer=None, max_prompt_len=3, max_answer_len=3, train=[], test=[],
                host_reward=None, device_reward=_first_token_two_to_four)
    named = {name: collectors.NamedModel(_student()[0]) for name in teachers}
    return collectors.Context(graphdef=_student()[0], task=task, sampling=SAMPLING, group_size=2,
                              layout=sharding.layout_from_config(None), models=named)


def _models():
    return {"right": _writer(3)[1], "wrong": _writer(5)[1], "random": tiny_params(CFG, seed=4)[1]}


def _data(prompts: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return {"prompt_bp": jnp.asarray(rng.integers(1, V - 1, (prompts, 3)), jnp.int32),
            "prompt_valid_bp": jnp.ones((prompts, 3), bool),
            "answer_ba": jnp.ones((prompts, 3), jnp.int32), "answer_valid_ba": jnp.ones((prompts, 3), bool)}


def _state(teachers=("right", "wrong"), step: int = 0):
    return PolicyState(step=jnp.int32(step), rng=None, params=_student()[1], opt_state=None,
                       models={name: _models()[name] for name in teachers})


def test_corpus_rows_are_the_teachers_chosen_samples():
    """A random teacher's 6 samples per prompt, drawn again here with the same key: the rows are the
    diverse subset of its right ones (``diverse_subset`` on their edit distances), with the
    teacher's tokens, log-probs and reward, TEACHER source, version 0; empty slots have no mask."""
    ctx, data, rng = _context(("random",)), _data(3), jax.random.key(5)
    graphdef, params = _student()[0], _models()["random"]
    batch, stats = jax.jit(lambda p, d, r: corpus_rows(ctx, graphdef, p, d, r, 6, 3))(params, data, rng)
    out = jax.jit(lambda p, d, r: sample(graphdef, p, d["prompt_bp"], d["prompt_valid_bp"], r, SAMPLING, 6))(
        params, data, rng)
    right = np.asarray(out.response_bt[:, 0] >= 2) & np.asarray(out.response_bt[:, 0] <= 4)
    lengths = np.asarray(out.mask_bt.sum(axis=1), np.int64)
    assert batch.batch_size == 9 and batch.group_size == 3
    np.testing.assert_array_equal(batch.source_b, TEACHER)
    np.testing.assert_array_equal(batch.version_b, 0)
    np.testing.assert_array_equal(batch.group_b, np.repeat(np.arange(3), 3))
    np.testing.assert_array_equal(batch.prompt_bp, np.repeat(np.asarray(data["prompt_bp"]), 3, axis=0))
    filled_total = 0
    for p in range(3):
        rows = slice(6 * p, 6 * p + 6)
        tokens = np.asarray(out.response_bt[rows])
        d = [[_levenshtein(list(tokens[i, :lengths[6 * p + i]]), list(tokens[j, :lengths[6 * p + j]]))
              for j in range(6)] for i in range(6)]
        chosen = _greedy_loop(d, right[rows], 3)
        filled_total += len(chosen)
        for slot in range(3):
            row = 3 * p + slot
            if slot < len(chosen):
                src = 6 * p + chosen[slot]
                np.testing.assert_array_equal(batch.response_bt[row], out.response_bt[src])
                np.testing.assert_array_equal(batch.mask_bt[row], out.mask_bt[src])
                np.testing.assert_allclose(batch.behavior_logp_bt[row], out.logp_bt[src] * out.mask_bt[src])
                assert float(batch.reward_b[row]) == 1.0
            else:
                np.testing.assert_array_equal(batch.mask_bt[row], 0.0)
    np.testing.assert_allclose(stats["corpus/rows_frac"], filled_total / 9)
    np.testing.assert_allclose(stats["corpus/teacher_accuracy"], right.mean())


def _rows(ctx, keep):
    return jax.jit(lambda params, data, rng: corpus_rows(ctx, _student()[0], params, data, rng, 4, keep))


def test_a_teacher_that_always_writes_the_same_answer_fills_one_row():
    ctx, data = _context(), _data(2)
    rows_of = _rows(ctx, 3)
    batch, stats = rows_of(_models()["right"], data, jax.random.key(0))
    np.testing.assert_array_equal(batch.response_bt[::3, 0], 3)  # the writer's token, first slot of each prompt
    np.testing.assert_array_equal(batch.mask_bt.sum(axis=1) > 0, [True, False, False] * 2)
    assert float(stats["corpus/teacher_accuracy"]) == 1.0 and float(stats["corpus/distinct_right"]) == 1.0
    _, stats = rows_of(_models()["wrong"], data, jax.random.key(0))
    assert float(stats["corpus/rows_frac"]) == 0.0 and float(stats["corpus/solved_frac"]) == 0.0


# ----------------------------------------------------------------------------- quick distillation
def test_one_quick_distillation_step_is_adams_first_step():
    """Adam's first step moves every parameter by −lr · g / (|g| + ε) (bias-corrected moments g, g²)."""
    ctx, data = _context(), _data(2)
    rows, _ = _rows(ctx, 2)(_models()["right"], data, jax.random.key(0))
    graphdef, params = _student()
    grads = jax.jit(jax.grad(lambda t: nll(graphdef, t, rows)))(params)
    distil = jax.jit(quick_distillation, static_argnums=(0, 3))
    theta = distil(graphdef, params, rows, 1, 0.01)
    want = jax.tree.map(lambda p, g: p - 0.01 * g / (jnp.abs(g) + 1e-8), params, grads)
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    loss = jax.jit(lambda t: nll(graphdef, t, rows))
    assert float(loss(distil(graphdef, params, rows, 5, 0.01))) < float(loss(params))


def test_no_right_rows_leave_the_student_unchanged():
    ctx, data = _context(), _data(2)
    rows, _ = _rows(ctx, 2)(_models()["wrong"], data, jax.random.key(0))
    theta = jax.jit(lambda p: quick_distillation(_student()[0], p, rows, 3, 0.01))(_student()[1])
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(_student()[1]), strict=True):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- teacher selection
def _collector(teachers, **kwargs):
    ctx = _context(teachers)
    options = dict(samples=4, keep=2, select_steps=1, probe_steps=4, probe_lr=0.05, probe_samples=16) | kwargs
    collector = with_distilled_corpus(teachers, **options)(collectors.group_samples(ctx), ctx)
    return collector._replace(collect=jax.jit(collector.collect)), ctx


@pytest.mark.parametrize("teachers", [("right", "wrong"), ("wrong", "right")])
def test_the_probe_selects_the_teacher_that_helps_the_student(teachers):
    """The "right" teacher's answers (always token 3, rewarded) raise the distilled copy's sampled
    accuracy; the "wrong" teacher's (token 5) give no row, so its copy is the student itself and its
    gain is exactly 0. The probe's gain for each is the copy's accuracy minus the student's, on the
    second half of the prompts, with the same key for every copy."""
    collector, ctx = _collector(teachers)
    state, data, rng = _state(teachers), _data(8), jax.random.key(3)
    batch, cstate, metrics = collector.collect(collector.init(8), state, data, rng)
    right, wrong = teachers.index("right"), teachers.index("wrong")
    assert int(cstate["teacher"]) == right and int(cstate["probes"]) == 1
    assert float(cstate["gain_sum"][wrong]) == 0.0 and float(cstate["gain_sum"][right]) > 0.0

    @jax.jit
    def gain(student, teacher, data, rng):
        probe_rng = jax.random.split(rng)[0]
        smoke, held = jax.tree.map(lambda x: x[:4], data), jax.tree.map(lambda x: x[4:], data)
        eval_rng = jax.random.fold_in(probe_rng, 2)
        rows, _ = corpus_rows(ctx, _student()[0], teacher, smoke, jax.random.fold_in(probe_rng, right), 4, 2)
        theta = quick_distillation(_student()[0], student, rows, 4, 0.05)
        return sampled_accuracy(ctx, theta, held, eval_rng, 16) - sampled_accuracy(ctx, student, held, eval_rng, 16)

    np.testing.assert_allclose(cstate["gain_sum"][right], gain(_student()[1], _models()["right"], data, rng), rtol=1e-6)
    assert float(metrics["ded/teacher"]) == right and float(metrics["ded/probing"]) == 1.0
    np.testing.assert_array_equal(batch.response_bt[::2, 0], 3)  # the step's corpus comes from the chosen teacher


def test_the_choice_is_frozen_after_the_probe_steps():
    collector, _ = _collector(("wrong", "right"), select_steps=1)
    state = _state(("wrong", "right"))
    _, cstate, _ = collector.collect(collector.init(8), state, _data(8), jax.random.key(3))
    _, again, metrics = collector.collect(cstate, state.replace(step=jnp.int32(1)), _data(8, seed=1), jax.random.key(4))
    for a, b in zip(jax.tree.leaves(cstate), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(metrics["ded/probing"]) == 0.0
    unprobed, _ = _collector(("wrong", "right"), select_steps=0)
    batch, cstate, _ = unprobed.collect(unprobed.init(8), state, _data(8), jax.random.key(3))
    assert int(cstate["teacher"]) == 0 and int(cstate["probes"]) == 0
    assert float(batch.mask_bt.sum()) == 0.0  # the first teacher, "wrong": no right answer


# ----------------------------------------------------------------------------- loss
def test_ded_loss_is_the_token_mean_nll_of_the_corpus_rows():
    alg = algorithms.ded(teachers=("right",))
    logp = jnp.asarray([[-1.0, -2.0, -3.0], [-0.5, 0.0, 0.0], [-4.0, -4.0, -4.0]])
    mask = jnp.asarray([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    batch = Batch(prompt_bp=jnp.ones((3, 2), jnp.int32), prompt_valid_bp=jnp.ones((3, 2), bool),
                  response_bt=jnp.ones((3, 3), jnp.int32), mask_bt=mask, logp_bt=logp)
    out, _ = alg.objective.apply(batch, alg.objective.init())
    np.testing.assert_allclose(total_loss(out), (1.0 + 2.0 + 0.5) / 3.0)
    assert set(out.losses) == {"nll"}


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, message", [
    (dict(teachers=()), r"ded: teachers=\(\) must be distinct names"),
    (dict(teachers=("a", "a")), r"must be distinct names"),
    (dict(teachers=("a",), keep=0), r"ded: keep=0 must be >= 1"),
    (dict(teachers=("a",), samples=2, keep=3), r"ded: keep=3 is more than samples=2"),
    (dict(teachers=("a",), select_steps=-1), r"ded: select_steps=-1 must be >= 0"),
    (dict(teachers=("a",), probe_lr=0.0), r"ded: probe_lr=0.0 must be > 0"),
])
def test_bad_options_get_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        algorithms.ded(**kwargs)
    assert "\n" not in str(err.value)


def test_unknown_teacher_and_one_prompt_get_one_line_errors():
    ctx = _context()
    with pytest.raises(ValueError, match=r"ded: teachers='large' is not a model of this run"):
        with_distilled_corpus(("large",))(collectors.group_samples(ctx), ctx)
    collector, _ = _collector(("right",))
    with pytest.raises(ValueError, match=r"splits the step's prompts in two; .* 1 prompt\(s\) per step"):
        collector.collect(collector.init(1), _state(("right",)), _data(1), jax.random.key(0))


# ----------------------------------------------------------------------------- evaluation
def test_held_out_evaluation_never_sees_the_teachers(tmp_path, monkeypatch):
    """A programs_ded run evaluates the student's own parameters on the task's plain held-out
    prompts: its greedy sampler gets exactly task_batch's test prompts and the parameters it was
    given, never a teacher's."""
    from experiments import programs_ded

    spec = check_evaluation_sees_the_policy_alone(programs_ded.get_config("smoke"), tmp_path, monkeypatch)
    assert set(spec.models) == set(programs_ded.TEACHERS)

"""AMPO (polrl.collectors.multi_guidance, polrl.algorithms.ampo): the rewritten teacher rows and
the comprehension score by hand and against a brute-force forward per token, which teachers are
injected by hand, the wrapper against a loop over group_samples (solved groups bit-identical,
teacher rows' source, version and reward), the shaped loss and its gradient by hand, the mixed
group's advantage, the loss jit == no-jit (the collector's: tests/test_collectors.py's contract), the
one-line errors, and held-out evaluation without teachers. Tiny float64 models, so jitted and eager
values cannot differ by float32 rounding."""
import dataclasses
import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl import algorithms, collectors, sharding
from polrl.algorithms.ampo import shaped_policy_gradient
from polrl.collectors.multi_guidance import (comprehension_rows, comprehension_scores, final_answers, inject,
                                             select_teachers, with_multi_guidance)
from polrl.core import ON_POLICY, TEACHER, Batch, PolicyState
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig
from polrl.tasks import Task
from held_out_testing import check_evaluation_sees_the_policy_alone
from tiny_models import tiny_params

V, MARK, EOS, PAD, G = 8, 6, 7, 0, 2
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16,
                        dtype=jnp.float64, param_dtype=jnp.float64)
SAMPLING = SamplingConfig(max_new_tokens=3, eos_id=EOS, pad_id=PAD)
TEACHERS = ("strong", "weak")


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


@functools.lru_cache(maxsize=None)
def _models():
    with jax.enable_x64(True):
        return {"policy": tiny_params(CFG), "strong": tiny_params(CFG, seed=3), "weak": tiny_params(CFG, seed=2)}


def _first_token_two_to_four(response_bt, mask_bt, answer_ba, answer_valid_ba):
    """Reward 1 for a response whose first token is 2, 3 or 4: random outcomes under the tiny models."""
    del mask_bt, answer_ba, answer_valid_ba
    return ((response_bt[:, 0] >= 2) & (response_bt[:, 0] <= 4)).astype(jnp.float32)


def _context(marker: str | None = "#", max_len: int = 16):
    tokenizer = types.SimpleNamespace(encode=lambda text: {"#": [MARK]}[text])
    task = Task(name="tiny", tokenizer=tokenizer, max_prompt_len=3, max_answer_len=4, train=[], test=[],
                host_reward=None, device_reward=_first_token_two_to_four, answer_marker=marker)
    graphdef = _models()["policy"][0]
    if max_len != CFG.max_len:
        graphdef = tiny_params(dataclasses.replace(CFG, max_len=max_len))[0]
    named = {name: collectors.NamedModel(_models()[name][0]) for name in TEACHERS}
    return collectors.Context(graphdef=graphdef, task=task, sampling=SAMPLING, group_size=G,
                              layout=sharding.layout_from_config(None), models=named)


def _data(prompts: int, seed: int = 0):
    """``prompts`` 3-token prompts (the first one 2 tokens, left-padded); labelled answers
    "x # y EOS" (one scratchpad token, the marker, a one-token final answer)."""
    rng = np.random.default_rng(seed)
    valid = np.ones((prompts, 3), bool)
    valid[0, 0] = False
    answer = np.stack([rng.integers(1, MARK, prompts), np.full(prompts, MARK), rng.integers(1, MARK, prompts),
                       np.full(prompts, EOS)], axis=1)
    return {"prompt_bp": jnp.asarray(np.where(valid, rng.integers(1, MARK, (prompts, 3)), PAD), jnp.int32),
            "prompt_valid_bp": jnp.asarray(valid),
            "answer_ba": jnp.asarray(answer, jnp.int32),
            "answer_valid_ba": jnp.ones((prompts, 4), bool)}


def _state(step: int = 5):
    m = _models()
    return PolicyState(step=jnp.int32(step), rng=None, params=m["policy"][1], opt_state=None,
                       models={name: m[name][1] for name in TEACHERS})


# ----------------------------------------------------------------------------- comprehension rows
def test_final_answers_and_rewritten_rows_by_hand():
    """Label "1 2 # 3 EOS" → f* = [3]. Teacher "4 # 5 EOS" keeps its scratchpad [4], then # and the
    label's 3; "4 5 EOS" (no marker) keeps [4, 5] and gets "# 3"; "5 # 4 # 2" (no EOS) keeps
    everything before its last marker. Without an answer marker f* is the whole label before
    EOS and the rows are f* alone."""
    answer = jnp.asarray([[1, 2, MARK, 3, EOS]])
    valid = jnp.ones((1, 5), bool)
    f, f_valid = final_answers(answer, valid, MARK, EOS)
    np.testing.assert_array_equal(f[0, :1], [3])
    np.testing.assert_array_equal(f_valid, [[True, False, False, False, False]])
    response = jnp.asarray([[4, MARK, 5, EOS, PAD], [4, 5, EOS, PAD, PAD], [5, MARK, 4, MARK, 2]])
    mask = jnp.asarray([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], jnp.float32)
    tokens, scored = comprehension_rows(response, mask, jnp.repeat(f, 3, 0), jnp.repeat(f_valid, 3, 0), MARK, EOS, PAD)
    assert tokens.shape == (3, 10)
    expected = [[4, MARK, 3], [4, 5, MARK, 3], [5, MARK, 4, MARK, 3]]
    for row, want in enumerate(expected):
        np.testing.assert_array_equal(tokens[row, :len(want)], want)
        np.testing.assert_array_equal(tokens[row, len(want):], PAD)
        np.testing.assert_array_equal(scored[row], np.arange(10) == len(want) - 1)
    f, f_valid = final_answers(answer, valid, None, EOS)
    np.testing.assert_array_equal(f[0, :4], [1, 2, MARK, 3])
    tokens, scored = comprehension_rows(response[:1], mask[:1], f, f_valid, None, EOS, PAD)
    np.testing.assert_array_equal(tokens[0, :4], [1, 2, MARK, 3])
    np.testing.assert_array_equal(scored[0], np.arange(10) < 4)


@jax.jit
def _causal_probs(params, seq, valid):
    """Next-token probabilities at every position of right-padded unpadded-prompt sequences."""
    model = nnx.merge(_models()["policy"][0], params)
    hidden, _ = model.forward(seq, jnp.broadcast_to(jnp.arange(seq.shape[1]), seq.shape), valid)
    return jax.nn.softmax(model.logits(hidden), axis=-1)


def _brute_force_probabilities(params, prompt: list[int], tokens: list[int]) -> np.ndarray:
    """π_θ(tokens[j] | prompt, tokens[:j]) for every j: one causal forward of the sequence with its
    prompt unpadded (positions 0, 1, …), right-padded to the model's max_len."""
    seq = prompt + tokens
    probs = np.asarray(_causal_probs(params, jnp.asarray([seq + [PAD] * (CFG.max_len - len(seq))], jnp.int32),
                                     jnp.asarray([[True] * len(seq) + [False] * (CFG.max_len - len(seq))])))[0]
    return probs[len(prompt) - 1 + np.arange(len(tokens)), tokens]


def test_comprehension_score_is_the_mean_probability_of_the_answer_tokens():
    """Two prompts (one left-padded) × two rows each, scored as groups sharing the prompt: the mean
    over the scored tokens of the brute-force probability; a row without scored tokens scores 0."""
    data = _data(2, seed=3)
    prompt = jnp.repeat(data["prompt_bp"], 2, 0)
    valid = jnp.repeat(data["prompt_valid_bp"], 2, 0)
    tokens = jnp.asarray([[4, MARK, 3, 2, PAD], [1, 5, MARK, 3, PAD], [MARK, 3, 1, PAD, PAD], [2, 2, 2, PAD, PAD]])
    scored = jnp.asarray([[0, 0, 1, 1, 0], [0, 0, 0, 1, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0]], bool)
    params = _models()["policy"][1]
    got = jax.jit(comprehension_scores, static_argnums=(0, 6, 7))(
        _models()["policy"][0], params, prompt, valid, tokens, scored, 2, 1.0)
    for row in range(4):
        p = [t for t, ok in zip(np.asarray(prompt[row]).tolist(), np.asarray(valid[row])) if ok]
        seq = np.asarray(tokens[row]).tolist()
        probs = _brute_force_probabilities(params, p, seq)[np.asarray(scored[row])]
        np.testing.assert_allclose(got[row], probs.mean() if probs.size else 0.0, rtol=1e-6, atol=1e-7)  # float32 output


# ----------------------------------------------------------------------------- selection by hand
def test_which_teachers_are_injected_by_hand():
    """Three teachers, groups of 4, k = 2. Group 0 (unsolved): teachers 0 and 2 are right, ranked by
    comprehension .3 > .1 → rows 0, 1 take teachers 2, 0. Group 1 (unsolved): only teacher 1 is right
    → one row. Group 2 is solved → none. Group 3 (unsolved): nobody is right → none with "drop";
    with "force" every teacher ranks, ties keep the pool order (.5, .5, .2 → 0, 1)."""
    comprehension = jnp.asarray([[0.1, 0.9, 0.3], [0.2, 0.1, 0.8], [0.9, 0.9, 0.9], [0.5, 0.5, 0.2]])
    reward = jnp.asarray([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    unsolved = jnp.asarray([True, True, False, True])
    teacher, injected = select_teachers(comprehension, reward, unsolved, 2, 4, "drop")
    np.testing.assert_array_equal(injected, [[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(np.where(injected, teacher, -1), [[2, 0, -1, -1], [1, -1, -1, -1], [-1] * 4, [-1] * 4])
    teacher, injected = select_teachers(comprehension, reward, unsolved, 2, 4, "force")
    np.testing.assert_array_equal(np.where(injected, teacher, -1),
                                  [[1, 2, -1, -1], [2, 0, -1, -1], [-1] * 4, [0, 1, -1, -1]])
    # k larger than the pool and than the group: at most min(k, G, #eligible) rows
    teacher, injected = select_teachers(comprehension, reward, unsolved, 5, 2, "force")
    np.testing.assert_array_equal(np.where(injected, teacher, -1), [[1, 2], [2, 0], [-1, -1], [0, 1]])


# ----------------------------------------------------------------------------- the wrapper
def _draws(ctx, state, data, rng):
    """group_samples' rows, each teacher's sample of every prompt (fold_in(rng, 1 + m), one answer
    per prompt with the teacher's parameters) and, for
    the groups without a positive reward, each teacher's comprehension by brute force on lists."""
    own = jax.jit(collectors.group_samples(ctx).collect)((), state, data, rng)[0]
    one = jax.jit(collectors.group_samples(ctx, group_size=1).collect)  # the teacher's parameters as the policy's
    drawn = [one((), state.replace(params=state.models[name]), data, jax.random.fold_in(rng, 1 + m))[0]
             for m, name in enumerate(TEACHERS)]
    comprehension = {}
    for p in range(data["prompt_bp"].shape[0]):
        if (np.asarray(own.reward_b)[p * G:(p + 1) * G] > 0).any():
            continue
        prompt = [t for t, ok in zip(np.asarray(data["prompt_bp"][p]).tolist(), np.asarray(data["prompt_valid_bp"][p])) if ok]
        final = np.asarray(data["answer_ba"])[p, 2:3].tolist()  # labels "x # y EOS"
        for m, teacher in enumerate(drawn):
            response = np.asarray(teacher.response_bt[p])[np.asarray(teacher.mask_bt[p]) > 0].tolist()
            response = response[:response.index(EOS)] if EOS in response else response
            reasoning = response[:len(response) - 1 - response[::-1].index(MARK)] if MARK in response else response
            seq = reasoning + [MARK] + final
            comprehension[p, m] = _brute_force_probabilities(state.params, prompt, seq)[len(reasoning) + 1:].mean()
    return own, drawn, comprehension


def _reference(own, drawn, comprehension, k):
    """The wrapper spelled out (wrong teachers dropped): the right teachers ranked by a Python sort,
    the first rows of each group without a positive reward replaced."""
    rows = {f: np.asarray(getattr(own, f)).copy() for f in ("response_bt", "mask_bt", "behavior_logp_bt", "reward_b",
                                                             "version_b")}
    rows["source_b"] = np.full(own.batch_size, ON_POLICY)
    injected, right = 0, []
    for p in sorted({p for p, _ in comprehension}):
        ranked = [(-comprehension[p, m], m) for m, teacher in enumerate(drawn) if float(teacher.reward_b[p]) >= 1.0]
        right.append(sum(float(t.reward_b[p]) >= 1.0 for t in drawn))
        for i, (_, m) in enumerate(sorted(ranked)[:min(k, G)]):
            row = p * G + i
            for f in ("response_bt", "mask_bt", "behavior_logp_bt"):
                rows[f][row] = np.asarray(getattr(drawn[m], f))[p]
            rows["reward_b"][row] = max(float(drawn[m].reward_b[p]), 1.0)
            rows["source_b"][row], rows["version_b"][row] = TEACHER, 0
            injected += 1
    return rows, injected, right


def test_wrapper_matches_a_loop_over_group_samples():
    """Random outcomes: solved groups are group_samples' rows bit for bit; unsolved groups' first rows
    are the top-ranked right teachers' samples (TEACHER, version 0, their log-probs and rewards).
    ("force" differs only in ``select_teachers`` and the reward max(r, 1): tested by hand below.)"""
    ctx = _context()
    data, state, rng = _data(8, seed=1), _state(), jax.random.key(3)
    own, drawn, comprehension = _draws(ctx, state, data, rng)
    rows, injected, right = _reference(own, drawn, comprehension, 2)
    collector = with_multi_guidance(TEACHERS, k=2)(collectors.group_samples(ctx), ctx)
    batch, _, metrics = jax.jit(collector.collect)((), state, data, rng)
    assert set(right) == {0, 1, 2}, f"this draw should have unsolved groups with 0, 1 and 2 right teachers: {right}"
    for f in ("response_bt", "mask_bt", "behavior_logp_bt", "reward_b", "version_b", "source_b"):
        np.testing.assert_array_equal(np.asarray(getattr(batch, f)), rows[f], err_msg=f)
    np.testing.assert_array_equal(batch.prompt_bp, own.prompt_bp)
    np.testing.assert_array_equal(batch.group_b, own.group_b)
    unsolved = (np.asarray(own.reward_b).reshape(-1, G) <= 0).all(axis=1)
    assert 0 < unsolved.sum() < len(unsolved), "this draw should have solved and unsolved groups"
    assert float(metrics["guidance/unsolved_frac"]) == pytest.approx(unsolved.mean())
    assert float(metrics["guidance/teacher_rows_frac"]) == pytest.approx(injected / own.batch_size)
    assert float(metrics["accuracy"]) == pytest.approx(float((np.asarray(own.reward_b) >= 1).mean()))
    shares = sum(float(metrics[f"guidance/{name}_share"]) for name in TEACHERS)
    assert shares == pytest.approx(1.0)


def test_injected_rows_by_hand():
    """Two groups of 2, two teachers (rows p·2 + m). Group 0 takes teacher 1's answer (reward 0, a wrong
    answer forced: reward 1) in row 0; group 1 is left as it is. Injected rows: the teacher's tokens,
    mask and log-probs, TEACHER, version 0, aux 0."""
    own = Batch(prompt_bp=np.ones((4, 1), np.int32), prompt_valid_bp=np.ones((4, 1), bool),
                response_bt=np.arange(8, dtype=np.int32).reshape(4, 2), mask_bt=np.ones((4, 2), np.float32),
                reward_b=np.zeros(4, np.float32), behavior_logp_bt=np.full((4, 2), -1.0, np.float32),
                source_b=np.full(4, ON_POLICY, np.int32), version_b=np.full(4, 5, np.int32), group_b=np.arange(4) // 2,
                aux={"x_b": np.ones(4, np.float32)}, group_size=2)
    teacher = own.replace(response_bt=-own.response_bt - 1, mask_bt=np.array([[1, 0]] * 4, np.float32),
                          behavior_logp_bt=np.full((4, 2), -2.0, np.float32), reward_b=np.array([1.0, 0.0, 1.0, 1.0], np.float32))
    out = inject(own, teacher, jnp.asarray([[1, 0], [0, 0]]), jnp.asarray([[True, False], [False, False]]), 2)
    np.testing.assert_array_equal(out.response_bt, [[-3, -4], [2, 3], [4, 5], [6, 7]])
    np.testing.assert_array_equal(out.mask_bt, [[1, 0], [1, 1], [1, 1], [1, 1]])
    np.testing.assert_array_equal(out.behavior_logp_bt[:, 0], [-2, -1, -1, -1])
    np.testing.assert_array_equal(out.reward_b, [1, 0, 0, 0])
    np.testing.assert_array_equal(out.source_b, [TEACHER, ON_POLICY, ON_POLICY, ON_POLICY])
    np.testing.assert_array_equal(out.version_b, [0, 5, 5, 5])
    np.testing.assert_array_equal(out.aux["x_b"], [0, 1, 1, 1])


# ----------------------------------------------------------------------------- loss and advantage
def _loss_batch(**fields):
    logp = np.log(np.array([[0.5, 0.9], [0.2, 0.4], [0.05, 0.6], [0.3, 0.3]]))
    return Batch(prompt_bp=np.ones((4, 1), np.int32), prompt_valid_bp=np.ones((4, 1), bool),
                 response_bt=np.ones((4, 2), np.int32), mask_bt=np.ones((4, 2)), logp_bt=jnp.asarray(logp),
                 adv_bt=jnp.asarray(np.array([[1.0], [-0.5], [0.75], [-2.0]]) * np.ones((4, 2))),
                 source_b=np.array([ON_POLICY, ON_POLICY, TEACHER, TEACHER], np.int32), group_size=4, **fields)


def test_shaped_loss_and_gradient_by_hand():
    """Teacher rows: L = −A π/(π + 0.1), ∂L/∂log π = −A · 0.1 π/(π + 0.1)²; policy rows at π_old = π:
    L = −A (ρ = 1), ∂L/∂log π = −A. With π_old given: row 0 (A = 1) ρ = .5/.4 = 1.25 clips at 1.2 → −1.2
    (no gradient) and ρ = 1 → −1; row 1 (A = −.5) ρ = .2/.01 = 20 > c = 10 → dual clip −c A = 5, and
    ρ = .4/.5 = .8 → max(.4, .5 · .8 = .4) = .4."""
    transform = shaped_policy_gradient()
    loss = lambda logp, batch: transform.apply(batch.replace(logp_bt=logp), ())[0].terms["pg"].sum()
    batch = _loss_batch()
    p, a = np.exp(np.asarray(batch.logp_bt)), np.asarray(batch.adv_bt)
    out, _ = transform.apply(batch, ())
    shaped = p / (p + 0.1)
    np.testing.assert_allclose(out.terms["pg"], np.where([[0], [0], [1], [1]], -a * shaped, -a), rtol=1e-12)
    grad = jax.grad(loss)(batch.logp_bt, batch)
    np.testing.assert_allclose(grad, np.where([[0], [0], [1], [1]], -a * 0.1 * p / (p + 0.1) ** 2, -a), rtol=1e-12)
    np.testing.assert_allclose(out.metrics["teacher_prob_mean"], np.mean([0.05, 0.6, 0.3, 0.3]), rtol=1e-12)
    old = np.log(np.array([[0.4, 0.9], [0.01, 0.5], [0.5, 0.5], [0.5, 0.5]]))
    out, _ = transform.apply(_loss_batch(old_logp_bt=jnp.asarray(old)), ())
    np.testing.assert_allclose(out.terms["pg"][:2], [[-1.2, -1.0], [5.0, 0.4]], rtol=1e-12)
    np.testing.assert_allclose(out.terms["pg"][2:], (-a * shaped)[2:], rtol=1e-12)  # π_old does not enter
    jitted, _ = jax.jit(lambda b: transform.apply(b, ()))(_loss_batch(old_logp_bt=jnp.asarray(old)))
    np.testing.assert_allclose(jitted.terms["pg"], out.terms["pg"], rtol=1e-12)


def test_ampo_advantage_is_reward_minus_the_mixed_group_mean():
    """Group [teacher r=1, own 0, own 0, own 0] and a solved group [1, 0, 1, 1]: A = r − mean, no std,
    teacher rows included (the authors' grpo with norm_adv_by_std_in_grpo=False)."""
    alg = algorithms.ampo(teachers=TEACHERS, aggregation="token_mean")
    reward = np.array([1.0, 0, 0, 0, 1, 0, 1, 1])
    batch = Batch(prompt_bp=np.ones((8, 1), np.int32), prompt_valid_bp=np.ones((8, 1), bool),
                  response_bt=np.ones((8, 2), np.int32), mask_bt=np.ones((8, 2)), reward_b=reward,
                  group_b=np.arange(8) // 4, source_b=np.array([TEACHER] + [ON_POLICY] * 7, np.int32), group_size=4)
    out, _ = alg.prepare.apply(batch, alg.prepare.init(), step=0)
    np.testing.assert_allclose(out.adv_bt[:, 0], reward - np.repeat([0.25, 0.75], 4), rtol=1e-12)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, message", [
    (dict(teachers=()), r"teachers=\(\) must be distinct names"),
    (dict(teachers=("a", "a")), r"must be distinct names of frozen models"),
    (dict(teachers=("a",), k=0), r"k=0 must be >= 1"),
    (dict(teachers=("a",), wrong_teachers="keep"), r"wrong_teachers='keep'; use one of \('drop', 'force'\)"),
])
def test_bad_arguments_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        with_multi_guidance(**kwargs)


def test_noun_errors():
    with pytest.raises(ValueError, match=r"needs max_len, the constant normalizer"):
        algorithms.ampo(teachers=TEACHERS)
    with pytest.raises(ValueError, match=r"gamma=0.0 must be > 0"):
        algorithms.ampo(teachers=TEACHERS, gamma=0.0, max_len=3)
    with pytest.raises(TypeError, match=r"ampo\(\) got unexpected keyword argument\(s\) \['kl_coef'\]"):
        algorithms.ampo(teachers=TEACHERS, max_len=3, kl_coef=0.1)


def test_unknown_teacher_host_inner_and_short_model_are_errors():
    ctx = _context()
    with pytest.raises(ValueError, match=r"ampo: teachers='nobody' is not a model of this run; add it to config.models"):
        with_multi_guidance(("nobody",))(collectors.group_samples(ctx), ctx)
    with pytest.raises(ValueError, match="with_multi_guidance: the inner collector runs on the host"):
        with_multi_guidance(TEACHERS)(collectors.group_samples(ctx)._replace(host=True), ctx)
    short = _context(max_len=9)  # 3 prompt + 3 response + 4 answer positions = 10
    collector = with_multi_guidance(TEACHERS)(collectors.group_samples(short), short)
    state = _state().replace(params=tiny_params(dataclasses.replace(CFG, max_len=9))[1])
    with pytest.raises(ValueError, match=r"needs 10 positions .* more than model.max_len=9; raise model.max_len to 10"):
        jax.eval_shape(collector.collect, (), state, _data(2), jax.random.key(0))


# ----------------------------------------------------------------------------- evaluation
def test_held_out_evaluation_never_sees_the_teachers(tmp_path, monkeypatch):
    """A chain_ampo run evaluates the policy's own parameters on the task's plain held-out prompts:
    its greedy sampler gets exactly task_batch's test prompts and the parameters it was given, never
    a teacher's."""
    from experiments import chain_ampo

    spec = check_evaluation_sees_the_policy_alone(chain_ampo.get_config("smoke"), tmp_path, monkeypatch)
    assert set(spec.models) == set(chain_ampo.TEACHERS)  # the run holds both teachers

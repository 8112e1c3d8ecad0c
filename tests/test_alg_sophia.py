"""SOPHIA (polrl.collectors.semi_off_policy, polrl.algorithms.sophia): the reasoning prefix and the
joined rows by hand, the wrapper against a brute-force loop (the teacher's samples cut at their
last marker, the policy's answers after them, the verifier on each joined row and the propagated
reward as the mean of each reasoning's rows), the advantage and the loss by hand in float64,
jit == no-jit, the one-line errors, and held-out evaluation without the teacher. Tiny float64
models, so jitted and eager values cannot differ by float32 rounding."""
import dataclasses
import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms, collectors, sharding
from polrl.algorithms.sophia import propagated_advantage
from polrl.collectors.semi_off_policy import joined_rows, reasoning_mask, with_borrowed_reasoning
from polrl.core import ON_POLICY, TEACHER, Batch, PolicyState
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig, sample
from polrl.tasks import Task
from held_out_testing import check_evaluation_sees_the_policy_alone
from tiny_models import tiny_params

V, MARK, EOS, PAD, G, K, N = 8, 6, 7, 0, 2, 2, 3
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16,
                        dtype=jnp.float64, param_dtype=jnp.float64)
SAMPLING = SamplingConfig(max_new_tokens=4, eos_id=EOS, pad_id=PAD)
A = 3  # task.max_answer_len: the policy's answer budget


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


@functools.lru_cache(maxsize=None)
def _models():
    with jax.enable_x64(True):
        return {"policy": tiny_params(CFG), "teacher": tiny_params(CFG, seed=3)}


def _last_token_two_to_four(response_bt, mask_bt, answer_ba, answer_valid_ba):
    """Reward 1 when the row's last valid token is 2, 3 or 4: depends on the policy's answer."""
    del answer_ba, answer_valid_ba
    last = jnp.take_along_axis(response_bt, jnp.maximum(mask_bt.sum(axis=1).astype(jnp.int32) - 1, 0)[:, None], axis=1)
    return ((last[:, 0] >= 2) & (last[:, 0] <= 4)).astype(jnp.float32)


def _context(marker: str | None = "#"):
    tokenizer = types.SimpleNamespace(encode=lambda text: {"#": [MARK]}[text])
    task = Task(name="tiny", tokenizer=tokenizer, max_prompt_len=3, max_answer_len=A, train=[], test=[],
                host_reward=None, device_reward=_last_token_two_to_four, answer_marker=marker)
    return collectors.Context(graphdef=_models()["policy"][0], task=task, sampling=SAMPLING, group_size=G,
                              layout=sharding.layout_from_config(None),
                              models={"teacher": collectors.NamedModel(_models()["teacher"][0])})


def _data(prompts: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    valid = np.ones((prompts, 3), bool)
    valid[0, 0] = False
    return {"prompt_bp": jnp.asarray(np.where(valid, rng.integers(1, MARK, (prompts, 3)), PAD), jnp.int32),
            "prompt_valid_bp": jnp.asarray(valid),
            "answer_ba": jnp.asarray(rng.integers(1, MARK, (prompts, A)), jnp.int32),
            "answer_valid_ba": jnp.ones((prompts, A), bool)}


def _state(step: int = 5):
    m = _models()
    return PolicyState(step=jnp.int32(step), rng=None, params=m["policy"][1], opt_state=None,
                       models={"teacher": m["teacher"][1]})


# ----------------------------------------------------------------------------- rows by hand
def test_reasoning_prefix_and_joined_rows_by_hand():
    response = jnp.asarray([[1, MARK, 2, EOS],      # reasoning "1 #"
                            [MARK, 3, MARK, 4],     # the last marker: "# 3 #"
                            [2, 3, EOS, MARK],      # a marker after EOS does not count: "2 3"
                            [5, 5, 5, 5]])          # no EOS, no marker: all four
    mask = jnp.asarray([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]], jnp.float32)
    kept = reasoning_mask(response, mask, MARK, EOS)
    np.testing.assert_array_equal(kept, [[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    logp = -jnp.arange(1.0, 17.0).reshape(4, 4)
    answer = jnp.asarray([[4, EOS], [2, 2], [3, EOS], [EOS, PAD]])
    answer_mask = jnp.asarray([[1, 1], [1, 1], [1, 1], [1, 0]], jnp.float32)
    answer_logp = -0.5 * jnp.ones((4, 2))
    tokens, m, lp, borrowed = joined_rows(response, kept, logp, answer, answer_mask, answer_logp * answer_mask, PAD)
    np.testing.assert_array_equal(tokens, [[1, MARK, 4, EOS, PAD, PAD], [MARK, 3, MARK, 2, 2, PAD],
                                           [2, 3, 3, EOS, PAD, PAD], [5, 5, 5, 5, EOS, PAD]])
    np.testing.assert_array_equal(m, [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]])
    np.testing.assert_array_equal(borrowed, [[1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0],
                                             [1, 1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(lp, [[-1, -2, -.5, -.5, 0, 0], [-5, -6, -7, -.5, -.5, 0], [-9, -10, -.5, -.5, 0, 0],
                                       [-13, -14, -15, -16, -.5, 0]])


def _brute_force(ctx, state, data, rng):
    """The semi-off-policy rows by loops: the teacher's K samples per prompt, each cut by hand at
    its last marker before EOS, left-padded after the prompt, the policy's N answers after it, the
    joined rows, the verifier on each and the mean of each reasoning's N rewards."""
    t_graph, t_params = _models()["teacher"]
    draw = lambda graph, config, n: jax.jit(lambda *a: sample(graph, *a, config, n))
    drawn = draw(t_graph, SAMPLING, K)(t_params, data["prompt_bp"], data["prompt_valid_bp"], jax.random.fold_in(rng, 1))
    prompts, valids, reasons = [], [], []
    for i in range(drawn.response_bt.shape[0]):
        toks = [int(x) for x, v in zip(drawn.response_bt[i], drawn.mask_bt[i]) if v]
        toks = toks[:toks.index(EOS)] if EOS in toks else toks
        if MARK in toks:
            toks = toks[:len(toks) - toks[::-1].index(MARK)]
        reasons.append(toks)
        p = i // K
        own = [int(x) for x, v in zip(data["prompt_bp"][p], data["prompt_valid_bp"][p]) if v] + toks
        width = data["prompt_bp"].shape[1] + SAMPLING.max_new_tokens
        prompts.append([PAD] * (width - len(own)) + own)
        valids.append([False] * (width - len(own)) + [True] * len(own))
    answers = draw(ctx.graphdef, dataclasses.replace(SAMPLING, max_new_tokens=A), N)(
        state.params, jnp.asarray(prompts, jnp.int32), jnp.asarray(valids), jax.random.fold_in(rng, 2))
    rows = []
    for j in range(answers.response_bt.shape[0]):
        r = reasons[j // N]
        a = [int(x) for x, v in zip(answers.response_bt[j], answers.mask_bt[j]) if v]
        tokens = r + a
        reward = 1.0 if 2 <= tokens[-1] <= 4 else 0.0
        logp = [float(drawn.logp_bt[j // N][i]) for i in range(len(r))] + \
               [float(answers.logp_bt[j][i]) for i in range(len(a))]
        rows.append((tokens, len(r), reward, logp))
    return rows


def test_wrapper_matches_a_brute_force_loop():
    """Random outcomes: each group is group_samples' G rows then K·N semi-off-policy rows equal to
    the loop's (tokens, teacher/policy log-probs, borrowed prefix, reward, and the propagated
    reward = the mean reward of the reasoning's N rows); TEACHER, version 0."""
    ctx = _context()
    data, state, rng = _data(3, seed=1), _state(), jax.random.key(4)
    own = jax.jit(collectors.group_samples(ctx).collect)((), state, data, rng)[0]
    batch, _, metrics = jax.jit(with_borrowed_reasoning("teacher", K, N)(collectors.group_samples(ctx), ctx).collect)(
        (), state, data, rng)
    rows = _brute_force(ctx, state, data, rng)
    width = SAMPLING.max_new_tokens + A
    assert batch.group_size == G + K * N and batch.response_bt.shape == (3 * (G + K * N), width)
    rewards = np.array([r[2] for r in rows])
    assert 0 < rewards.sum() < len(rewards), "this draw should mix right and wrong answers"
    spread = [np.ptp(rewards[i:i + N]) for i in range(0, len(rows), N)]
    assert max(spread) > 0, "some reasoning should have right and wrong continuations"
    for p in range(3):
        base = p * (G + K * N)
        for g in range(G):
            np.testing.assert_array_equal(batch.response_bt[base + g, :SAMPLING.max_new_tokens], own.response_bt[p * G + g])
            assert int(batch.source_b[base + g]) == ON_POLICY and int(batch.version_b[base + g]) == 5
            assert float(batch.aux["reasoning_reward_b"][base + g]) == 0.0
            assert float(batch.reward_b[base + g]) == float(own.reward_b[p * G + g])
        for j in range(K * N):
            row, (tokens, r_len, reward, logp) = base + G + j, rows[p * K * N + j]
            length = len(tokens)
            np.testing.assert_array_equal(batch.response_bt[row, :length], tokens)
            np.testing.assert_array_equal(batch.mask_bt[row], [1.0] * length + [0.0] * (width - length))
            np.testing.assert_array_equal(batch.aux["borrowed_bt"][row], [1.0] * r_len + [0.0] * (width - r_len))
            np.testing.assert_array_equal(batch.behavior_logp_bt[row, :length], np.asarray(logp, np.float32))
            assert float(batch.reward_b[row]) == reward
            first = p * K * N + (j // N) * N
            assert float(batch.aux["reasoning_reward_b"][row]) == pytest.approx(rewards[first:first + N].mean(), abs=1e-7)
            assert int(batch.source_b[row]) == TEACHER and int(batch.version_b[row]) == 0
        np.testing.assert_array_equal(batch.group_b[base:base + G + K * N], p)
    assert float(metrics["accuracy"]) == pytest.approx(float((np.asarray(own.reward_b) >= 1).mean()))
    assert float(metrics["teacher_accuracy"]) == pytest.approx(rewards.mean())
    assert float(metrics["sophia/reasoning_reward_mean"]) == pytest.approx(rewards.mean())


# ----------------------------------------------------------------------------- loss by hand
def _hand_batch():
    """One group: an own row (r = 1) and two semi rows of one reasoning (r = 1, 0 → R(r) = 1/2);
    the semi rows' first two tokens are the teacher's."""
    mask = np.array([[1, 1, 0], [1, 1, 1], [1, 1, 1]], np.float64)
    borrowed = np.array([[0, 0, 0], [1, 1, 0], [1, 1, 0]], np.float64)
    behavior = np.array([[-1.0, -0.5, 0], [-0.2, -0.1, -0.7], [-0.2, -0.1, -0.4]])
    old = np.array([[-1.0, -0.5, 0], [-0.9, -1.5, -0.7], [-0.9, -1.5, -0.4]])  # π_old/μ = e^-0.7, e^-1.4 on borrowed
    return Batch(prompt_bp=jnp.ones((3, 1), jnp.int32), prompt_valid_bp=jnp.ones((3, 1), bool),
                 response_bt=jnp.ones((3, 3), jnp.int32), mask_bt=jnp.asarray(mask),
                 reward_b=jnp.asarray([1.0, 1.0, 0.0]), group_b=jnp.zeros(3, jnp.int32),
                 behavior_logp_bt=jnp.asarray(behavior), old_logp_bt=jnp.asarray(old),
                 source_b=jnp.asarray([ON_POLICY, TEACHER, TEACHER], jnp.int32),
                 aux={"borrowed_bt": jnp.asarray(borrowed), "reasoning_reward_b": jnp.asarray([0.0, 0.5, 0.5])},
                 group_size=3), mask, borrowed, behavior, old


def test_advantage_is_the_propagated_reward_minus_the_group_mean():
    batch, mask, borrowed, *_ = _hand_batch()
    out, _ = propagated_advantage().apply(batch, ())
    mean = 2.0 / 3.0
    expected = np.array([[1 - mean, 1 - mean, 0], [0.5 - mean, 0.5 - mean, 1 - mean], [0.5 - mean, 0.5 - mean, 0 - mean]])
    np.testing.assert_allclose(out.adv_bt, expected, rtol=1e-12)


def test_loss_and_gradient_by_hand():
    """Prepare then objective of the noun at one update per batch (ρ = 1 in value): the loss is the
    token mean of −min(π_old/μ, C)·A, its gradient in log π_θ is that per-token weight / #tokens."""
    batch, mask, borrowed, behavior, old = _hand_batch()
    alg = algorithms.sophia(teacher="teacher", learning_rate=1.0)
    prepared, _ = alg.prepare.apply(batch, alg.prepare.init())
    mean = 2.0 / 3.0
    reward_bt = np.where(borrowed > 0, np.array([0, 0.5, 0.5])[:, None], np.array([1.0, 1.0, 0.0])[:, None])
    adv = (reward_bt - mean) * mask
    weight = np.minimum(np.exp(old - behavior), 2.0)
    weighted = adv * weight
    np.testing.assert_allclose(prepared.adv_bt, weighted, rtol=1e-12)

    def loss(logp):
        out, _ = alg.objective.apply(prepared.replace(logp_bt=logp, entropy_bt=jnp.zeros_like(logp)),
                                     alg.objective.init())
        return sum(out.losses.values())

    value, grad = jax.value_and_grad(loss)(jnp.asarray(old))
    np.testing.assert_allclose(value, -(weighted * mask).sum() / mask.sum(), rtol=1e-12)
    np.testing.assert_allclose(grad, -weighted * mask / mask.sum(), rtol=1e-12, atol=1e-15)
    jitted = jax.jit(jax.value_and_grad(loss))(jnp.asarray(old))
    np.testing.assert_allclose(jitted[0], value, rtol=1e-12)
    np.testing.assert_allclose(jitted[1], grad, rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, message", [
    (dict(teacher="teacher", max_weight=1.0), r"sophia: max_weight=1.0 must be > 1"),
    (dict(teacher="teacher", reasonings=0), r"with_borrowed_reasoning: reasonings=0 and continuations=2 must be >= 1"),
    (dict(teacher="", continuations=1), r"with_borrowed_reasoning: teacher='' must be the name of a frozen model"),
    (dict(teacher="teacher", correction="token_mask"), r"sophia"),
])
def test_bad_arguments_are_one_line_errors(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        algorithms.sophia(**kwargs)


def test_unknown_teacher_markerless_task_host_inner_and_short_model_are_errors():
    ctx = _context()
    with pytest.raises(ValueError, match=r"sophia: teacher='nobody' is not a model of this run; add it to config.models"):
        with_borrowed_reasoning("nobody")(collectors.group_samples(ctx), ctx)
    with pytest.raises(ValueError, match="with_borrowed_reasoning: the inner collector runs on the host"):
        with_borrowed_reasoning("teacher")(collectors.group_samples(ctx)._replace(host=True), ctx)
    plain = _context(marker=None)
    with pytest.raises(ValueError, match=r"task 'tiny' needs an answer marker"):
        with_borrowed_reasoning("teacher")(collectors.group_samples(plain), plain)
    short = dataclasses.replace(CFG, max_len=9)  # 3 prompt + 4 reasoning + 3 answer positions = 10
    graphdef, params = tiny_params(short)
    short_ctx = dataclasses.replace(ctx, graphdef=graphdef)
    collector = with_borrowed_reasoning("teacher")(collectors.group_samples(short_ctx), short_ctx)
    state = _state().replace(params=params)
    with pytest.raises(ValueError, match=r"needs 10 positions .* more than model.max_len=9; raise model.max_len to 10"):
        jax.eval_shape(collector.collect, (), state, _data(2), jax.random.key(0))


# ----------------------------------------------------------------------------- evaluation
def test_held_out_evaluation_never_sees_the_teacher(tmp_path, monkeypatch):
    """A chain_sophia run evaluates the policy's own parameters on the task's plain held-out
    prompts: its greedy sampler gets exactly task_batch's test prompts and the parameters it was
    given, never the teacher's, and no reasoning of it."""
    from experiments import chain_sophia

    spec = check_evaluation_sees_the_policy_alone(chain_sophia.get_config("smoke"), tmp_path, monkeypatch)
    assert set(spec.models) == {"large"}

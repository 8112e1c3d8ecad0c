"""SPARK (polrl.algorithms.spark, polrl.collectors.judge_rows): the judge rows spelled out by hand
from a step's groups, the wrapper's layout against its example, the loss's value and gradient by
hand, the policy-only zero-variance filter, the self-judge score against a direct forward of the
compact text on a tiny model, and one update of the noun."""
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl import algorithms
from polrl.algorithms.spark import drop_zero_variance_policy_groups, spark
from polrl.collectors import Context
from polrl.collectors.judge_rows import (
    JUDGE_KIND, PAIRWISE, POINTWISE, REFLECTION, judge_rows, judge_width, self_judge_scores, with_judge_rows,
    with_self_judge)
from polrl.core import EXPERT, ON_POLICY, Batch, Collector, PolicyState, total_loss
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig
from polrl.tasks.rewards import token_exact_match
from polrl.tasks.tokenizer import CharTokenizer
from alg_testing import apply, hand_batch, train_once
from tiny_models import tiny_params

TOK = CharTokenizer()
P_LEN, T = 6, 3  # "<bos>1+2=" left-padded to 6; responses of 3 tokens


def left(text: str, width: int, bos: bool = True):
    ids = TOK.encode(text, bos=bos)
    return [0] * (width - len(ids)) + ids, [False] * (width - len(ids)) + [True] * len(ids)


def right(text: str, width: int = T):
    ids = TOK.encode(text, eos=True)
    return ids + [0] * (width - len(ids)), [1.0] * len(ids) + [0.0] * (width - len(ids))


def step_data():
    """Two prompts, "1+2=" (answer 3) and "2+2=" (answer 4)."""
    prompts = [left("1+2=", P_LEN), left("2+2=", P_LEN)]
    answers = [right("3"), right("4")]
    return {"prompt_bp": jnp.asarray([p for p, _ in prompts], jnp.int32),
            "prompt_valid_bp": jnp.asarray([v for _, v in prompts]),
            "answer_ba": jnp.asarray([a for a, _ in answers], jnp.int32),
            "answer_valid_ba": jnp.asarray([m for _, m in answers]) > 0}


def step_groups(data):
    """Groups of G = 3: prompt 0 answered "3", "4", "3" (right, wrong, right); prompt 1 answered
    "5", "6", "7" (all wrong)."""
    texts = ["3", "4", "3", "5", "6", "7"]
    rows = [right(s) for s in texts]
    return Batch(prompt_bp=jnp.repeat(data["prompt_bp"], 3, axis=0),
                 prompt_valid_bp=jnp.repeat(data["prompt_valid_bp"], 3, axis=0),
                 response_bt=jnp.asarray([r for r, _ in rows], jnp.int32),
                 mask_bt=jnp.asarray([m for _, m in rows], jnp.float32),
                 reward_b=jnp.asarray([1.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
                 group_b=jnp.asarray([0, 0, 0, 1, 1, 1], jnp.int32),
                 behavior_logp_bt=jnp.zeros((6, T)), version_b=jnp.zeros((6,), jnp.int32), group_size=3)


def text_of(tokens, valid):
    return TOK.decode(np.asarray(tokens)[np.asarray(valid)])


# choices: prompt 0 takes its pairwise coin (0.1 < 0.7), the wrong answer first (order 0.9 ≥ ½),
# the right sample ranked first is row 2 and the wrong one row 1; prompt 1 (no right sample) is
# pointwise on its top-ranked wrong sample, row 2 ("7")
CHOICES = {"pair_u": jnp.asarray([0.1, 0.1]), "side_u": jnp.asarray([0.2, 0.2]), "order_u": jnp.asarray([0.9, 0.9]),
           "rank_pg": jnp.asarray([[0.1, 0.5, 0.9], [0.3, 0.2, 0.8]])}


def test_judge_rows_by_hand():
    data = step_data()
    fix = (data["answer_ba"], data["answer_valid_ba"].astype(jnp.float32))
    rows, metrics = judge_rows(TOK, data, step_groups(data), CHOICES, pairwise_prob=0.7, fix=fix, pad_id=0)
    width = judge_width(P_LEN, T)
    assert width == 6 + 2 * 3 + 8 and rows.prompt_bp.shape == (4, width) and rows.response_bt.shape == (4, T)
    prompts = [text_of(t, v) for t, v in zip(rows.prompt_bp, rows.prompt_valid_bp)]
    assert prompts == ["1+2= a:4 b:3 ?", "2+2=7 ok?", "1+2=4 fix:", "2+2=7 fix:"]
    assert [TOK.decode(r) for r in np.asarray(rows.response_bt)] == ["b", "n", "3", "4"]
    np.testing.assert_array_equal(rows.mask_bt, [[1, 1, 0], [1, 1, 0], [1, 1, 0], [1, 1, 0]])
    np.testing.assert_array_equal(rows.aux[JUDGE_KIND], [PAIRWISE, POINTWISE, REFLECTION, REFLECTION])
    np.testing.assert_allclose([metrics["judge_pairwise_frac"], metrics["judge_yes_frac"], metrics["reflection_frac"]],
                               [0.5, 0.0, 1.0])


def test_judge_rows_pointwise_sides_and_reflection_mask():
    data = step_data()
    groups = step_groups(data)
    groups = groups.replace(reward_b=jnp.asarray([1.0, 0.0, 1.0, 1.0, 1.0, 1.0]))  # prompt 1 all "right"
    fix = (data["answer_ba"], data["answer_valid_ba"].astype(jnp.float32))
    # prompt 0's coin says pointwise (0.8 ≥ 0.7) and its side coin the right side (0.2 < ½): row 2
    choices = {**CHOICES, "pair_u": jnp.asarray([0.8, 0.8])}
    rows, metrics = judge_rows(TOK, data, groups, choices, pairwise_prob=0.7, fix=fix, pad_id=0)
    prompts = [text_of(t, v) for t, v in zip(rows.prompt_bp, rows.prompt_valid_bp)]
    assert prompts[:2] == ["1+2=3 ok?", "2+2=7 ok?"]
    assert [TOK.decode(r) for r in np.asarray(rows.response_bt)[:2]] == ["y", "y"]
    np.testing.assert_array_equal(rows.mask_bt[3], [0, 0, 0])  # prompt 1 has no wrong sample: no reflection
    np.testing.assert_allclose([metrics["judge_pairwise_frac"], metrics["judge_yes_frac"], metrics["reflection_frac"]],
                               [0.0, 1.0, 0.5])
    # the other side: prompt 0's wrong sample
    rows, _ = judge_rows(TOK, data, groups, {**choices, "side_u": jnp.asarray([0.7, 0.7])}, pairwise_prob=0.7,
                         fix=None, pad_id=0)
    assert rows.batch_size == 2 and text_of(rows.prompt_bp[0], rows.prompt_valid_bp[0]) == "1+2=4 ok?"


def fake_context(group_size=3):
    task = types.SimpleNamespace(name="toy", tokenizer=TOK, max_prompt_len=P_LEN, max_answer_len=T,
                                 device_reward=token_exact_match)
    return Context(graphdef=None, task=task, sampling=SamplingConfig(max_new_tokens=T, eos_id=TOK.eos_id),
                   group_size=group_size, layout=None)


def fixed_collector(batch: Batch) -> Collector:
    example = lambda prompts: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch)
    return Collector(init=lambda prompts: (), collect=lambda c, s, d, r: (batch, c, {"accuracy": batch.reward_b.mean()}),
                     example=example)


def test_with_judge_rows_layout_matches_example_and_keeps_policy_rows():
    data = step_data()
    groups = step_groups(data)
    collector = with_judge_rows()(fixed_collector(groups), fake_context())
    state = PolicyState(step=jnp.int32(5), rng=None, params=None, opt_state=None)
    batch, _, metrics = collector.collect((), state, data, jax.random.key(0))
    jitted, _, _ = jax.jit(collector.collect)((), state, data, jax.random.key(0))
    for a, b in zip(jax.tree.leaves(batch), jax.tree.leaves(jitted)):
        np.testing.assert_array_equal(a, b)
    assert jax.eval_shape(lambda: batch) == collector.example(2)
    assert batch.group_size == 1 and batch.batch_size == 6 + 2 + 2
    np.testing.assert_array_equal(batch.source_b, [ON_POLICY] * 6 + [EXPERT] * 4)
    np.testing.assert_array_equal(batch.version_b, [0] * 6 + [5] * 4)
    np.testing.assert_array_equal(batch.group_b, [0, 0, 0, 1, 1, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(batch.aux[JUDGE_KIND][:6], 0)
    np.testing.assert_array_equal(batch.response_bt[:6], groups.response_bt)
    np.testing.assert_array_equal(batch.reward_b[:6], groups.reward_b)
    for row in range(6):  # the policy's prompts, left-padded: the same text
        assert text_of(batch.prompt_bp[row], batch.prompt_valid_bp[row]) == ("1+2=" if row < 3 else "2+2=")
    assert set(metrics) >= {"accuracy", "judge_pairwise_frac", "reflection_frac"}


def test_with_judge_rows_errors():
    with pytest.raises(ValueError, match="pairwise_prob"):
        with_judge_rows(pairwise_prob=1.5)
    data = step_data()
    narrow = step_groups(data)
    narrow = narrow.replace(response_bt=narrow.response_bt[:, :1], mask_bt=narrow.mask_bt[:, :1],
                            behavior_logp_bt=narrow.behavior_logp_bt[:, :1])
    collector = with_judge_rows()(fixed_collector(narrow), fake_context())
    state = PolicyState(step=jnp.int32(0), rng=None, params=None, opt_state=None)
    with pytest.raises(ValueError, match="max_new_tokens"):
        collector.collect((), state, data, jax.random.key(0))


# ----------------------------------------------------------------------------- the loss


def loss_batch():
    """Three policy rows of one group (rewards 1, 0, 0; lengths 2, 1, 2), a pointwise judge row
    (2 target tokens) and a reflection row (1 target token)."""
    mask = [[1, 1], [1, 0], [1, 1], [1, 1], [1, 0]]
    batch = hand_batch(mask, reward_b=[1.0, 0.0, 0.0, 0.0, 0.0], group_b=[0, 0, 0, 0, 0],
                       source_b=[ON_POLICY] * 3 + [EXPERT] * 2)
    return batch.replace(aux={JUDGE_KIND: jnp.asarray([0, 0, 0, POINTWISE, REFLECTION], jnp.int32)})


def test_spark_loss_value_and_gradient_by_hand():
    lam = 0.5
    alg = spark(judge_coef=lam, kl_coef=0.0)
    prepared = apply(alg.prepare, loss_batch())
    logp = jnp.asarray([[-0.1, -0.2], [-0.3, -9.0], [-0.4, -0.5], [-1.5, -0.25], [-2.0, -7.0]], jnp.float32)

    def loss(logp_bt):
        out, _ = alg.objective.apply(prepared.replace(logp_bt=logp_bt, entropy_bt=jnp.zeros_like(logp_bt)),
                                     alg.objective.init(), step=0)
        return total_loss(out), out

    (value, out), grad = jax.value_and_grad(loss, has_aux=True)(logp)
    # GRPO over the policy rows: mean 1/3, unbiased std √(1/3), A = (r − 1/3)/(√(1/3) + 1e-6)
    std = np.sqrt(1.0 / 3.0) + 1e-6
    adv = np.array([2.0 / 3.0, -1.0 / 3.0, -1.0 / 3.0]) / std
    np.testing.assert_allclose(np.asarray(prepared.adv_bt)[:3, 0], adv, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(prepared.adv_bt)[3:], 0.0)
    # at ρ = 1 the GRPO value is −mean_i A_i = 0; the judge's is λ · the mean NLL of its 3 tokens
    judge = (1.5 + 0.25 + 2.0) / 3.0
    np.testing.assert_allclose(value, lam * judge, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.losses["judge"], lam * judge, rtol=1e-5)
    # ∂L/∂log π: −A_i / (3 · len_i) on the policy's tokens (seq-mean of token-means), −λ/3 on the
    # judge rows' target tokens, 0 on masked tokens
    lengths = np.array([2.0, 1.0, 2.0])
    expected = np.zeros((5, 2))
    expected[:3] = (-adv / (3.0 * lengths))[:, None] * np.asarray(loss_batch().mask_bt)[:3]
    expected[3] = -lam / 3.0
    expected[4, 0] = -lam / 3.0
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.metrics["judge_nll_pointwise"], (1.5 + 0.25) / 2, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["judge_nll_reflection"], 2.0, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["judge_verdict_prob"], np.exp(-1.5), rtol=1e-6)
    # jit == no-jit
    np.testing.assert_allclose(jax.jit(lambda x: loss(x)[0])(logp), value, rtol=1e-6)


def test_judge_coef_zero_is_grpo_on_the_policy_rows():
    alg, grpo = spark(judge_coef=0.0, kl_coef=0.0), algorithms.grpo(kl_coef=0.0)
    logp = jnp.asarray([[-0.1, -0.2], [-0.3, -9.0], [-0.4, -0.5], [-1.5, -0.25], [-2.0, -7.0]], jnp.float32)

    def grad(a, batch):
        prepared = apply(a.prepare, batch)
        f = lambda x: total_loss(a.objective.apply(prepared.replace(logp_bt=x, entropy_bt=jnp.zeros_like(x)),
                                                   a.objective.init(), step=0)[0])
        return jax.grad(f)(logp[: batch.batch_size])

    policy_only = jax.tree.map(lambda x: x[:3], loss_batch())
    np.testing.assert_allclose(grad(alg, loss_batch())[:3], grad(grpo, policy_only.replace(source_b=None)), rtol=1e-6)
    np.testing.assert_array_equal(grad(alg, loss_batch())[3:], 0.0)
    with pytest.raises(ValueError, match="judge_coef"):
        spark(judge_coef=-1.0)


def test_zero_variance_filter_masks_policy_rows_only():
    # group 0: policy rewards (1, 1) all equal → masked; its judge row stays; group 1: (0, 1) kept
    batch = hand_batch(np.ones((5, 2)), reward_b=[1.0, 1.0, 0.0, 0.0, 1.0], group_b=[0, 0, 0, 1, 1],
                       source_b=[ON_POLICY, ON_POLICY, EXPERT, ON_POLICY, ON_POLICY])
    out = apply(drop_zero_variance_policy_groups(), batch)
    np.testing.assert_array_equal(out.mask_bt[:, 0], [0, 0, 1, 1, 1])
    np.testing.assert_allclose(out.metrics["zero_variance_frac"], 2.0 / 4.0)


# ----------------------------------------------------------------------------- self-judge


JUDGE_CFG = TransformerConfig(vocab_size=TOK.vocab_size, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1,
                              mlp_dim=32, max_len=32)


def test_self_judge_score_equals_a_forward_of_the_compact_text():
    graphdef, params = tiny_params(JUDGE_CFG)
    data = step_data()
    batch = step_groups(data)
    s = self_judge_scores(graphdef, params, TOK, batch)
    model = nnx.merge(graphdef, params)
    texts = [q + a + " ok?" for q, a in zip(["1+2="] * 3 + ["2+2="] * 3, ["3", "4", "3", "5", "6", "7"])]
    ids = jnp.asarray([TOK.encode(text, bos=True) for text in texts], jnp.int32)  # one length: no padding
    hidden, _ = model.forward(ids, jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape), jnp.ones(ids.shape, bool))
    p_yes = jax.nn.softmax(model.logits(hidden[:, -1]).astype(jnp.float32))[:, TOK.encode("y")[0]]
    np.testing.assert_allclose(s, p_yes, rtol=1e-4)


def test_with_self_judge_rewards_and_agreement():
    graphdef, params = tiny_params(JUDGE_CFG)
    data = step_data()
    groups = step_groups(data)
    ctx = Context(graphdef=graphdef, task=fake_context().task, sampling=fake_context().sampling, group_size=3,
                  layout=None)
    collector = with_self_judge()(fixed_collector(groups), ctx)
    state = PolicyState(step=jnp.int32(0), rng=None, params=params, opt_state=None)
    batch, _, metrics = collector.collect((), state, data, jax.random.key(0))
    s = np.asarray(self_judge_scores(graphdef, params, TOK, groups))
    np.testing.assert_allclose(batch.reward_b, s, rtol=1e-6)
    right = np.asarray(groups.reward_b) >= 1.0
    np.testing.assert_allclose(metrics["self_judge_agreement"], np.mean((s > 0.5) == right), rtol=1e-6)
    np.testing.assert_allclose(metrics["self_judge_base_rate"], 4.0 / 6.0, rtol=1e-6)
    np.testing.assert_allclose(metrics["verifier_reward_mean"], 2.0 / 6.0, rtol=1e-6)
    assert {"pair_agreement", "verifier_pair_accuracy", "accuracy"} <= set(metrics)


# ----------------------------------------------------------------------------- one update


def test_spark_trains_on_the_tiny_model():
    batch = loss_batch()
    b, t = batch.mask_bt.shape
    rng = np.random.default_rng(0)
    batch = batch.replace(response_bt=jnp.asarray(rng.integers(3, 8, (b, t)), jnp.int32),
                          behavior_logp_bt=jnp.asarray(-rng.uniform(0.5, 2.0, (b, t)), jnp.float32),
                          version_b=jnp.zeros((b,), jnp.int32))
    state, metrics, params = train_once(spark(learning_rate=1e-2, kl_coef=0.01), batch)
    assert int(state.step) == 1
    for key in ("judge", "pg", "judge_nll_pointwise", "judge_verdict_prob"):
        assert key in metrics and np.isfinite(metrics[key]), key


# ----------------------------------------------------------------------------- the judge as a phase's reward


def test_a_phase_rewarded_by_self_judge_scores_the_policy_rows_with_its_own_verdict(tmp_path, monkeypatch):
    """``phases[i].reward: "self_judge"`` (experiments/arithmetic_spark_self_reward.py): the phase's
    rows are the inner collector's samples, rewarded by π_θ("y" | x ++ y ++ " ok?") of the current
    parameters; the SPARK phase before it keeps the verifier, and they share no compiled step."""
    from experiments import arithmetic_spark_self_reward
    from polrl.tasks.data import task_batch
    from polrl.train.build import build_spec

    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path))
    spec = build_spec(arithmetic_spark_self_reward.get_config("smoke"), progress=False)
    _, rl, judged = spec.phases
    assert (rl.name, judged.name) == ("rl", "self_reward") and rl.collector is not judged.collector
    prompts = 2
    data = {k: v for k, v in task_batch(spec.task, [spec.task.test[i] for i in range(prompts)]).items() if k != "examples"}
    state = PolicyState(step=jnp.int32(0), rng=None, params=spec.init_params, opt_state=None)
    batch, _, metrics = jax.jit(judged.collector.collect)(judged.collector.init(prompts), state, data,
                                                          jax.random.key(0))
    s = self_judge_scores(spec.graphdef, spec.init_params, spec.task.tokenizer, batch)
    np.testing.assert_allclose(batch.reward_b, s, rtol=1e-6)
    assert {"self_judge_agreement", "verifier_reward_mean", "accuracy"} <= set(metrics)
    _, _, rl_metrics = jax.jit(rl.collector.collect)(rl.collector.init(prompts), state, data, jax.random.key(0))
    assert "self_judge_agreement" not in rl_metrics


def test_an_unknown_phase_reward_names_the_field():
    from experiments import arithmetic_spark_self_reward
    from polrl.train.build import build_spec

    c = arithmetic_spark_self_reward.get_config("smoke")
    c.phases[1].reward = "judge"
    with pytest.raises(ValueError, match=r"^phases\[1\]\.reward='judge'; use '' \(the run's reward") as e:
        build_spec(c, progress=False)
    assert "\n" not in str(e.value)

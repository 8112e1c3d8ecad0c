"""Collectors and mixed batches: expert rows appended to groups, greedy baselines, dynamic
sampling, preference pairs, version stamps, the ``logits`` / ``old_logp`` needs, the on/off-policy
diagnostics, and the trainer's check of an algorithm against its collector."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms, collectors, diagnostics, sharding
from polrl.core import EXPERT, GUIDED, ON_POLICY, REPLAY, TEACHER, Batch, chain, stateless
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig, sample
from polrl.tasks import Task, token_exact_match
from polrl.train import steps
from tiny_models import tiny_params

V, EOS, PAD = 8, 7, 0
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16)
SAMPLING = SamplingConfig(max_new_tokens=4, eos_id=EOS, pad_id=PAD, temperature=1.0)


@functools.lru_cache(maxsize=None)
def _model():
    return tiny_params(CFG)


def _context(group_size=2, device_reward=token_exact_match):
    task = Task(name="tiny", tokenizer=None, max_prompt_len=3, max_answer_len=3, train=[], test=[],
                host_reward=None, device_reward=device_reward)
    return collectors.Context(graphdef=_model()[0], task=task, sampling=SAMPLING, group_size=group_size,
                              layout=sharding.layout_from_config(None))


def _data():
    """Two prompts; answers "3 EOS" and "5 6 EOS" (right-padded to 3)."""
    return {
        "prompt_bp": jnp.array([[0, 1, 2], [3, 4, 5]], jnp.int32),
        "prompt_valid_bp": jnp.array([[False, True, True], [True, True, True]]),
        "answer_ba": jnp.array([[3, EOS, PAD], [5, 6, EOS]], jnp.int32),
        "answer_valid_ba": jnp.array([[True, True, False], [True, True, True]]),
    }


def _state(step=0):
    _, params = _model()
    alg = algorithms.grpo(kl_coef=0.0)
    state = steps.init_state(params, alg, jax.random.key(0), ref_params=params)
    return state.replace(step=jnp.int32(step), ref_params=params)


def _collect(collector, step=0, data=None, prompts=2):
    data = _data() if data is None else data
    batch, _, metrics = jax.jit(collector.collect)(collector.init(prompts), _state(step), data, jax.random.key(3))
    example = collector.example(prompts)
    assert jax.tree.structure(batch) == jax.tree.structure(example)
    assert [(x.shape, x.dtype) for x in jax.tree.leaves(batch)] == [(x.shape, x.dtype) for x in jax.tree.leaves(example)]
    return batch, metrics


def test_group_samples_are_the_forked_samples_with_rewards_and_versions():
    ctx = _context(group_size=3)
    batch, m = _collect(collectors.group_samples(ctx), step=5)
    graphdef, params = _model()
    out = sample(graphdef, params, _data()["prompt_bp"], _data()["prompt_valid_bp"], jax.random.key(3), SAMPLING, 3)
    np.testing.assert_array_equal(batch.response_bt, out.response_bt)
    np.testing.assert_allclose(batch.behavior_logp_bt, out.logp_bt, atol=1e-5)  # jit vs eager rounding
    np.testing.assert_array_equal(batch.group_b, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(batch.version_b, 5)
    answers = np.repeat(_data()["answer_ba"], 3, 0), np.repeat(_data()["answer_valid_ba"], 3, 0)
    np.testing.assert_array_equal(batch.reward_b, token_exact_match(out.response_bt, out.mask_bt, *answers))
    np.testing.assert_allclose(m["reward_mean"], np.asarray(batch.reward_b).mean())
    assert batch.group_size == 3 and batch.source_b is None


def test_expert_rows_are_appended_to_each_group_and_policy_rows_are_unchanged():
    ctx = _context(group_size=2)
    plain, plain_m = _collect(collectors.group_samples(ctx))
    mixed, mixed_m = _collect(collectors.with_expert_rows(1)(collectors.group_samples(ctx), ctx), step=7)
    assert mixed.group_size == 3
    np.testing.assert_array_equal(mixed.source_b, [ON_POLICY, ON_POLICY, EXPERT] * 2)
    np.testing.assert_array_equal(mixed.group_b, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(mixed.version_b, [7] * 6)
    policy = np.array([0, 1, 3, 4])
    for field in ("response_bt", "mask_bt", "behavior_logp_bt", "reward_b", "prompt_bp"):
        np.testing.assert_array_equal(np.asarray(getattr(mixed, field))[policy], getattr(plain, field))
    np.testing.assert_array_equal(mixed.response_bt[2], [3, EOS, PAD, PAD])
    np.testing.assert_array_equal(mixed.response_bt[5], [5, 6, EOS, PAD])
    np.testing.assert_array_equal(np.asarray(mixed.mask_bt)[[2, 5]], [[1, 1, 0, 0], [1, 1, 1, 0]])
    np.testing.assert_array_equal(np.asarray(mixed.behavior_logp_bt)[[2, 5]], 0.0)
    np.testing.assert_array_equal(np.asarray(mixed.reward_b)[[2, 5]], [1.0, 1.0])  # the verifier accepts the label
    np.testing.assert_array_equal(np.asarray(mixed.prompt_bp)[[2, 5]], _data()["prompt_bp"])
    assert mixed_m == plain_m  # the metrics describe the policy's samples only


def test_rollout_metrics_leave_expert_rows_out():
    ctx = _context(group_size=2)
    mixed, _ = _collect(collectors.with_expert_rows(1)(collectors.group_samples(ctx), ctx))
    m = collectors.rollout_metrics(mixed)
    policy = np.array([0, 1, 3, 4])
    np.testing.assert_allclose(m["reward_mean"], np.asarray(mixed.reward_b)[policy].mean())
    np.testing.assert_allclose(m["response_length"], np.asarray(mixed.mask_bt).sum(-1)[policy].mean())


def test_rollout_metrics_split_lengths_by_correctness():
    mask = jnp.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]], jnp.float32)
    batch = Batch(prompt_bp=jnp.zeros((4, 1), jnp.int32), prompt_valid_bp=jnp.ones((4, 1), bool),
                  response_bt=jnp.zeros((4, 4), jnp.int32), mask_bt=mask,
                  reward_b=jnp.array([1.0, 0.0, 1.0, 0.5]), source_b=jnp.array([ON_POLICY, ON_POLICY, EXPERT, ON_POLICY]))
    m = collectors.rollout_metrics(batch)
    assert float(m["response_length_correct"]) == 3.0  # row 0 (row 2 is an expert row)
    assert float(m["response_length_incorrect"]) == 2.5  # rows 1 and 3: (1 + 4) / 2
    none_right = collectors.rollout_metrics(batch.replace(reward_b=jnp.zeros(4)))
    assert float(none_right["response_length_correct"]) == 0.0


def test_greedy_baseline_is_the_greedy_responses_reward_per_group():
    ctx = _context(group_size=2)
    batch, _ = _collect(collectors.with_greedy_baseline()(collectors.group_samples(ctx), ctx))
    graphdef, params = _model()
    greedy = sample(graphdef, params, _data()["prompt_bp"], _data()["prompt_valid_bp"], jax.random.key(0),
                    dataclasses.replace(SAMPLING, temperature=0.0))
    base = token_exact_match(greedy.response_bt, greedy.mask_bt, _data()["answer_ba"], _data()["answer_valid_ba"])
    np.testing.assert_array_equal(batch.aux["greedy_reward_b"], np.repeat(np.asarray(base), 2))


def test_preference_pairs_sample_the_reference_and_pair_best_with_worst():
    ctx = _context(group_size=4)
    pairs, _ = _collect(collectors.preference_pairs(ctx))
    full, _ = _collect(collectors.group_samples(ctx, policy="reference"))
    r = np.asarray(full.reward_b).reshape(2, 4)
    rows = [int(np.argmax(r[0])), int(np.argmin(r[0])), 4 + int(np.argmax(r[1])), 4 + int(np.argmin(r[1]))]
    np.testing.assert_array_equal(pairs.response_bt, np.asarray(full.response_bt)[rows])
    np.testing.assert_array_equal(pairs.group_b, [0, 0, 1, 1])
    assert pairs.group_size == 2 and "reference" in collectors.preference_pairs(ctx).needs
    np.testing.assert_array_equal(pairs.version_b, 0)


def test_wrappers_refuse_bad_settings():
    with pytest.raises(ValueError, match="expert_per_group=0"):
        collectors.with_expert_rows(0)
    with pytest.raises(ValueError, match="oversample=0"):
        collectors.dynamic_sampling(0)
    ctx = _context(device_reward=None)
    with pytest.raises(ValueError, match="device reward"):
        collectors.with_expert_rows(1)(collectors.group_samples(ctx), ctx)
    with pytest.raises(ValueError, match="device reward"):
        collectors.with_greedy_baseline()(collectors.group_samples(ctx), ctx)


def _grouped(rewards, g=2):
    n = len(rewards)
    return Batch(
        prompt_bp=jnp.arange(n, dtype=jnp.int32)[:, None],
        prompt_valid_bp=jnp.ones((n, 1), bool),
        response_bt=jnp.arange(n, dtype=jnp.int32)[:, None],
        mask_bt=jnp.ones((n, 1)),
        reward_b=jnp.asarray(rewards, jnp.float32),
        group_b=jnp.arange(n, dtype=jnp.int32) // g,
        group_size=g,
    )


def test_keep_informative_groups_puts_groups_with_signal_first():
    batch = _grouped([1, 1, 0, 1, 0, 0, 1, 0])  # groups 1 and 3 have reward variance
    kept, m = collectors.keep_informative_groups(batch, 2)
    np.testing.assert_array_equal(kept.response_bt[:, 0], [2, 3, 6, 7])
    np.testing.assert_array_equal(kept.group_b, [0, 0, 1, 1])
    assert float(m["dynamic/informative_frac"]) == 1.0
    assert float(m["dynamic/drawn_informative_frac"]) == 0.5
    kept, m = collectors.keep_informative_groups(batch, 3)  # one zero-variance group fills the slot
    np.testing.assert_array_equal(kept.response_bt[:, 0], [2, 3, 6, 7, 0, 1])
    np.testing.assert_allclose(m["dynamic/informative_frac"], 2 / 3)
    with pytest.raises(ValueError, match="asked for 5 groups"):
        collectors.keep_informative_groups(batch, 5)


def test_dynamic_sampling_reads_more_prompts_and_keeps_the_step_size():
    ctx = _context(group_size=2)
    wrapped = collectors.dynamic_sampling(2)(collectors.group_samples(ctx), ctx)
    assert wrapped.reads(1) == 2
    batch, m = _collect(wrapped, prompts=1)
    assert batch.batch_size == 2 and "dynamic/informative_frac" in m


def test_batch_diagnostics_hand_values():
    batch = _grouped([1, 1, 0, 1]).replace(
        response_bt=jnp.zeros((4, 2), jnp.int32),
        mask_bt=jnp.array([[1, 1], [1, 0], [1, 1], [1, 1]], jnp.float32),
        version_b=jnp.array([3, 3, 1, 5], jnp.int32),
        source_b=jnp.array([ON_POLICY, ON_POLICY, REPLAY, EXPERT], jnp.int32),
        behavior_logp_bt=jnp.array([[-1.0, -2.0], [-1.0, 9.0], [-0.5, -0.5], [0.0, 0.0]]),
        old_logp_bt=jnp.array([[-1.5, -2.0], [-0.5, 0.0], [-1.0, -1.0], [-3.0, -3.0]]),
    )
    d = diagnostics.batch_diagnostics(batch, jnp.int32(3))
    p = diagnostics.PREFIX
    assert float(d[p + "zero_variance_frac"]) == 0.5
    # staleness over rows 0..2 (row 3 is expert): 0, 0, 2
    np.testing.assert_allclose(d[p + "staleness_mean"], 2 / 3)
    assert float(d[p + "staleness_max"]) == 2.0
    # behaviour − old over valid non-expert tokens: 0.5, 0, −0.5, 0.5, 0.5
    np.testing.assert_allclose(d[p + "mismatch_k1"], 1.0 / 5)
    np.testing.assert_allclose(d[p + "mismatch_abs"], 2.0 / 5)
    np.testing.assert_allclose(d[p + "expert_frac"], 0.25)
    np.testing.assert_allclose(d[p + "replay_frac"], 0.25)


def test_ratio_diagnostics_effective_sample_size():
    # two one-token rows with weights 1 and 2, and an expert row that is ignored
    batch = Batch(
        prompt_bp=jnp.zeros((3, 1), jnp.int32), prompt_valid_bp=jnp.ones((3, 1), bool),
        response_bt=jnp.zeros((3, 1), jnp.int32), mask_bt=jnp.ones((3, 1)),
        behavior_logp_bt=jnp.array([[-1.0], [-1.0 - np.log(2.0)], [0.0]]),
        logp_bt=jnp.array([[-1.0], [-1.0], [-7.0]]),
        source_b=jnp.array([ON_POLICY, REPLAY, EXPERT], jnp.int32),
    )
    d = diagnostics.ratio_diagnostics(batch)
    p = diagnostics.PREFIX
    np.testing.assert_allclose(d[p + "ess"], (1 + 2) ** 2 / (2 * (1 + 4)), rtol=1e-6)
    np.testing.assert_allclose(d[p + "is_ratio_mean"], 1.5, rtol=1e-6)
    np.testing.assert_allclose(d[p + "is_ratio_max"], 2.0, rtol=1e-6)
    np.testing.assert_allclose(d[p + "is_ratio_min"], 1.0, rtol=1e-6)
    empty = diagnostics.ratio_diagnostics(batch.replace(mask_bt=jnp.zeros((3, 1))))
    assert all(float(v) == 1.0 for v in empty.values())
    on_policy = batch.replace(behavior_logp_bt=batch.logp_bt, source_b=None)
    np.testing.assert_allclose(diagnostics.ratio_diagnostics(on_policy)[p + "ess"], 1.0, rtol=1e-6)


def test_teacher_and_guided_rows_are_reported_apart_from_the_policy_rows():
    """Rows of a teacher and of the policy under guidance: out of the policy's accuracy, staleness
    and ratios, with their own fractions, accuracies and ratio statistics."""
    sources = jnp.array([ON_POLICY, ON_POLICY, TEACHER, TEACHER, GUIDED, EXPERT], jnp.int32)
    batch = Batch(
        prompt_bp=jnp.zeros((6, 1), jnp.int32), prompt_valid_bp=jnp.ones((6, 1), bool),
        response_bt=jnp.zeros((6, 1), jnp.int32), mask_bt=jnp.ones((6, 1)),
        reward_b=jnp.array([1.0, 0.0, 1.0, 1.0, 1.0, 1.0]), source_b=sources,
        version_b=jnp.array([4, 4, 0, 0, 3, 0], jnp.int32),
        behavior_logp_bt=jnp.array([[-1.0], [-1.0], [-2.0], [-2.0 - np.log(4.0)], [-1.0 + np.log(2.0)], [0.0]]),
        logp_bt=jnp.array([[-1.0], [-1.0], [-2.0], [-2.0], [-1.0], [-5.0]]),
    )
    m = collectors.rollout_metrics(batch)
    np.testing.assert_allclose([m["accuracy"], m["teacher_accuracy"], m["guided_accuracy"]], [0.5, 1.0, 1.0])
    d = diagnostics.batch_diagnostics(batch, jnp.int32(4))
    p = diagnostics.PREFIX
    np.testing.assert_allclose([d[p + k] for k in ("teacher_frac", "guided_frac", "expert_frac", "replay_frac")],
                               [2 / 6, 1 / 6, 1 / 6, 0.0], rtol=1e-6)
    assert float(d[p + "staleness_max"]) == 0.0  # the teacher's version 0 is not staleness
    assert float(d[p + "guided_staleness_mean"]) == 1.0
    r = diagnostics.ratio_diagnostics(batch)
    # the policy's rows: w = 1, 1; the teacher's: 1, 4 (ESS (1 + 4)² / (2 (1 + 16))); the guided row: ½
    np.testing.assert_allclose([r[p + "is_ratio_mean"], r[p + "ess"]], [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose([r[p + "teacher_is_ratio_mean"], r[p + "teacher_is_ratio_max"], r[p + "teacher_ess"]],
                               [2.5, 4.0, 25 / 34], rtol=1e-6)
    np.testing.assert_allclose(r[p + "guided_is_ratio_min"], 0.5, rtol=1e-6)


def test_logits_need_fills_the_full_logits_in_the_update():
    seen = {}

    def record(batch):
        batch.require("logits_btv", by="test")
        seen["shape"] = batch.logits_btv.shape
        logp = jax.nn.log_softmax(batch.logits_btv)
        picked = jnp.take_along_axis(logp, batch.response_bt[..., None], -1)[..., 0]
        return batch.add_metrics(logits_err=jnp.abs(picked - batch.logp_bt).max())

    alg = algorithms.sft(learning_rate=1e-3)
    alg = alg._replace(objective=chain(stateless(record, needs=("logits",)), alg.objective))
    graphdef, params = _model()
    batch = collectors.demonstration_batch(_data(), pad_id=PAD)
    state = steps.init_state(params, alg, jax.random.key(0))
    _, m = steps.update(state, batch, algorithm=alg, graphdef=graphdef)
    assert seen["shape"] == (2, 3, V)
    assert float(m["logits_err"]) < 1e-5


def test_old_logp_need_recomputes_pi_old_with_one_update():
    alg = algorithms.grpo(kl_coef=0.0)
    forced = alg._replace(prepare=chain(alg.prepare, stateless(lambda b: b, needs=("old_logp",))))
    graphdef, params = _model()
    batch, _ = _collect(collectors.group_samples(_context(group_size=2)))
    state = steps.init_state(params, forced, jax.random.key(0))
    prepared, _ = steps.prepare(state, batch, algorithm=forced, graphdef=graphdef)
    m = np.asarray(batch.mask_bt)
    np.testing.assert_allclose(np.asarray(prepared.old_logp_bt) * m, batch.behavior_logp_bt, atol=1e-5)
    p = diagnostics.PREFIX
    assert abs(float(prepared.metrics[p + "mismatch_k1"])) < 1e-5
    plain, _ = steps.prepare(steps.init_state(params, alg, jax.random.key(0)), batch, algorithm=alg, graphdef=graphdef)
    assert plain.old_logp_bt is None


@pytest.fixture
def smoke_spec(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path_factory.getbasetemp() / "data"))
    from experiments import arithmetic_grpo
    from polrl.train.build import build_spec

    config = arithmetic_grpo.get_config("smoke")
    config.warmup.steps = 0
    config.total_steps = 2
    return build_spec(config, progress=False)


def _with(spec, algorithm=None, wrap=None):
    """The spec's last phase with another algorithm and/or collector wrappers."""
    from polrl.collectors.group_samples import group_samples

    phase = spec.phases[-1]
    ctx = collectors.Context(graphdef=spec.graphdef, task=spec.task, sampling=spec.sampling,
                             group_size=phase.collector.example(1).group_size, layout=spec.layout)
    collector = group_samples(ctx)
    if wrap is not None:
        collector = wrap(collector, ctx)
    phase = dataclasses.replace(phase, algorithm=algorithm or phase.algorithm, collector=collector)
    return dataclasses.replace(spec, phases=(phase,))


def test_trainer_runs_expert_rows_and_dynamic_sampling(smoke_spec, tmp_path):
    from polrl.train import metrics as metrics_lib
    from polrl.train.trainer import Trainer

    wrap = collectors.compose(collectors.with_expert_rows(1), collectors.dynamic_sampling(2))
    spec = _with(smoke_spec, wrap=wrap)
    Trainer(spec, str(tmp_path)).run()
    rows = [r for r in metrics_lib.read_metrics(str(tmp_path)) if "loss" in r]
    assert len(rows) == 2
    p = diagnostics.PREFIX
    g = smoke_spec.phases[-1].collector.example(1).group_size
    for r in rows:
        assert r[p + "expert_frac"] == pytest.approx(1 / (g + 1))
        assert 0.0 <= r["dynamic/drawn_informative_frac"] <= r["dynamic/informative_frac"] <= 1.0
        assert r[p + "staleness_max"] == 0.0


def test_trainer_refuses_an_algorithm_whose_data_the_collector_lacks(smoke_spec, tmp_path):
    """ReMax without its greedy-baseline wrapper fails before compiling, naming the wrapper."""
    from polrl.train.trainer import Trainer

    bare = algorithms.remax()._replace(collector=None)
    with pytest.raises(ValueError, match=r"phase 'rl'.*greedy_reward_b.*with_greedy_baseline"):
        Trainer(_with(smoke_spec, algorithm=bare), str(tmp_path))
    uneven = algorithms.grpo(num_minibatches=3)
    with pytest.raises(ValueError, match="not divisible by num_minibatches=3"):
        Trainer(_with(smoke_spec, algorithm=uneven), str(tmp_path))


def test_continuous_batching_samples_the_same_groups_by_request():
    """``group_samples(slots=…)`` decodes the P·G samples through fewer slots; request r = k·G + j
    draws with its own randomness, so the same rows come out whatever the number of slots."""
    ctx = _context(group_size=3)
    three, _ = _collect(collectors.group_samples(ctx, slots=3))
    two, _ = _collect(collectors.group_samples(ctx, slots=2))
    np.testing.assert_array_equal(three.response_bt, two.response_bt)
    np.testing.assert_array_equal(three.mask_bt, two.mask_bt)
    np.testing.assert_allclose(three.behavior_logp_bt, two.behavior_logp_bt, atol=1e-5)
    np.testing.assert_array_equal(three.group_b, [0, 0, 0, 1, 1, 1])

"""Mixed batches: expert rows in groups, greedy baselines, dynamic sampling, version stamps,
the ``logits`` need, and the on/off-policy diagnostics."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms, diagnostics
from polrl.core import EXPERT, ON_POLICY, REPLAY, Algorithm, Batch, BatchSpec, chain, stateless
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig
from polrl.tasks import token_exact_match
from polrl.train import rollouts, steps
from tiny_models import tiny_params

V, EOS, PAD = 8, 7, 0
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16)
SAMPLING = SamplingConfig(max_new_tokens=4, eos_id=EOS, pad_id=PAD, temperature=1.0)


@functools.lru_cache(maxsize=None)
def _model():
    return tiny_params(CFG)


def _data():
    """Two prompts; answers "3 EOS" and "5 6 EOS" (right-padded to 3)."""
    return {
        "prompt_bp": jnp.array([[0, 1, 2], [3, 4, 5]], jnp.int32),
        "prompt_valid_bp": jnp.array([[False, True, True], [True, True, True]]),
        "answer_ba": jnp.array([[3, EOS, PAD], [5, 6, EOS]], jnp.int32),
        "answer_valid_ba": jnp.array([[True, True, False], [True, True, True]]),
    }


def _rollout(group_size, **kw):
    graphdef, params = _model()
    fn = functools.partial(
        rollouts.group_rollout, graphdef=graphdef, sampling=SAMPLING, group_size=group_size,
        reward_fn=token_exact_match, **kw,
    )
    return jax.jit(fn)(params, _data(), jax.random.key(3))


def test_expert_rows_close_each_group_and_policy_rows_are_unchanged():
    plain = _rollout(2)
    mixed = _rollout(3, expert_per_group=1, version=7)
    np.testing.assert_array_equal(mixed.source_b, [ON_POLICY, ON_POLICY, EXPERT] * 2)
    np.testing.assert_array_equal(mixed.group_b, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(mixed.version_b, [7] * 6)
    policy = np.array([0, 1, 3, 4])
    for field in ("response_bt", "mask_bt", "behavior_logp_bt", "reward_b"):
        np.testing.assert_array_equal(np.asarray(getattr(mixed, field))[policy], getattr(plain, field))
    np.testing.assert_array_equal(mixed.response_bt[2], [3, EOS, PAD, PAD])
    np.testing.assert_array_equal(mixed.response_bt[5], [5, 6, EOS, PAD])
    np.testing.assert_array_equal(np.asarray(mixed.mask_bt)[[2, 5]], [[1, 1, 0, 0], [1, 1, 1, 0]])
    np.testing.assert_array_equal(np.asarray(mixed.behavior_logp_bt)[[2, 5]], 0.0)
    np.testing.assert_array_equal(np.asarray(mixed.reward_b)[[2, 5]], [1.0, 1.0])  # the verifier accepts the label
    assert plain.source_b is None and mixed.baseline_b is None


def test_rollout_metrics_leave_expert_rows_out():
    mixed = _rollout(3, expert_per_group=1)
    m = rollouts.rollout_metrics(mixed)
    policy = np.array([0, 1, 3, 4])
    np.testing.assert_allclose(m["reward_mean"], np.asarray(mixed.reward_b)[policy].mean())
    np.testing.assert_allclose(m["response_length"], np.asarray(mixed.mask_bt).sum(-1)[policy].mean())


def test_greedy_baseline_is_the_greedy_responses_reward_per_group():
    batch = _rollout(2, greedy_baseline=True)
    graphdef, params = _model()
    from polrl.rollout import sample

    greedy = sample(graphdef, params, _data()["prompt_bp"], _data()["prompt_valid_bp"], jax.random.key(0),
                    dataclasses.replace(SAMPLING, temperature=0.0))
    base = token_exact_match(greedy.response_bt, greedy.mask_bt, _data()["answer_ba"], _data()["answer_valid_ba"])
    np.testing.assert_array_equal(batch.baseline_b, np.repeat(np.asarray(base), 2))


def test_expert_rows_need_a_policy_sample_per_group():
    with pytest.raises(ValueError, match="expert_per_group=2"):
        _rollout(2, expert_per_group=2)


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
    kept, m = rollouts.keep_informative_groups(batch, 2)
    np.testing.assert_array_equal(kept.response_bt[:, 0], [2, 3, 6, 7])
    np.testing.assert_array_equal(kept.group_b, [0, 0, 1, 1])
    assert float(m["dynamic/informative_frac"]) == 1.0
    assert float(m["dynamic/drawn_informative_frac"]) == 0.5
    kept, m = rollouts.keep_informative_groups(batch, 3)  # one zero-variance group fills the slot
    np.testing.assert_array_equal(kept.response_bt[:, 0], [2, 3, 6, 7, 0, 1])
    np.testing.assert_allclose(m["dynamic/informative_frac"], 2 / 3)
    with pytest.raises(ValueError, match="asked for 5 groups"):
        rollouts.keep_informative_groups(batch, 5)


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
    batch = rollouts.demonstration_batch(_data(), pad_id=PAD)
    state = steps.init_state(params, alg, jax.random.key(0))
    _, m = steps.update(state, batch, algorithm=alg, graphdef=graphdef)
    assert seen["shape"] == (2, 3, V)
    assert float(m["logits_err"]) < 1e-5


def test_old_logp_need_recomputes_pi_old_with_one_update():
    alg = algorithms.grpo(kl_coef=0.0)
    forced = alg._replace(prepare=chain(alg.prepare, stateless(lambda b: b, needs=("old_logp",))))
    graphdef, params = _model()
    batch = _rollout(2)
    state = steps.init_state(params, forced, jax.random.key(0))
    prepared, _ = steps.prepare(state, batch, algorithm=forced, graphdef=graphdef)
    m = np.asarray(batch.mask_bt)
    np.testing.assert_allclose(np.asarray(prepared.old_logp_bt) * m, batch.behavior_logp_bt, atol=1e-5)
    p = diagnostics.PREFIX
    assert abs(float(prepared.metrics[p + "mismatch_k1"])) < 1e-5
    plain, _ = steps.prepare(steps.init_state(params, alg, jax.random.key(0)), batch, algorithm=alg, graphdef=graphdef)
    assert plain.old_logp_bt is None


def test_batch_spec_defaults_keep_plain_rollouts():
    assert algorithms.grpo().batch == BatchSpec()
    assert isinstance(algorithms.grpo(), Algorithm)


@pytest.fixture
def smoke_spec(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path_factory.getbasetemp() / "data"))
    from experiments import arithmetic_grpo
    from polrl.train.build import build_spec

    config = arithmetic_grpo.get_config("smoke")
    config.warmup.steps = 0
    config.total_steps = 2
    return build_spec(config, progress=False)


def _with_batch_spec(spec, batch_spec):
    phase = spec.phases[-1]
    phase = dataclasses.replace(phase, algorithm=phase.algorithm._replace(batch=batch_spec))
    return dataclasses.replace(spec, phases=(phase,))


def test_trainer_runs_expert_rows_and_dynamic_sampling(smoke_spec, tmp_path):
    from polrl.train import metrics as metrics_lib
    from polrl.train.trainer import Trainer

    spec = _with_batch_spec(smoke_spec, BatchSpec(expert_per_group=1, oversample=2))
    Trainer(spec, str(tmp_path)).run()
    rows = [r for r in metrics_lib.read_metrics(str(tmp_path)) if "loss" in r]
    assert len(rows) == 2
    p = diagnostics.PREFIX
    for r in rows:
        assert r[p + "expert_frac"] == pytest.approx(1 / spec.group_size)
        assert 0.0 <= r["dynamic/drawn_informative_frac"] <= r["dynamic/informative_frac"] <= 1.0
        assert r[p + "staleness_max"] == 0.0


def test_trainer_rejects_impossible_batch_specs(smoke_spec, tmp_path):
    from polrl.train.trainer import Trainer

    bad = _with_batch_spec(smoke_spec, BatchSpec(expert_per_group=smoke_spec.group_size))
    with pytest.raises(ValueError, match="expert_per_group=4 must be below rollout.group_size=4"):
        Trainer(bad, str(tmp_path))
    bad = _with_batch_spec(smoke_spec, BatchSpec(oversample=0))
    with pytest.raises(ValueError, match="oversample=0 must be >= 1"):
        Trainer(bad, str(tmp_path))

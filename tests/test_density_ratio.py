"""CDR's reward (``collectors.with_density_ratio``, ``config.density_ratio``): r(x, y) equals the
difference of the two models' sequence log-probs computed independently in float64 numpy, strong
== weak gives 0, the pair agreement with the verifier on hand-made numbers, pairs ranked by r,
jit == no-jit, and one-line config errors."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl import algorithms, collectors, sharding
from polrl.collectors.density_ratio import density_ratio_rewards, pair_agreement
from polrl.core import Batch, Collector, PolicyState
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig
from polrl.tasks import Task, token_exact_match
from polrl.train import steps
from polrl.train.build import build_spec, frozen_model_structure
from polrl.train.reward_checkpoint import load_params, policy_source
from tiny_models import tiny_params, two_prompt_data

V, EOS, PAD, G = 8, 7, 0, 3
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16,
                        dtype=jnp.float64, param_dtype=jnp.float64)
# The result is float32 of a float64 difference: at most half an ulp of float32 from the exact value
# (the two float64 computations differ by ~1e-15, far below it).
F32_ROUNDING = dict(rtol=2**-23, atol=1e-12)


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def _models():
    return tiny_params(CFG, seed=1), tiny_params(CFG, seed=2)[1]


def _batch():
    """Two prompts (the first left-padded) × 2 responses: lengths 4 (the whole width), 1, 2 and 3."""
    prompt = np.array([[PAD, 3, 4], [2, 5, 1]])
    valid = prompt != PAD
    response = np.array([[1, 2, 3, 4], [EOS, PAD, PAD, PAD], [5, EOS, PAD, PAD], [6, 6, EOS, PAD]])
    mask = np.array([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]], np.float32)
    return Batch(prompt_bp=jnp.asarray(np.repeat(prompt, 2, axis=0), jnp.int32),
                 prompt_valid_bp=jnp.asarray(np.repeat(valid, 2, axis=0)),
                 response_bt=jnp.asarray(response, jnp.int32), mask_bt=jnp.asarray(mask), group_size=2)


def _logp_numpy(graphdef, params, batch, prefix=()):
    """log π(y | prefix ++ x) of each row: one forward per row on its unpadded tokens, the log-softmax
    of the logits and the sum over the response in float64 numpy."""
    model = nnx.merge(graphdef, params)
    out = []
    for b in range(batch.batch_size):
        context = list(prefix) + [int(x) for x, ok in zip(batch.prompt_bp[b], batch.prompt_valid_bp[b]) if ok]
        response = [int(y) for y, m in zip(batch.response_bt[b], batch.mask_bt[b]) if m]
        tokens = context + response
        hidden, _ = model.forward(jnp.asarray([tokens]), jnp.arange(len(tokens))[None], jnp.ones((1, len(tokens)), bool))
        logits = np.asarray(model.logits(hidden)[0], np.float64)
        logz = logits.max(-1) + np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1))
        out.append(sum(logits[len(context) - 1 + t, y] - logz[len(context) - 1 + t] for t, y in enumerate(response)))
    return np.asarray(out)


@pytest.mark.parametrize("prefix", [None, (6, 2)])
def test_reward_is_the_difference_of_independently_computed_log_probs(prefix):
    (graphdef, strong), weak = _models()
    batch = _batch()
    reward = density_ratio_rewards((graphdef, strong), (graphdef, weak), batch,
                                   None if prefix is None else jnp.asarray(prefix))
    expected = _logp_numpy(graphdef, strong, batch, prefix or ()) - _logp_numpy(graphdef, weak, batch)
    assert reward.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(reward, np.float64), expected, **F32_ROUNDING)
    assert np.all(np.abs(expected) > 1e-3)  # the two models differ on every row


def test_the_same_model_twice_gives_zero():
    (graphdef, params), _ = _models()
    ratio = lambda a, b, batch: density_ratio_rewards((graphdef, a), (graphdef, b), batch)
    for fn in (ratio, jax.jit(ratio)):
        np.testing.assert_array_equal(fn(params, params, _batch()), np.zeros(4, np.float32))


def test_jit_equals_no_jit():
    (graphdef, strong), weak = _models()
    prefix = jnp.asarray([6, 2])
    ratio = lambda a, b, batch, prefix: density_ratio_rewards((graphdef, a), (graphdef, b), batch, prefix)
    eager = ratio(strong, weak, _batch(), prefix)
    jitted = jax.jit(ratio)(strong, weak, _batch(), prefix)
    np.testing.assert_allclose(jitted, eager, rtol=2**-22)  # each within half an ulp of the same float64 value


def test_pair_agreement_on_a_hand_made_batch():
    ratio = jnp.asarray([0.5, 2.0, -1.0,   # best 1 (v 1), worst 2 (v 0): agrees
                         3.0, 1.0, -2.0,   # best 0 (v 0), worst 2 (v 1): disagrees
                         1.0, 0.0, 5.0,    # best 2 (v 1), worst 1 (v 0): agrees
                         1.0, 1.0, 1.0,    # all tied: best = worst = row 0, a verifier tie
                         0.0, 4.0, -3.0])  # best 1 (v 0), worst 2 (v 0): a verifier tie in a mixed group
    verifier = jnp.asarray([0, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 1, 0, 0], jnp.float32)
    agreement, untied = pair_agreement(ratio, verifier, G)
    np.testing.assert_allclose([float(agreement), float(untied)], [2 / 3, 3 / 5], rtol=1e-7)
    # The verifier's pairs judged by the ratio: g0 rows (1, 0) agree, g1 (1, 0) disagree, g2 (0, 1) agree,
    # g3 (0, 1) is a ratio tie, g4 (0, 1) disagrees.
    accuracy, untied = pair_agreement(verifier, ratio, G)
    np.testing.assert_allclose([float(accuracy), float(untied)], [2 / 4, 4 / 5], rtol=1e-7)
    agreement, untied = pair_agreement(ratio, jnp.ones(15), G)
    assert float(agreement) == 0.0 and float(untied) == 0.0  # every pair tied: nothing to agree with


# ----------------------------------------------------------------------------- the collector wrapper


def _context():
    task = Task(name="tiny", tokenizer=None, max_prompt_len=3, max_answer_len=3, train=[], test=[], host_reward=None,
                device_reward=token_exact_match)
    graphdef = _models()[0][0]
    return collectors.Context(graphdef=graphdef, task=task, group_size=G,
                              sampling=SamplingConfig(max_new_tokens=4, eos_id=EOS, pad_id=PAD),
                              layout=sharding.layout_from_config(None),
                              models={name: collectors.NamedModel(graphdef) for name in ("strong", "weak")})


def _agreement_numpy(ratio, verifier, g):
    ratio, verifier = np.asarray(ratio).reshape(-1, g), np.asarray(verifier).reshape(-1, g)
    best = verifier[np.arange(len(ratio)), ratio.argmax(1)]
    worst = verifier[np.arange(len(ratio)), ratio.argmin(1)]
    untied = best != worst
    return (best > worst).sum() / max(untied.sum(), 1), untied.mean()


def _collect(collector, params, ref_params, models):
    state = steps.init_state(params, algorithms.dpo(), jax.random.key(0), ref_params=ref_params, collector=collector,
                             prompts=2).replace(models=models)
    return state, collector.collect, (state.collector_state, state, two_prompt_data(V, PAD), jax.random.key(3))


def test_wrapper_rescores_the_samples_and_logs_agreement():
    (graphdef, strong), weak = _models()
    ctx = _context()
    inner = collectors.group_samples(ctx)
    wrapped = collectors.with_density_ratio("strong", "weak")(inner, ctx)
    state, collect, args = _collect(wrapped, strong, None, {"strong": strong, "weak": weak})
    batch, cstate, metrics = jax.jit(collect)(*args)
    plain, _, plain_metrics = inner.collect((), state, *args[2:])
    np.testing.assert_array_equal(batch.response_bt, plain.response_bt)  # the same samples, rescored
    expected = _logp_numpy(graphdef, strong, batch) - _logp_numpy(graphdef, weak, batch)
    np.testing.assert_allclose(np.asarray(batch.reward_b, np.float64), expected, **F32_ROUNDING)
    r = np.asarray(batch.reward_b, np.float64)  # float32 mean / std of 6 rows
    np.testing.assert_allclose(float(metrics["reward_mean"]), r.mean(), rtol=0, atol=8 * 2**-23 * np.abs(r).max())
    np.testing.assert_allclose(float(metrics["density_ratio_std"]), r.std(), rtol=0, atol=8 * 2**-23 * np.abs(r).max())
    assert float(metrics["verifier_reward_mean"]) == float(plain.reward_b.mean())
    assert float(metrics["accuracy"]) == float(plain_metrics["accuracy"])
    agreement, untied = _agreement_numpy(batch.reward_b, plain.reward_b, G)
    np.testing.assert_allclose([float(metrics["pair_agreement"]), float(metrics["pair_untied"])], [agreement, untied],
                               rtol=1e-7)
    accuracy, pairs = _agreement_numpy(plain.reward_b, batch.reward_b, G)
    np.testing.assert_allclose([float(metrics["verifier_pair_accuracy"]), float(metrics["verifier_pairs"])],
                               [accuracy, pairs], rtol=1e-7)
    assert cstate == ()  # the two policies are the state's frozen models, not the collector's
    assert wrapped.example(2) == inner.example(2) and wrapped.needs == frozenset()
    eager, _, eager_metrics = collect(*args)  # jit == no-jit
    np.testing.assert_allclose(eager.reward_b, batch.reward_b, rtol=2**-22)
    assert float(eager_metrics["pair_untied"]) == float(metrics["pair_untied"])


def test_wrapper_metrics_on_a_hand_made_batch():
    """An inner collector returning fixed rows whose verifier rewards differ on every row, so every
    pair is judged: the logged agreements equal numpy's on the independently computed ratio."""
    (graphdef, strong), weak = _models()
    rows = _batch()
    responses = np.concatenate([np.asarray(rows.response_bt)[:3], np.asarray(rows.response_bt)[1:]])
    masks = np.concatenate([np.asarray(rows.mask_bt)[:3], np.asarray(rows.mask_bt)[1:]])
    prompt = np.asarray(rows.prompt_bp)[[0, 0, 0, 2, 2, 2]]
    verifier = np.array([0.0, 0.5, 1.0, 1.0, 0.5, 0.0], np.float32)
    batch = Batch(prompt_bp=jnp.asarray(prompt), prompt_valid_bp=jnp.asarray(prompt != PAD),
                  response_bt=jnp.asarray(responses), mask_bt=jnp.asarray(masks), reward_b=jnp.asarray(verifier),
                  group_size=G)
    inner = Collector(init=lambda prompts: (), collect=lambda cstate, state, data, rng: (batch, cstate, {}),
                      example=lambda prompts: batch)
    wrapped = collectors.with_density_ratio("strong", "weak")(inner, _context())
    data = {"prompt_bp": jnp.asarray(prompt[::G])}
    state = PolicyState(step=jnp.int32(0), rng=None, params=None, opt_state=None, models={"strong": strong, "weak": weak})
    out, _, metrics = jax.jit(wrapped.collect)(wrapped.init(2), state, data, jax.random.key(0))
    ratio = _logp_numpy(graphdef, strong, batch) - _logp_numpy(graphdef, weak, batch)
    np.testing.assert_allclose(np.asarray(out.reward_b, np.float64), ratio, **F32_ROUNDING)
    expected = [*_agreement_numpy(ratio, verifier, G), *_agreement_numpy(verifier, ratio, G)]
    assert expected[1] == 1.0 and expected[3] == 1.0  # every pair judged, both ways
    logged = [float(metrics[k]) for k in ("pair_agreement", "pair_untied", "verifier_pair_accuracy", "verifier_pairs")]
    np.testing.assert_allclose(logged, expected, rtol=1e-7)


def test_preference_pairs_are_ranked_by_the_ratio():
    (graphdef, strong), weak = _models()
    ctx = _context()
    scorer = collectors.with_density_ratio("strong", "weak")
    samples = scorer(collectors.group_samples(ctx, policy="reference"), ctx)
    pairs_collector = collectors.preference_pairs(ctx, scored_by=scorer)
    # samples from the reference, here the strong model
    _, collect, args = _collect(pairs_collector, weak, strong, {"strong": strong, "weak": weak})
    pairs, _, metrics = jax.jit(collect)(*args)
    scored, _, _ = jax.jit(samples.collect)(*args)
    r = np.asarray(scored.reward_b).reshape(-1, G)
    rows = np.stack([r.argmax(1), r.argmin(1)], 1) + G * np.arange(len(r))[:, None]
    np.testing.assert_array_equal(pairs.response_bt, np.asarray(scored.response_bt)[rows.reshape(-1)])
    np.testing.assert_array_equal(pairs.reward_b, np.asarray(scored.reward_b)[rows.reshape(-1)])
    assert pairs.group_size == 2 and "pair_agreement" in metrics


def test_a_host_collector_is_refused():
    ctx = _context()
    (graphdef, strong), weak = _models()
    with pytest.raises(ValueError, match=r"with_density_ratio: the inner collector runs on the host"):
        collectors.with_density_ratio("strong", "weak")(collectors.offline_pairs(ctx), ctx)
    with pytest.raises(ValueError, match=r"with_density_ratio\(weak\)='base' is not a model of this run"):
        collectors.with_density_ratio("strong", "base")(collectors.group_samples(ctx), ctx)


def test_the_reference_as_the_weak_policy_is_read_from_the_state_not_copied():
    """weak = "reference": the same rewards as a loaded copy of the same parameters, the
    collector asks the phase to keep its reference, and the state holds no second copy."""
    (graphdef, strong), weak = _models()
    ctx = _context()
    inner = collectors.group_samples(ctx)
    by_reference = collectors.with_density_ratio("strong", "reference")(inner, ctx)
    assert by_reference.needs == frozenset({"reference"})
    state, collect, args = _collect(by_reference, strong, weak, {"strong": strong})
    assert list(state.models) == ["strong"]
    copied = collectors.with_density_ratio("strong", "weak")(inner, ctx)
    _, copied_collect, copied_args = _collect(copied, strong, None, {"strong": strong, "weak": weak})
    np.testing.assert_array_equal(jax.jit(collect)(*args)[0].reward_b, jax.jit(copied_collect)(*copied_args)[0].reward_b)


# ----------------------------------------------------------------------------- config


@pytest.fixture
def smoke(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path_factory.getbasetemp() / "data"))
    from experiments import arithmetic_cdr_dpo

    return arithmetic_cdr_dpo.get_config("smoke")


def test_config_carries_the_committed_policies(smoke):
    with jax.enable_x64(False):
        spec = build_spec(smoke, progress=False)
        phase = spec.phases[-1]
        assert phase.collector.init(phase.prompts_per_step) == ()  # nothing frozen in the checkpointed state
        _, shapes = frozen_model_structure(smoke.model, spec.task.tokenizer.vocab_size, value_head=False,
                                           field="density_ratio.model")
        for name in ("strong", "weak"):
            expected = load_params(smoke.density_ratio[name], shapes,
                                   policy_source(f"density_ratio.{name}", "density_ratio.model"))
            for a, b in zip(jax.tree.leaves(spec.models[f"cdr_{name}"]), jax.tree.leaves(expected), strict=True):
                np.testing.assert_array_equal(a, b)
        differ = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(spec.models["cdr_strong"]),
                                                           jax.tree.leaves(spec.models["cdr_weak"]))]
        assert any(differ)  # the smoke ratio is not 0


REWARD_MODEL_SMOKE = str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "data" / "arithmetic_reward_model_smoke")


@pytest.mark.parametrize("change,message", [
    (dict(strong=""), r"density_ratio.strong is empty; set it to a policy run's phase checkpoint directory"),
    (dict(weak="/nonexistent/weak"), r"density_ratio.weak='/nonexistent/weak' does not exist; train the run first"),
    (dict(model=dict(d_model=64, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=64, max_len=64)),
     r"density_ratio.strong=.*the checkpoint's parameters do not fit the policy of density_ratio.model \("),
    (dict(strong=REWARD_MODEL_SMOKE), r"density_ratio.strong=.*value_b/value not in the model"),
    (dict(model=dict(hf_path="/some/checkpoint")), r"density_ratio.model: the model is a polrl Transformer"),
    (dict(stong="x"), r"density_ratio has unknown field\(s\) \['stong'\]"),
])
def test_config_errors(smoke, change, message):
    with jax.enable_x64(False):
        smoke.density_ratio.update(change)
        with pytest.raises(ValueError, match=message) as e:
            build_spec(smoke, progress=False)
        assert "\n" not in str(e.value)


def test_reward_model_and_density_ratio_together_are_refused(smoke):
    smoke.reward_model = dict(path=REWARD_MODEL_SMOKE)
    with jax.enable_x64(False), pytest.raises(ValueError, match=r"config.reward_model and config.density_ratio both "
                                                                r"replace the verifier's reward; set only one") as e:
        build_spec(smoke, progress=False)
    assert "\n" not in str(e.value)

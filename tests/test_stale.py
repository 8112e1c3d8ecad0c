"""``collectors.stale``: rows from the policy of k updates ago, against brute force.

The brute force runs the inner collector itself with the parameters of k updates ago, the
step ``max(s − k, 0)`` and the same key; both sides run the same computation, so batches are
compared bit for bit. Runs on the float64 tiny model of the contract test."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms, collectors, diagnostics
from polrl.core import EXPERT
from polrl.train import checkpoint, steps
from test_collectors import CASES, _context, _data, _model

PROMPTS = 2


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def _params_at(s):
    """θ_s: the tiny model's parameters moved by a step-dependent amount (distinct per step)."""
    params = _model()[1]
    return jax.tree.map(lambda x: x + 0.05 * s * jnp.cos(jnp.arange(x.size, dtype=x.dtype).reshape(x.shape) + s), params)


def _state(collector, s, cstate=None):
    state = steps.init_state(_model()[1], algorithms.grpo(kl_coef=0.0), jax.random.key(0), collector=collector,
                             prompts=PROMPTS)
    state = state.replace(step=jnp.int32(s), params=_params_at(s))
    return state if cstate is None else state.replace(collector_state=cstate)


def _assert_same(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _run(collector, num_steps, collect=None):
    """Collects steps 0 … num_steps−1 with θ_s, threading the collector state; yields
    (s, batch, collector_state, metrics)."""
    collect = collect or collector.collect
    cstate = collector.init(PROMPTS)
    for s in range(num_steps):
        state = _state(collector, s, cstate)
        batch, cstate, metrics = collect(cstate, state, _data(s, PROMPTS), jax.random.key(100 + s))
        yield s, batch, cstate, metrics


def _brute_force(inner, s, k):
    """What the inner collector returns for step s run with θ_{max(s−k,0)} at step max(s−k,0)."""
    old = max(s - k, 0)
    state = _state(inner, s).replace(params=_params_at(old), step=jnp.int32(old))
    return inner.collect(inner.init(PROMPTS), state, _data(s, PROMPTS), jax.random.key(100 + s))


def test_zero_staleness_is_the_inner_collector():
    ctx = _context()
    inner = collectors.group_samples(ctx)
    wrapped = collectors.stale(0)(inner, ctx)
    assert wrapped is inner
    state = _state(inner, 3)
    _assert_same(wrapped.collect((), state, _data(3, PROMPTS), jax.random.key(5)),
                 inner.collect((), state, _data(3, PROMPTS), jax.random.key(5)))


@pytest.mark.parametrize("k", [1, 3])
def test_rows_come_from_the_policy_of_k_updates_ago(k):
    ctx = _context()
    inner = collectors.group_samples(ctx)
    collector = collectors.stale(k)(inner, ctx)
    for s, batch, _, metrics in _run(collector, k + 3):
        want, _, want_metrics = _brute_force(inner, s, k)
        _assert_same(batch.replace(old_logp_bt=None), want)
        _assert_same(metrics, want_metrics)
        np.testing.assert_array_equal(np.asarray(batch.version_b), max(s - k, 0))
        # old_policy="behavior": π_old is the stale behaviour policy.
        np.testing.assert_array_equal(np.asarray(batch.old_logp_bt), np.asarray(batch.behavior_logp_bt))
        # The staleness diagnostic reads min(s, k): k once k updates exist.
        stale = diagnostics.batch_diagnostics(batch, jnp.int32(s))["offpolicy/staleness_mean"]
        assert float(stale) == min(s, k)


def test_the_ring_buffer_rotates():
    """After collecting step s, slot j holds θ of the last step s' <= s with s' ≡ j (mod k);
    slots not yet written hold θ_0 (the phase's starting parameters)."""
    k = 3
    ctx = _context()
    collector = collectors.stale(k)(collectors.group_samples(ctx), ctx)
    for s, _, cstate, _ in _run(collector, 2 * k + 2):
        buf = jax.tree.leaves(cstate["snapshots"])
        for j in range(k):
            last = max([t for t in range(s + 1) if t % k == j], default=0)
            _assert_same([b[j] for b in buf], jax.tree.leaves(_params_at(last)))


def test_jit_equals_eager_over_steps():
    ctx = _context()
    collector = collectors.stale(2)(collectors.group_samples(ctx), ctx)
    jitted = list(_run(collector, 5, jax.jit(collector.collect)))
    eager = list(_run(collector, 5))
    for (_, *a), (_, *b) in zip(jitted, eager, strict=True):
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-9, atol=1e-12)


def test_recomputed_old_policy_leaves_old_logp_to_the_trainer():
    ctx = _context()
    inner = collectors.group_samples(ctx)
    collector = collectors.stale(1, old_policy="recomputed")(inner, ctx)
    assert collector.example(PROMPTS).old_logp_bt is None
    for s, batch, _, _ in _run(collector, 3):
        assert batch.old_logp_bt is None
        _assert_same(batch, _brute_force(inner, s, 1)[0])


def test_expert_rows_get_the_stale_policys_logp():
    """With expert rows inside, π_old of an expert row is the stale policy's log-prob of the
    expert tokens (their behaviour log-probs are 0: the expert's policy is unknown)."""
    ctx = _context()
    inner = collectors.with_expert_rows(1)(collectors.group_samples(ctx), ctx)
    collector = collectors.stale(1)(inner, ctx)
    for s, batch, _, _ in _run(collector, 3):
        expert = np.asarray(batch.source_b) == EXPERT
        assert expert.any()
        old = np.asarray(batch.old_logp_bt)
        np.testing.assert_array_equal(old[~expert], np.asarray(batch.behavior_logp_bt)[~expert])
        scored = steps.score(_model()[0], _params_at(max(s - 1, 0)), batch, temperature=1.0)["logp_bt"]
        want = np.asarray(scored) * np.asarray(batch.mask_bt)
        # Batch log-probs are float32: the float64 score rounded once (half an ulp, 2^-24 relative).
        np.testing.assert_allclose(old[expert], want[expert], rtol=2.0 ** -23, atol=0)
        assert np.all(old[expert][np.asarray(batch.mask_bt)[expert] > 0] < 0)


def test_the_snapshots_are_checkpointed(tmp_path):
    ctx = _context()
    collector = collectors.stale(2)(collectors.group_samples(ctx), ctx)
    *_, (_, _, cstate, _) = _run(collector, 3)
    state = _state(collector, 3, cstate)
    ckpt = checkpoint.PhaseCheckpointer(str(tmp_path / "ckpt"))
    ckpt.save(3, state, position=0, global_step=3)
    restored = ckpt.load(_state(collector, 0)).state
    ckpt.close()
    _assert_same(restored.collector_state, state.collector_state)


def test_prepare_keeps_a_collector_provided_old_logp():
    """π_old from the collector is used as is, even when the algorithm would recompute it; a
    batch without one still gets the recomputed π_old."""
    ctx = _context()
    graphdef = _model()[0]
    algo = algorithms.grpo(kl_coef=0.0, num_epochs=2)
    assert algo.updates_per_batch > 1
    collector = collectors.stale(1)(collectors.group_samples(ctx), ctx)
    *_, (s, batch, _, _) = _run(collector, 2)
    state = steps.init_state(_params_at(s), algo, jax.random.key(0)).replace(step=jnp.int32(s))
    kept, _ = steps.prepare(state, batch, algorithm=algo, graphdef=graphdef)
    np.testing.assert_array_equal(np.asarray(kept.old_logp_bt), np.asarray(batch.behavior_logp_bt))
    recomputed, _ = steps.prepare(state, batch.replace(old_logp_bt=None), algorithm=algo, graphdef=graphdef)
    want = steps.score(graphdef, state.params, batch)["logp_bt"]
    np.testing.assert_allclose(np.asarray(recomputed.old_logp_bt), np.asarray(want), rtol=1e-9, atol=1e-12)
    assert not np.allclose(np.asarray(recomputed.old_logp_bt), np.asarray(kept.old_logp_bt))


@pytest.mark.parametrize("name", sorted(n for n in CASES if n not in ("stale", "masked_groups")))
def test_other_collectors_leave_old_logp_to_the_trainer(name):
    """Only ``stale`` (the behaviour policy) and ``masked_groups`` (NLPO's masked π_old, which the
    trainer's unmasked forward could not recompute) provide π_old, so the rule "recompute when the
    batch has none" changes nothing for any other collector."""
    assert CASES[name](_context()).example(PROMPTS).old_logp_bt is None


def test_invalid_options_fail_with_the_field_name():
    with pytest.raises(ValueError, match="staleness=-1 must be an int >= 0"):
        collectors.stale(-1)
    with pytest.raises(ValueError, match="staleness_old_policy='current'"):
        collectors.stale(1, old_policy="current")
    ctx = _context()
    with pytest.raises(ValueError, match="no behavior_logp_bt"):
        collectors.stale(1)(collectors.demonstrations(ctx), ctx).example(PROMPTS)

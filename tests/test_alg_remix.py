"""Tests for ReMix (polrl.algorithms.remix): the KL-Convex term by hand, the first batch (empty
buffer) equals GRPO, replayed rows use their own behaviour log-probs, jit == no-jit, a tiny-model
run, and the follow-up phase (policy reincarnation) in build_spec."""
import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms, objectives, ops
from polrl.algorithms.remix import kl_convex_penalty
from polrl.core import REPLAY, Batch, Collector, PolicyState, total_loss
from polrl.models import TransformerConfig
from polrl.train import steps
from polrl.train.build import build_spec
from tiny_models import tiny_params

V, G, B, T, P = 8, 4, 8, 3, 2


def _batch(seed: int = 0, version: int = 0) -> Batch:
    """Two groups of four rows with varying rewards; old/ref/behaviour log-probs filled."""
    rng = np.random.default_rng(seed)
    mask = np.ones((B, T), np.float32)
    mask[0, -1] = 0.0
    mask[5, 1:] = 0.0
    logp = lambda: (-rng.uniform(0.2, 2.0, (B, T)) * mask).astype(np.float32)
    return Batch(
        prompt_bp=rng.integers(1, V - 1, (B, P)).astype(np.int32),
        prompt_valid_bp=np.ones((B, P), bool),
        response_bt=rng.integers(1, V - 1, (B, T)).astype(np.int32),
        mask_bt=mask,
        reward_b=np.array([1, 0, 0, 1, 0, 0, 1, 0], np.float32),
        group_b=(np.arange(B) // G).astype(np.int32),
        behavior_logp_bt=logp(),
        version_b=np.full((B,), version, np.int32),
        old_logp_bt=logp(),
        ref_logp_bt=logp(),
        group_size=G,
    )


def _example() -> Batch:
    """Shapes of the sampled rows (no π_old / reference log-probs)."""
    b = _batch().replace(old_logp_bt=None, ref_logp_bt=None)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), b)


def _k3(logp, other):
    d = other - logp
    return np.exp(d) - d - 1


# ----------------------------------------------------------------------------- KL-Convex


def test_kl_convex_hand_values():
    logp = np.array([[-1.0, -0.5]], np.float32)
    ref = np.array([[-1.5, -0.5]], np.float32)
    old = np.array([[-0.8, -1.0]], np.float32)
    batch = Batch(prompt_bp=np.zeros((1, 1), np.int32), prompt_valid_bp=np.ones((1, 1), bool),
                  response_bt=np.zeros((1, 2), np.int32), mask_bt=np.ones((1, 2), np.float32),
                  logp_bt=logp, ref_logp_bt=ref, old_logp_bt=old)
    out, _ = kl_convex_penalty(coef=0.1, mix=0.25).apply(batch, ())
    # k3(-1, -1.5): d = -0.5 → e^-0.5 + 0.5 - 1 = 0.1065307;  k3(-0.5, -0.5) = 0
    # k3(-1, -0.8): d = 0.2 → e^0.2 - 1.2 = 0.0214028;        k3(-0.5, -1): d = -0.5 → 0.1065307
    expected = 0.1 * (0.25 * np.array([0.1065307, 0.0]) + 0.75 * np.array([0.0214028, 0.1065307]))
    np.testing.assert_allclose(out.terms["kl"][0], expected, rtol=1e-5)
    np.testing.assert_allclose(out.metrics["kl_ref"], 0.1065307 / 2, rtol=1e-5)
    np.testing.assert_allclose(out.metrics["kl_old"], (0.0214028 + 0.1065307) / 2, rtol=1e-5)


def test_kl_convex_endpoints():
    batch = _batch().replace(logp_bt=jnp.asarray(_batch(1).old_logp_bt))
    full_ref, _ = kl_convex_penalty(coef=0.3, mix=1.0).apply(batch, ())
    grpo_kl, _ = objectives.kl_penalty(coef=0.3).apply(batch, ())
    np.testing.assert_allclose(full_ref.terms["kl"], grpo_kl.terms["kl"], rtol=1e-6)
    only_old = kl_convex_penalty(coef=0.3, mix=0.0)
    assert only_old.needs == frozenset()
    out, _ = only_old.apply(batch.replace(ref_logp_bt=None), ())
    np.testing.assert_allclose(out.terms["kl"], 0.3 * _k3(np.asarray(batch.logp_bt), batch.old_logp_bt), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="mix"):
        kl_convex_penalty(coef=0.1, mix=1.5)


# ----------------------------------------------------------------------------- the noun


def _remix(**kw):
    kw = {"replay_groups": 2, "buffer_groups": 4, "kl_coef": 0.05, **kw}
    return algorithms.remix(**kw)


def _replaying(alg) -> Collector:
    """The noun's collector wrapper around a collector that returns ``data["batch"]`` (the
    sampled rows: no π_old or reference log-probs yet)."""
    inner = Collector(init=lambda prompts: (),
                      collect=lambda cs, state, data, rng: (data["batch"], cs, {}),
                      example=lambda prompts: _example())
    return alg.collector(inner, None)


def _collect(collector, cstate, batch, step):
    """(grown batch with π_old / π_ref filled like the trainer would: the fresh rows' from
    ``batch``, the replayed rows' arbitrary, collector state)."""
    sampled = batch.replace(old_logp_bt=None, ref_logp_bt=None)
    policy = PolicyState(step=jnp.int32(step), rng=None, params=None, opt_state=None)
    grown, cstate, _ = collector.collect(cstate, policy, {"batch": sampled}, jax.random.key(step))
    extra = grown.batch_size - B
    pad = lambda x: None if x is None else jnp.concatenate([jnp.asarray(x), jnp.full((extra, T), -7.0)])
    return grown.replace(old_logp_bt=pad(batch.old_logp_bt), ref_logp_bt=pad(batch.ref_logp_bt)), cstate


def _loss(alg, prepared_input, logp_bt):
    """(loss, d loss / d logp_bt, prepared batch) of prepare → objective with ``logp_bt`` as the
    policy's log-probs."""
    prepared, _ = alg.prepare.apply(prepared_input, alg.prepare.init(), step=jnp.int32(0), rng=jax.random.key(0))

    def f(lp):
        b = prepared.replace(logp_bt=lp, entropy_bt=jnp.zeros_like(lp))
        return total_loss(alg.objective.apply(b, alg.objective.init(), step=0, rng=jax.random.key(1))[0])

    lp = jnp.asarray(logp_bt)
    if lp.shape[0] < prepared.batch_size:  # replayed rows: any values (masked or tested separately)
        lp = jnp.concatenate([lp, jnp.zeros((prepared.batch_size - lp.shape[0], T))])
    loss, grad = jax.jit(jax.value_and_grad(f))(lp)
    return loss, grad, prepared


def test_noun_declares_needs_and_collects_replay():
    assert _remix().needs == frozenset({"old_logp", "ref_logp"})
    assert _remix(kl_mix=0.0).needs == frozenset({"old_logp"})
    assert _remix(kl_coef=0.0).needs == frozenset({"old_logp"})
    assert _remix().updates_per_batch == 4
    assert _replaying(_remix()).example(2).batch_size == B + 2 * G


def test_first_batch_equals_grpo():
    """Empty buffer: replayed rows are masked, so ReMix is GRPO (λ = 1 KL) on the fresh rows."""
    alg = _remix(kl_mix=1.0)
    collector = _replaying(alg)
    batch = _batch()
    grown, _ = _collect(collector, collector.init(2), batch, 0)
    logp = jnp.asarray(_batch(2).old_logp_bt)
    loss, grad, prepared = _loss(alg, grown, logp)
    grpo = algorithms.grpo(kl_coef=0.05)
    g_batch, _ = grpo.prepare.apply(batch, grpo.prepare.init())

    def f(lp):
        return total_loss(grpo.objective.apply(g_batch.replace(logp_bt=lp, entropy_bt=jnp.zeros_like(lp)), grpo.objective.init())[0])

    g_loss, g_grad = jax.jit(jax.value_and_grad(f))(logp)
    np.testing.assert_allclose(loss, g_loss, rtol=1e-6)
    np.testing.assert_allclose(grad[:B], g_grad, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(grad[B:], 0.0)
    np.testing.assert_array_equal(prepared.source_b[B:], REPLAY)


def test_replayed_rows_use_their_behaviour_logp():
    """Second batch: the loss by hand, with each replayed row's ratio against the log-probs of
    the policy that sampled it."""
    alg = _remix(kl_coef=0.0, replay_groups=2, buffer_groups=2, aggregation="token_mean")
    collector = _replaying(alg)
    first = _batch(0, version=0).replace(ref_logp_bt=None)
    second = _batch(1, version=1).replace(ref_logp_bt=None)
    _, cstate = _collect(collector, collector.init(2), first, 0)
    grown, _ = _collect(collector, cstate, second, 1)
    # both stored groups come back (R = C = 2), in a drawn order
    first_group_first = bool((np.asarray(grown.response_bt[B:B + G]) == first.response_bt[:G]).all())
    rep_rows = np.arange(B) if first_group_first else np.concatenate([np.arange(G, B), np.arange(G)])
    np.testing.assert_array_equal(grown.response_bt[B:], first.response_bt[rep_rows])
    logp_fresh = np.asarray(_batch(3).old_logp_bt)
    logp_replay = np.asarray(_batch(4).old_logp_bt)
    loss, _, prepared = _loss(alg, grown, np.concatenate([logp_fresh, logp_replay]))
    np.testing.assert_allclose(prepared.old_logp_bt[B:], first.behavior_logp_bt[rep_rows])

    def pg(logp, old, adv, mask):
        ratio = np.exp(logp - old)
        l = np.maximum(-adv * ratio, -adv * np.clip(ratio, 0.8, 1.2))
        return (l * mask).sum(), mask.sum()

    adv = lambda b: np.asarray(ops.group_advantages(jnp.asarray(b.reward_b), jnp.asarray(b.group_b), B))[:, None] * b.mask_bt
    s1, n1 = pg(logp_fresh, second.old_logp_bt, adv(second), second.mask_bt)
    s2, n2 = pg(logp_replay, first.behavior_logp_bt[rep_rows], adv(first)[rep_rows], first.mask_bt[rep_rows])
    np.testing.assert_allclose(loss, (s1 + s2) / (n1 + n2), rtol=1e-5)
    np.testing.assert_array_equal(prepared.version_b[B:], 0)


def test_jit_matches_no_jit():
    alg = _remix()
    collector = _replaying(alg)
    _, cstate = _collect(collector, collector.init(2), _batch(0), 0)
    grown, _ = _collect(collector, cstate, _batch(1), 1)
    logp = jnp.concatenate([jnp.asarray(_batch(3).old_logp_bt)] * 2)
    fn = lambda b, lp: _loss(alg, b, lp)[:2]
    eager, jitted = fn(grown, logp), jax.jit(fn)(grown, logp)
    np.testing.assert_allclose(eager[0], jitted[0], rtol=1e-5)
    np.testing.assert_allclose(eager[1], jitted[1], rtol=1e-5, atol=1e-7)


@functools.lru_cache(maxsize=None)
def _model():
    cfg = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16)
    return tiny_params(cfg)


def test_minibatches_must_divide_the_grown_batch():
    alg = _remix(replay_groups=1)  # 2 fresh + 1 replayed groups over 2 minibatches
    collector = _replaying(alg)
    graphdef, params = _model()
    state = steps.init_state(params, alg, jax.random.key(0), ref_params=params)
    with pytest.raises(ValueError, match="num_minibatches=2"):
        jax.eval_shape(functools.partial(steps.train_on_batch, algorithm=alg, graphdef=graphdef), state,
                       collector.example(2))


def test_tiny_model_collect_prepare_and_update():
    alg = algorithms.remix(learning_rate=1e-2, replay_groups=2, buffer_groups=4, kl_coef=0.05)
    collector = _replaying(alg)
    graphdef, params = _model()
    state = steps.init_state(params, alg, jax.random.key(0), ref_params=params, collector=collector, prompts=2)

    @jax.jit
    def step(state, batch):
        grown, cstate, metrics = collector.collect(state.collector_state, state, {"batch": batch}, jax.random.key(9))
        state, train_metrics = steps.train_on_batch(state.replace(collector_state=cstate), grown,
                                                    algorithm=alg, graphdef=graphdef)
        return state, {**metrics, **train_metrics}

    fresh = lambda k: _batch(k, version=k).replace(old_logp_bt=None, ref_logp_bt=None)
    history = []
    for k in range(3):
        state, metrics = step(state, fresh(k))
        history.append(jax.tree.map(float, metrics))
    assert int(state.step) == 3
    assert [h["replay/valid_frac"] for h in history] == [0.0, 1.0, 1.0]
    assert history[1]["replay/staleness_mean"] == 1.0
    assert history[2]["replay/filled_frac"] == 1.0
    for h in history:
        assert np.isfinite(h["loss"]) and h["skipped_nonfinite"] == 0.0
        assert {"pg", "kl", "kl_ref", "kl_old", "clip_frac", "offpolicy/ess"} <= set(h)


# ----------------------------------------------------------------------------- reincarnation


def test_config_follow_up_phase(monkeypatch, tmp_path):
    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path / "data"))
    config = importlib.import_module("experiments.arithmetic_remix").get_config("smoke")
    spec = build_spec(config, progress=False)
    names = [ph.name for ph in spec.phases]
    assert names == ["sft_warmup", "rl", "reincarnation"]
    steps_by_name = {ph.name: ph.steps for ph in spec.phases}
    assert steps_by_name["rl"] + steps_by_name["reincarnation"] == config.total_steps
    assert spec.phases[1].algorithm.updates_per_batch == 4
    assert spec.phases[2].algorithm.updates_per_batch == 1
    assert "old_logp" not in spec.phases[2].algorithm.needs  # on-policy again, no replay
    assert spec.phases[2].collector.example(4).batch_size == 4 * config.rollout.group_size
    config.then.switch_fraction = 1.0
    with pytest.raises(ValueError, match="switch_fraction"):
        build_spec(config, progress=False)

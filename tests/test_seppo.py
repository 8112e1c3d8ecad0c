"""SePPO (arXiv 2410.05255): the loss and its Anchor-based Adaptive Flipper against hand-computed
float64 values, the checkpoint pool's refresh schedule and choice on a hand-made sequence of
steps, jit == no-jit, and one-line config errors. The smoke experiment runs in
tests/test_experiments.py (``-k seppo``). Runs on the float64 tiny model of the contract test."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms, collectors
from polrl.algorithms.seppo import seppo_loss, seppo_pair_loss
from polrl.collectors.checkpoint_pool import choose_slot, pool_schedule
from polrl.core import EXPERT, ON_POLICY, Batch
from polrl.train import steps
from test_collectors import PAD, _context, _data, _model

PROMPTS = 2


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def _softplus(x):
    return np.log1p(np.exp(np.asarray(x, np.float64)))


# ----------------------------------------------------------------------------- the loss and AAF

R_W = np.array([0.5, -0.3, 0.0, -1.2])
R_L = np.array([-1.0, -2.0, 0.7, 3.0])


def test_pair_loss_and_flipper_by_hand():
    beta = 0.1
    loss, flipped = seppo_pair_loss(jnp.asarray(R_W), jnp.asarray(R_L), beta=beta)
    # pair 0: r_w ≥ 0 → I = +1, z = 0.1 (0.5 + 1.0) = 0.15;  pair 1: r_w < 0 → I = −1, z = 0.1 (−0.3 − 2.0) = −0.23
    # pair 2: r_w = 0 → I = +1, z = 0.1 (0 − 0.7) = −0.07;   pair 3: I = −1, z = 0.1 (−1.2 + 3.0) = 0.18
    np.testing.assert_array_equal(np.asarray(flipped), [False, True, False, True])
    np.testing.assert_allclose(np.asarray(loss), _softplus([-0.15, 0.23, 0.07, -0.18]), rtol=1e-12)
    plain, none = seppo_pair_loss(jnp.asarray(R_W), jnp.asarray(R_L), beta=beta, flip=False)
    assert not np.asarray(none).any()
    # DPO's z = β (r_w − r_l): 0.15, 0.17, −0.07, −0.42
    np.testing.assert_allclose(np.asarray(plain), _softplus([-0.15, -0.17, 0.07, 0.42]), rtol=1e-12)


def test_flipped_sample_is_pushed_up_and_the_flip_has_no_gradient():
    beta = 0.5
    grad_w, grad_l = jax.grad(lambda w, l: seppo_pair_loss(w, l, beta=beta)[0].sum(), argnums=(0, 1))(
        jnp.asarray(R_W), jnp.asarray(R_L))
    sign = np.array([1.0, -1.0, 1.0, -1.0])
    z = beta * (R_W - sign * R_L)
    s = 1.0 / (1.0 + np.exp(z))  # σ(−z)
    # dL/dr_w = −β σ(−z) (I is a constant);  dL/dr_l = +I β σ(−z): > 0 pushes y_l down, < 0 (flipped) pushes it up
    np.testing.assert_allclose(np.asarray(grad_w), -beta * s, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(grad_l), sign * beta * s, rtol=1e-12)
    assert (np.asarray(grad_l)[[1, 3]] < 0).all() and (np.asarray(grad_l)[[0, 2]] > 0).all()


def _pair_batch():
    """Two pairs; the labelled answer (EXPERT) is row 0 of pair 0 and row 1 of pair 1."""
    logp = np.array([[-0.2, -0.3, -0.4], [-1.0, -0.5, -9.0], [-0.7, -0.1, -0.2], [-0.3, -0.3, -0.3]])
    ref = np.array([[-0.4, -0.4, -0.4], [-0.8, -0.6, -1.0], [-0.6, -0.3, -0.3], [-0.1, -0.2, -0.5]])
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 1, 1]], np.float64)
    batch = Batch(
        prompt_bp=np.ones((4, 2), np.int32), prompt_valid_bp=np.ones((4, 2), bool),
        response_bt=np.ones((4, 3), np.int32), mask_bt=jnp.asarray(mask),
        source_b=np.array([EXPERT, ON_POLICY, ON_POLICY, EXPERT], np.int32),
        group_b=np.array([0, 0, 1, 1], np.int32), aux={"pool_ref_logp_bt": jnp.asarray(ref * mask)},
        logp_bt=jnp.asarray(logp), group_size=2,
    )
    # r per row: −0.9 + 1.2 = 0.3 (row 0), −1.5 + 1.4 = −0.1 (row 1, the masked −9 left out),
    # −1.0 + 1.2 = 0.2 (row 2), −0.9 + 0.8 = −0.1 (row 3)
    # pair 0: r_w = 0.3, r_l = −0.1 → I = +1;  pair 1: r_w = −0.1 (row 3), r_l = 0.2 → I = −1
    return batch, np.array([0.3, -0.1]), np.array([-0.1, 0.2])


def test_seppo_loss_transform_by_hand():
    beta = 0.1
    batch, r_w, r_l = _pair_batch()
    out, _ = seppo_loss(beta=beta).apply(batch, ())
    z = beta * (r_w - np.array([1.0, -1.0]) * r_l)  # 0.04, 0.01
    np.testing.assert_allclose(float(out.losses["seppo"]), _softplus(-z).mean(), rtol=1e-12)
    np.testing.assert_allclose(float(out.metrics["seppo_flipped"]), 0.5)
    np.testing.assert_allclose(float(out.metrics["seppo_anchor"]), r_w.mean(), rtol=1e-12)
    np.testing.assert_allclose(float(out.metrics["pref_margin"]), (r_w - r_l).mean(), rtol=1e-12)
    np.testing.assert_allclose(float(out.metrics["pref_accuracy"]), 0.5)  # pair 1: r_w < r_l
    jitted, _ = jax.jit(lambda b: seppo_loss(beta=beta).apply(b, ()))(batch)
    np.testing.assert_allclose(float(jitted.losses["seppo"]), float(out.losses["seppo"]), rtol=1e-12)


def test_seppo_noun_trains_on_a_pool_batch_without_a_phase_reference():
    alg = algorithms.seppo(learning_rate=1e-2)
    assert alg.needs == frozenset()  # the reference is the pool member's, computed by the collector
    collector = collectors.checkpoint_pool(_context(), pool_size=2, refresh_every=1)
    state = steps.init_state(_model()[1], alg, jax.random.key(0), collector=collector, prompts=PROMPTS)
    assert state.ref_params is None
    batch, _, _ = collector.collect(state.collector_state, state, _data(0, PROMPTS), jax.random.key(1))
    new, metrics = jax.jit(lambda s, b: steps.train_on_batch(s, b, algorithm=alg, graphdef=_model()[0]))(state, batch)
    # step 0: the member is θ_0 = θ, so r = 0 (up to the float32 reference log-probs) and the loss is log 2
    np.testing.assert_allclose(float(metrics["seppo"]), np.log(2.0), rtol=1e-5)
    moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params)))
    assert moved > 1e-4


# ----------------------------------------------------------------------------- the pool

def test_refresh_schedule_by_hand():
    # K = 3 slots, a snapshot every M = 2 steps: θ_0 → slot 0, θ_2 → 1, θ_4 → 2, θ_6 → 0, θ_8 → 1
    want = {0: (True, 0, 1), 1: (False, 0, 1), 2: (True, 1, 2), 3: (False, 1, 2), 4: (True, 2, 3),
            5: (False, 2, 3), 6: (True, 0, 3), 7: (False, 0, 3), 8: (True, 1, 3)}
    for s, (write, slot, filled) in want.items():
        got = pool_schedule(s, 3, 2)
        assert (bool(got[0]), int(got[1]), int(got[2])) == (write, slot, filled), s


def test_choice_is_uniform_over_the_filled_slots():
    keys = jax.random.split(jax.random.key(0), 3000)
    slots = np.asarray(jax.vmap(lambda k: choose_slot(k, 3))(keys))
    counts = np.bincount(slots, minlength=5)
    assert counts[3:].sum() == 0
    assert (np.abs(counts[:3] - 1000) < 120).all(), counts  # binomial std ≈ 26


def _params_at(s):
    """θ_s: the tiny model's parameters moved by a step-dependent amount (distinct per step)."""
    return jax.tree.map(lambda x: x + 0.05 * s * jnp.cos(jnp.arange(x.size, dtype=x.dtype).reshape(x.shape) + s),
                        _model()[1])


def test_pool_uses_the_right_snapshot_at_each_step():
    """K = 2, M = 2 over steps 0..6: the versions held, the chosen member and its rows and
    reference log-probs against brute force (the sampler and the scorer run with θ_version)."""
    ctx = _context()
    pool = collectors.checkpoint_pool(ctx, pool_size=2, refresh_every=2)
    sampler = collectors.group_samples(ctx, group_size=1)
    held = {0: [0, -1], 1: [0, -1], 2: [0, 2], 3: [0, 2], 4: [4, 2], 5: [4, 2], 6: [4, 6]}
    cstate = pool.init(PROMPTS)
    base = steps.init_state(_model()[1], algorithms.seppo(), jax.random.key(0), collector=pool, prompts=PROMPTS)
    chosen = set()
    for s in range(7):
        state = base.replace(step=jnp.int32(s), params=_params_at(s))
        rng, data = jax.random.key(100 + s), _data(s, PROMPTS)
        batch, cstate, metrics = pool.collect(cstate, state, data, rng)
        versions = np.asarray(cstate["versions"])
        assert versions.tolist() == held[s], s
        for slot, v in enumerate(versions):  # each slot holds exactly θ_v
            if v >= 0:
                for a, b in zip(jax.tree.leaves(cstate["snapshots"]), jax.tree.leaves(_params_at(int(v)))):
                    np.testing.assert_array_equal(np.asarray(a)[slot], np.asarray(b))
        c = int(metrics["pool_slot"])
        v = int(versions[c])
        assert v in [x for x in held[s] if x >= 0]
        chosen.add((s, v))
        assert np.asarray(batch.aux["pool_slot_b"]).tolist() == [c] * (2 * PROMPTS)
        assert np.asarray(batch.source_b).tolist() == [EXPERT, ON_POLICY] * PROMPTS
        assert np.asarray(batch.version_b).tolist() == [s, v] * PROMPTS
        assert int(metrics["pool_staleness"]) == s - v
        # the losing rows: the sampler run with θ_v (as step v) on the second half of the key
        member = base.replace(step=jnp.int32(v), params=_params_at(v))
        brute, _, _ = sampler.collect((), member, data, jax.random.split(rng)[1])
        np.testing.assert_array_equal(np.asarray(batch.response_bt)[1::2], np.asarray(brute.response_bt))
        np.testing.assert_array_equal(np.asarray(batch.behavior_logp_bt)[1::2], np.asarray(brute.behavior_logp_bt))
        # the winning rows: the labelled answers, padded to the sample width
        answer = np.where(np.asarray(data["answer_valid_ba"]), np.asarray(data["answer_ba"]), PAD)
        np.testing.assert_array_equal(np.asarray(batch.response_bt)[0::2, :3], answer)
        assert (np.asarray(batch.mask_bt)[0::2, 3:] == 0).all()
        # the reference log-probs: θ_v's score of both rows
        ref = steps.score(ctx.graphdef, _params_at(v), batch, temperature=ctx.sampling.scoring_temperature)["logp_bt"]
        # (Batch floats are float32)
        np.testing.assert_allclose(np.asarray(batch.aux["pool_ref_logp_bt"]), np.asarray(ref) * np.asarray(batch.mask_bt),
                                   rtol=1e-6, atol=1e-7)
    assert (1, 0) in chosen and (0, 0) in chosen  # before the second snapshot only θ_0 exists


def test_pool_jit_equals_eager_over_steps():
    pool = collectors.checkpoint_pool(_context(), pool_size=2, refresh_every=1)
    base = steps.init_state(_model()[1], algorithms.seppo(), jax.random.key(0), collector=pool, prompts=PROMPTS)
    jitted = jax.jit(pool.collect)
    c_eager = c_jit = pool.init(PROMPTS)
    for s in range(3):
        state = base.replace(step=jnp.int32(s), params=_params_at(s))
        a = jitted(c_jit, state, _data(s, PROMPTS), jax.random.key(7 + s))
        b = pool.collect(c_eager, state, _data(s, PROMPTS), jax.random.key(7 + s))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-9, atol=1e-12)
        c_jit, c_eager = a[1], b[1]


# ----------------------------------------------------------------------------- config errors

@pytest.mark.parametrize("make, keyword", [
    (lambda: collectors.checkpoint_pool(_context(), pool_size=0), "pool_size"),
    (lambda: collectors.checkpoint_pool(_context(), refresh_every=0), "refresh_every"),
    (lambda: collectors.checkpoint_pool(_context(), pool_size=2.5), "pool_size"),
    (lambda: algorithms.seppo(beta=0.0), "beta"),
    (lambda: algorithms.seppo(beta=float("inf")), "beta"),
    (lambda: algorithms.seppo(flip="yes"), "flip"),
])
def test_config_errors_are_one_line_and_name_the_keyword(make, keyword):
    with pytest.raises(ValueError, match=keyword) as err:
        make()
    assert "\n" not in str(err.value)


def test_unknown_keyword_and_missing_pool_rows():
    with pytest.raises(TypeError, match="seppo"):
        algorithms.seppo(gamma=1.0)
    batch, _, _ = _pair_batch()
    with pytest.raises(ValueError, match="checkpoint_pool"):
        seppo_loss().apply(batch.replace(aux={}), ())
    with pytest.raises(ValueError, match="group_size"):
        seppo_loss().apply(batch.replace(group_size=4), ())

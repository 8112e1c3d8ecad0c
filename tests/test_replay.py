"""Tests for polrl.collectors.with_replay: storage order, sampling, masks, version stamps,
checkpoint round trip, jit == no-jit, and its errors."""
import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl.collectors import with_replay
from polrl.core import ON_POLICY, REPLAY, Batch, Collector, PolicyState
from polrl.train.checkpoint import PhaseCheckpointer

G, P, T = 2, 2, 3  # rows per group, prompt and response widths


def _batch(offset: int, groups: int = 2, version: int = 0) -> Batch:
    """``groups`` groups of G rows; every value encodes (offset, row) so a row is recognisable."""
    n = groups * G
    rows = offset + np.arange(n)
    mask = np.ones((n, T), np.float32)
    mask[1, 2] = 0.0
    return Batch(
        prompt_bp=np.repeat(np.arange(groups) + offset, G)[:, None].repeat(P, 1).astype(np.int32),
        prompt_valid_bp=np.ones((n, P), bool),
        response_bt=(rows[:, None] * 10 + np.arange(T)).astype(np.int32),
        mask_bt=mask,
        reward_b=rows.astype(np.float32),
        group_b=(np.arange(n) // G).astype(np.int32),
        behavior_logp_bt=-(rows[:, None] + 0.5 + np.zeros(T)).astype(np.float32),
        version_b=np.full((n,), version, np.int32),
        group_size=G,
    )


def _shapes(groups: int = 2) -> Batch:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), _batch(0, groups))


def _replay(capacity, num_replay, groups=2, **kw) -> Collector:
    """``with_replay`` around a collector that returns ``data["batch"]`` as it is."""
    inner = Collector(init=lambda prompts: (), collect=lambda cs, state, data, rng: (data["batch"], cs, {}),
                      example=lambda prompts: _shapes(groups))
    return with_replay(capacity=capacity, num_replay=num_replay, **kw)(inner, None)


def _policy(step):
    return PolicyState(step=jnp.int32(step), rng=None, params=None, opt_state=None)


def _apply(t, batch, state, step, seed=0):
    """(grown batch with the metrics in ``batch.metrics``, the buffer state)."""
    out, cstate, metrics = t.collect(state, _policy(step), {"batch": batch}, jax.random.key(seed))
    return out.add_metrics(**metrics), cstate


def _buffer(cstate):
    return cstate["buffer"]


def test_init_shapes():
    t = _replay(capacity=3, num_replay=2)
    state = _buffer(t.init(2))
    assert state["response_bt"].shape == (3, G, T) and state["response_bt"].dtype == jnp.int32
    assert state["prompt_bp"].shape == (3, G, P) and state["prompt_valid_bp"].dtype == jnp.bool_
    assert state["reward_b"].shape == (3, G) and state["version_b"].dtype == jnp.int32
    assert not state["filled_c"].any() and int(state["cursor"]) == 0
    example = t.example(2)
    assert example.batch_size == 4 + 2 * G and example.source_b.dtype == jnp.int32


def test_storage_order_is_a_ring():
    t = _replay(capacity=3, num_replay=1)
    cstate = t.init(2)
    _, cstate = _apply(t, _batch(0, version=0), cstate, step=0)      # rows 0..3 → slots 0, 1
    state = _buffer(cstate)
    np.testing.assert_array_equal(state["filled_c"], [True, True, False])
    assert int(state["cursor"]) == 2
    _, cstate = _apply(t, _batch(100, version=1), cstate, step=1)    # rows 100..103 → slots 2, 0
    state = _buffer(cstate)
    assert int(state["cursor"]) == 1 and state["filled_c"].all()
    # slot 0 was overwritten by the second batch's second group, slot 1 keeps the first batch's.
    np.testing.assert_array_equal(state["reward_b"], [[102, 103], [2, 3], [100, 101]])
    np.testing.assert_array_equal(state["version_b"], [[1, 1], [0, 0], [1, 1]])
    np.testing.assert_array_equal(state["response_bt"][1], [[20, 21, 22], [30, 31, 32]])
    np.testing.assert_allclose(state["behavior_logp_bt"][2], [[-100.5] * 3, [-101.5] * 3])
    np.testing.assert_array_equal(state["prompt_bp"][0], [[101, 101], [101, 101]])


@pytest.mark.parametrize("how", ["masked", "zero_variance"])
def test_groups_without_signal_are_not_stored(how):
    t = _replay(capacity=3, num_replay=1, skip_zero_variance=how == "zero_variance")
    cstate = t.init(2)
    first = _batch(0)
    if how == "masked":  # group 0 has no valid token
        first = first.replace(mask_bt=first.mask_bt * np.array([0, 0, 1, 1], np.float32)[:, None])
    else:  # group 0's rewards are equal
        first = first.replace(reward_b=np.array([1, 1, 2, 3], np.float32))
    _, cstate = _apply(t, first, cstate, step=0)
    state = _buffer(cstate)
    np.testing.assert_array_equal(state["filled_c"], [True, False, False])
    assert int(state["cursor"]) == 1
    np.testing.assert_array_equal(state["reward_b"][0], [2, 3])  # the second group, in the first slot
    _, cstate = _apply(t, _batch(100), cstate, step=1)  # both groups kept: slots 1, 2
    state = _buffer(cstate)
    np.testing.assert_array_equal(state["reward_b"], [[2, 3], [100, 101], [102, 103]])
    assert int(state["cursor"]) == 0 and state["filled_c"].all()


def test_first_batch_replays_nothing():
    t = _replay(capacity=4, num_replay=2)
    fresh = _batch(0)
    out, _ = _apply(t, fresh, t.init(2), step=0)
    assert out.batch_size == 4 + 2 * G and out.group_size == G
    np.testing.assert_array_equal(out.response_bt[:4], fresh.response_bt)
    np.testing.assert_array_equal(out.mask_bt[:4], fresh.mask_bt)
    np.testing.assert_array_equal(out.behavior_logp_bt[:4], fresh.behavior_logp_bt)
    np.testing.assert_array_equal(out.mask_bt[4:], 0.0)
    np.testing.assert_array_equal(out.source_b, [ON_POLICY] * 4 + [REPLAY] * 4)
    np.testing.assert_array_equal(out.group_b, [0, 0, 1, 1, 2, 2, 3, 3])
    assert float(out.metrics["replay/valid_frac"]) == 0.0
    assert float(out.metrics["replay/filled_frac"]) == 0.5


def test_replayed_rows_carry_their_own_behaviour_logp_and_stamps():
    t = _replay(capacity=2, num_replay=2)
    state = t.init(2)
    first = _batch(0, version=3)
    _, state = _apply(t, first, state, step=3)
    out, _ = _apply(t, _batch(100, version=5), state, step=5, seed=1)
    rep = slice(4, 8)
    order = np.asarray(out.reward_b[rep]).astype(int)  # which stored rows came back, in order
    assert sorted(order.tolist()) == [0, 1, 2, 3]
    np.testing.assert_array_equal(out.response_bt[rep], first.response_bt[order])
    np.testing.assert_array_equal(out.mask_bt[rep], first.mask_bt[order])
    np.testing.assert_allclose(out.behavior_logp_bt[rep], first.behavior_logp_bt[order])
    np.testing.assert_array_equal(out.prompt_bp[rep], first.prompt_bp[order])
    np.testing.assert_array_equal(out.version_b, [5] * 4 + [3] * 4)
    np.testing.assert_array_equal(out.source_b[rep], REPLAY)
    # whole groups come back together: rows (0, 1) or (2, 3) side by side
    assert {tuple(order[:2]), tuple(order[2:])} == {(0, 1), (2, 3)}
    assert float(out.metrics["replay/staleness_mean"]) == 2.0
    assert float(out.metrics["replay/valid_frac"]) == 1.0


def _replays(t, batch, state, step, num_seeds):
    """The grown batch for ``num_seeds`` rng keys at once (one jitted, vmapped collect)."""
    keys = jax.random.split(jax.random.key(0), num_seeds)

    def one(key):
        out, _, metrics = t.collect(state, _policy(step), {"batch": batch}, key)
        return out.add_metrics(**metrics)

    return jax.jit(jax.vmap(one))(keys)


def test_samples_only_filled_slots_uniformly():
    t = _replay(capacity=5, num_replay=3)
    state = t.init(2)
    _, state = _apply(t, _batch(0), state, step=0)  # slots 0, 1 filled; 2, 3, 4 empty
    out = _replays(t, _batch(100), state, step=1, num_seeds=40)
    for k in range(40):
        valid = np.asarray(out.mask_bt[k, 4:]).sum(-1) > 0
        # both filled groups are always drawn (R = 3 > 2 filled), the third pick is masked out
        assert sorted(np.asarray(out.reward_b[k, 4:])[valid].astype(int).tolist()) == [0, 1, 2, 3]
    np.testing.assert_allclose(out.metrics["replay/valid_frac"], 2 / 3)
    # uniform among filled slots: 3 of 4 filled, one draw per batch
    t1 = _replay(capacity=4, num_replay=1, groups=1)
    s = t1.init(1)
    for k in range(3):
        _, s = _apply(t1, _batch(10 * k, groups=1), s, step=k)
    counts = collections.Counter(np.asarray(_replays(t1, _batch(100, groups=1), s, 3, 600).reward_b[:, G]).astype(int).tolist())
    assert set(counts) == {0, 10, 20}
    assert all(150 <= c <= 250 for c in counts.values()), counts


def test_checkpoint_round_trip(tmp_path):
    t = _replay(capacity=3, num_replay=2)
    state = t.init(2)
    for k in range(2):
        _, state = _apply(t, _batch(10 * k, version=k), state, step=k)
    ckpt = PhaseCheckpointer(str(tmp_path / "ckpt"))
    ckpt.save(2, state, position=7, global_step=2)
    restored, position, _ = ckpt.restore(t.init(2))
    ckpt.close()
    assert position == 7
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    # the restored buffer replays exactly what the original one does
    nxt = _batch(50, version=2)
    out_a, _ = _apply(t, nxt, state, step=2, seed=3)
    out_b, _ = _apply(t, nxt, restored, step=2, seed=3)
    np.testing.assert_array_equal(out_a.response_bt, out_b.response_bt)


def test_jit_matches_no_jit():
    t = _replay(capacity=3, num_replay=2)
    state = t.init(2)
    _, state = _apply(t, _batch(0), state, step=0)
    fn = lambda b, s, step, rng: t.collect(s, _policy(step), {"batch": b}, rng)
    args = (_batch(100, version=1), state, jnp.int32(1), jax.random.key(4))
    eager, jitted = fn(*args), jax.jit(fn)(*args)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="num_replay"):
        with_replay(capacity=2, num_replay=3)
    with pytest.raises(ValueError, match="raise capacity to at least 2"):
        _replay(capacity=1, num_replay=1).init(2)
    t = _replay(capacity=3, num_replay=1)
    with pytest.raises(ValueError, match="initialised for groups"):
        _apply(t, _batch(0).replace(group_size=4), t.init(2), step=0)
    with pytest.raises(ValueError, match="does not store Batch.aux"):
        _apply(t, _batch(0).replace(aux={"x_b": np.zeros(4, np.float32)}), t.init(2), step=0)

"""``collectors.partial_groups``: responses drawn W tokens per step and continued from their cache.

Against brute force on the float64 tiny model of the collector contract test: two windows of W
with the same parameters are one uninterrupted generation of 2W tokens; every token's version is
the step that drew it; groups are replaced (by the step's prompts, in group order) only once all
their rows have finished; the state survives a checkpoint."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl import algorithms, collectors, diagnostics
from polrl.rollout import engine
from polrl.train import checkpoint, steps
from test_collectors import CFG, SAMPLING, _context, _data, _model
from tiny_models import tiny_params

PROMPTS, G = 4, 2


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def _ctx(max_new_tokens):
    """The contract test's context with token 6 as EOS: the tiny model draws it often, so rows end
    at different lengths and groups free up at different steps."""
    sampling = dataclasses.replace(SAMPLING, max_new_tokens=max_new_tokens, eos_id=6)
    return dataclasses.replace(_context(), sampling=sampling)


def _params_at(s):
    """θ_s: the tiny model's parameters moved by a step-dependent amount (distinct per step)."""
    return jax.tree.map(lambda x: x + 0.05 * s * jnp.cos(jnp.arange(x.size, dtype=x.dtype).reshape(x.shape) + s),
                        _model()[1])


def _state(collector, s, params, cstate=None):
    state = steps.init_state(params, algorithms.grpo(kl_coef=0.0), jax.random.key(0), collector=collector,
                             prompts=PROMPTS).replace(step=jnp.int32(s))
    return state if cstate is None else state.replace(collector_state=cstate)


def _run(collector, num_steps, params_at=_params_at):
    """Collects steps 0 … num_steps−1 with θ_s; yields (s, batch, state before, state after)."""
    cstate = collector.init(PROMPTS)
    collect = jax.jit(collector.collect)
    for s in range(num_steps):
        batch, after, _ = collect(cstate, _state(collector, s, params_at(s)), _data(s, PROMPTS), jax.random.key(100 + s))
        yield s, batch, cstate, after
        cstate = after


def test_two_windows_are_one_generation():
    w = 3
    ctx = _ctx(2 * w)
    collector = collectors.partial_groups(ctx, window=w, group_size=G)
    graphdef, params = _model()
    (_, _, _, first), (_, batch, _, second) = list(_run(collector, 2, params_at=lambda s: params))
    # Brute force: the step-0 prompts prefilled, forked G times, 2W tokens drawn at once with the
    # two steps' uniforms one after the other.
    data = _data(0, PROMPTS)
    uniform = jnp.concatenate([jax.random.uniform(jax.random.key(100 + s), (w, PROMPTS * G)) for s in range(2)])

    @jax.jit
    def brute_force(params, prompt_bp, valid_bp, uniform):
        model = nnx.merge(graphdef, params)
        slots = engine.extend(model, engine.init_slots(model, PROMPTS, 3 + 2 * w), prompt_bp, valid_bp)
        return engine.generate(model, engine.repeat(slots, G), None, ctx.sampling, uniform_ns=uniform,
                               commit_last=False)[0]

    want = brute_force(params, data["prompt_bp"], data["prompt_valid_bp"], uniform)
    # the rows of the groups not replaced at step 1 (a row of theirs was still running)
    kept = np.repeat(np.asarray(first["running_b"]).reshape(PROMPTS, G).any(axis=1), G)
    assert (np.asarray(second["length_b"])[kept] > w).any(), "no row ran over both windows"
    mask = np.asarray(want.mask_sn) > 0
    np.testing.assert_array_equal(np.asarray(second["length_b"])[kept], np.asarray(want.length_s)[kept])
    np.testing.assert_array_equal(np.asarray(batch.response_bt)[kept], np.asarray(want.tokens_sn)[kept])
    np.testing.assert_array_equal(np.asarray(batch.aux["response_mask_bt"])[kept], mask[kept])
    # Batch log-probs are float32: the float64 log-probs rounded once.
    np.testing.assert_allclose(np.asarray(batch.behavior_logp_bt)[kept], np.asarray(want.logp_sn)[kept] * mask[kept],
                               rtol=2.0 ** -23, atol=0)
    # This step's mask: the second window of the rows that reached it.
    start = np.asarray(batch.aux["window_start_b"])
    cols = np.arange(2 * w)
    np.testing.assert_array_equal(np.asarray(batch.mask_bt)[kept], (mask & (cols >= start[:, None]))[kept])


def test_token_versions_are_the_steps_that_drew_them():
    ctx = _ctx(4)
    collector = collectors.partial_groups(ctx, window=1, group_size=G)
    spans = 0
    for s, batch, before, after in _run(collector, 5):
        version = np.asarray(batch.aux["version_bt"])
        mask = np.asarray(batch.mask_bt) > 0
        assert (version[mask] == s).all()
        start, length = np.asarray(batch.aux["window_start_b"]), np.asarray(after["length_b"])
        cols = np.arange(4)
        drawn = cols < length[:, None]
        np.testing.assert_array_equal(version >= 0, drawn)
        np.testing.assert_array_equal(mask, drawn & (cols >= start[:, None]))
        # a continued row keeps the versions its earlier tokens were drawn with
        kept = np.asarray(before["version_bn"])
        old = drawn & (cols < start[:, None])
        np.testing.assert_array_equal(version[old], kept[old])
        np.testing.assert_array_equal(np.asarray(batch.version_b)[length > 0], version[length > 0, 0])
        diag = diagnostics.batch_diagnostics(batch, jnp.int32(s))
        assert float(diag["offpolicy/staleness_max"]) == 0.0
        assert float(diag["offpolicy/context_staleness_max"]) == (s - version[drawn]).max()
        spans += int((((version >= 0) & (version < s)).any(axis=1) & mask.any(axis=1)).any())
    assert spans, "no row was continued over several steps"


def test_groups_are_replaced_when_all_their_rows_have_finished():
    ctx = _ctx(4)
    collector = collectors.partial_groups(ctx, window=1, group_size=G)
    partly = 0
    for s, batch, before, after in _run(collector, 8):
        data = _data(s, PROMPTS)
        free = ~np.asarray(before["running_b"]).reshape(PROMPTS, G).any(axis=1)
        rank = np.cumsum(free) - 1
        prompts = np.asarray(batch.prompt_bp)[::G]
        prev = np.asarray(before["prompt_pp"])
        for k in range(PROMPTS):
            want = np.asarray(data["prompt_bp"])[rank[k]] if free[k] else prev[k]
            np.testing.assert_array_equal(prompts[k], want)
        start = np.asarray(batch.aux["window_start_b"]).reshape(PROMPTS, G)
        np.testing.assert_array_equal(start[free], 0)
        np.testing.assert_array_equal(start[~free], np.asarray(before["length_b"]).reshape(PROMPTS, G)[~free])
        # rewards only on the rows that finished this step; finished rows draw nothing more
        finished = np.asarray(batch.aux["finished_b"]) > 0
        running = np.repeat(free, G) | np.asarray(before["running_b"])
        np.testing.assert_array_equal(finished, running & ~np.asarray(after["running_b"]))
        assert (np.asarray(batch.reward_b)[~finished] == 0).all()
        partly += int(0 < free.sum() < PROMPTS)
    assert partly, "no step replaced some but not all groups"


def test_rewards_are_the_verifiers_on_whole_responses():
    ctx = _ctx(4)
    collector = collectors.partial_groups(ctx, window=2, group_size=G)
    for _, batch, _, after in _run(collector, 4):
        finished = np.asarray(batch.aux["finished_b"]) > 0
        answers = jnp.repeat(after["answer_pa"], G, axis=0), jnp.repeat(after["answer_valid_pa"], G, axis=0)
        want = ctx.task.device_reward(batch.response_bt, batch.aux["response_mask_bt"], *answers)
        np.testing.assert_array_equal(np.asarray(batch.reward_b), np.where(finished, np.asarray(want), 0.0))


def test_the_state_is_checkpointed(tmp_path):
    ctx = _ctx(4)
    collector = collectors.partial_groups(ctx, window=1, group_size=G)
    *_, (s, _, _, cstate) = _run(collector, 3)
    state = _state(collector, s, _params_at(s), cstate)
    ckpt = checkpoint.PhaseCheckpointer(str(tmp_path / "ckpt"))
    ckpt.save(s, state, position=0, global_step=s)
    restored = ckpt.load(_state(collector, 0, _params_at(0))).state
    ckpt.close()
    assert jax.tree.structure(restored.collector_state) == jax.tree.structure(state.collector_state)
    for x, y in zip(jax.tree.leaves(restored.collector_state), jax.tree.leaves(state.collector_state), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert np.asarray(state.collector_state["running_b"]).any()  # the cache of running rows was saved


@functools.lru_cache(maxsize=None)
def _with_value_head():
    """(graphdef, params, collector, jitted collect) for a tiny policy with a value head
    (``values=True``), shared by the tests that read the bootstrap value."""
    with jax.enable_x64(True):
        graphdef, params = tiny_params(dataclasses.replace(CFG, value_head=True), seed=4)
        template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
        ctx = dataclasses.replace(_ctx(4), graphdef=graphdef, params_template=template)
        collector = collectors.partial_groups(ctx, window=2, group_size=G, values=True)
        return graphdef, params, collector, jax.jit(collector.collect)


def test_bootstrap_value_is_the_value_head_after_the_last_token():
    graphdef, params, collector, collect = _with_value_head()
    state = steps.init_state(params, algorithms.tppo(), jax.random.key(0), collector=collector, prompts=PROMPTS)
    batch, after, _ = collect(state.collector_state, state, _data(0, PROMPTS), jax.random.key(0))
    running = np.asarray(after["running_b"])
    assert running.any()
    # V(s_{e+1}) = the value head on the hidden state predicting token e + 1 of a fresh forward.
    scored = steps.score(graphdef, params, batch, values=True)["value_bt"]
    length = np.asarray(after["length_b"])
    want = np.asarray(scored)[np.arange(PROMPTS * G), np.minimum(length, 3)]
    got = np.asarray(batch.aux["bootstrap_value_b"])
    np.testing.assert_allclose(got[running], want[running], rtol=2.0 ** -23, atol=1e-12)
    assert (got[~running] == 0).all()


def test_invalid_window_fails_with_the_field_name():
    with pytest.raises(ValueError, match=r"window=0 must be an int in \[1, rollout.max_new_tokens=4\]"):
        collectors.partial_groups(_context(), window=0)
    with pytest.raises(ValueError, match="window=5"):
        collectors.partial_groups(_context(), window=5)


def test_tppo_trains_on_partial_rollouts():
    """prepare + update of T-PPO on partial rows: finite losses, the value loss from the finished rows."""
    graphdef, params, collector, collect = _with_value_head()
    alg = algorithms.tppo(learning_rate=1e-2)
    state = steps.init_state(params, alg, jax.random.key(0), collector=collector, prompts=PROMPTS)
    train = jax.jit(lambda st, b: steps.train_on_batch(st, b, algorithm=alg, graphdef=graphdef))
    finished = 0
    for s in range(3):
        batch, cstate, _ = collect(state.collector_state, state, _data(s, PROMPTS), jax.random.key(s))
        state, metrics = train(state.replace(collector_state=cstate), batch)
        assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values())
        assert float(metrics["offpolicy/staleness_max"]) == 0.0
        finished += float(np.asarray(batch.aux["finished_b"]).sum())
    assert finished > 0 and int(state.step) == 3

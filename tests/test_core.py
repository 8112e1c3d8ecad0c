"""Tests for the core contract (polrl.core): Batch, stateless, chain, named_chain, total_loss."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from polrl.core import (
    KNOWN_NEEDS,
    Algorithm,
    Batch,
    PolicyState,
    Transform,
    chain,
    named_chain,
    stateless,
    total_loss,
)


def _batch(b=2, t=3):
    return Batch(
        prompt_bp=jnp.zeros((b, 2), jnp.int32),
        prompt_valid_bp=jnp.ones((b, 2), bool),
        response_bt=jnp.zeros((b, t), jnp.int32),
        mask_bt=jnp.ones((b, t), jnp.float32),
    )


def _tagger(tag: int) -> Transform:
    """A stateful transform: appends its tag to the metric ``trace`` (trace·10 + tag) and adds
    ``tag`` to its state (a call counter scaled by the tag); records the ``step`` extra it saw."""

    def init(example=None):
        return jnp.zeros((), jnp.int32)

    def apply(batch, state, **extra):
        trace = batch.metrics.get("trace", jnp.zeros((), jnp.int32))
        batch = batch.add_metrics(trace=trace * 10 + tag, **{f"step_seen_{tag}": extra["step"]})
        return batch, state + tag

    return Transform(init, apply)


# ----------------------------------------------------------------------------- chain


def test_chain_threads_batch_and_state_in_order():
    t = chain(_tagger(1), _tagger(2), _tagger(3))
    state = t.init()
    assert isinstance(state, tuple) and len(state) == 3
    batch, state = t.apply(_batch(), state, step=7)
    # applied 1, then 2, then 3: ((0·10+1)·10+2)·10+3 = 123
    assert int(batch.metrics["trace"]) == 123
    np.testing.assert_array_equal(state, (1, 2, 3))
    for tag in (1, 2, 3):  # every transform got the extras
        assert int(batch.metrics[f"step_seen_{tag}"]) == 7
    # the state returned by the first call is threaded into the second
    batch, state = t.apply(_batch(), state, step=8)
    np.testing.assert_array_equal(state, (2, 4, 6))
    # order is the argument order, not e.g. sorted
    batch, _ = chain(_tagger(3), _tagger(1)).apply(_batch(), (jnp.int32(0), jnp.int32(0)), step=0)
    assert int(batch.metrics["trace"]) == 31


def test_named_chain_threads_batch_and_state_in_order():
    t = named_chain(("c", _tagger(3)), ("a", _tagger(1)), ("b", _tagger(2)))
    state = t.init()
    assert set(state) == {"a", "b", "c"}
    batch, state = t.apply(_batch(), state, step=1)
    # applied in the given order c, a, b (not the keys' sorted order): 3·100 + 1·10 + 2 = 312
    assert int(batch.metrics["trace"]) == 312
    assert {k: int(v) for k, v in state.items()} == {"a": 1, "b": 2, "c": 3}
    batch, state = t.apply(_batch(), state, step=1)
    assert {k: int(v) for k, v in state.items()} == {"a": 2, "b": 4, "c": 6}


def test_chain_state_is_a_pytree_usable_under_jit():
    t = named_chain(("x", chain(_tagger(1), _tagger(2))), ("y", _tagger(5)))
    apply = jax.jit(lambda b, s: t.apply(b, s, step=jnp.int32(3)))
    batch, state = apply(_batch(), t.init())
    assert int(batch.metrics["trace"]) == 125
    assert jax.tree.structure(state) == jax.tree.structure(t.init())
    np.testing.assert_array_equal(state["x"], (1, 2))
    assert int(state["y"]) == 5


def test_chain_and_named_chain_compose_needs():
    ref = stateless(lambda b: b, needs=("ref_logp",))
    val = stateless(lambda b: b, needs=("values",))
    none = stateless(lambda b: b)
    assert none.needs == frozenset()
    assert chain().needs == frozenset()
    assert chain(none, ref).needs == {"ref_logp"}
    assert chain(ref, none, val).needs == {"ref_logp", "values"}
    assert named_chain(("r", ref), ("n", none)).needs == {"ref_logp"}
    assert named_chain(("r", ref), ("v", val)).needs == {"ref_logp", "values"}
    # nested
    assert chain(named_chain(("r", ref)), chain(val)).needs == {"ref_logp", "values"}
    # Algorithm's needs are the union of prepare's and objective's
    alg = Algorithm(prepare=chain(val), objective=chain(ref), optimizer=optax.sgd(1.0))
    assert alg.needs == {"ref_logp", "values"}
    assert Algorithm(chain(), chain(none), optax.sgd(1.0)).needs == frozenset()


def test_named_chain_rejects_duplicate_names():
    with pytest.raises(ValueError, match="duplicate"):
        named_chain(("a", _tagger(1)), ("b", _tagger(2)), ("a", _tagger(3)))
    named_chain(("a", _tagger(1)), ("b", _tagger(1)))  # same transform, distinct names: fine


def test_algorithm_updates_per_batch():
    alg = Algorithm(chain(), chain(), optax.sgd(1.0), num_epochs=3, num_minibatches=2)
    assert alg.updates_per_batch == 6
    assert Algorithm(chain(), chain(), optax.sgd(1.0)).updates_per_batch == 1


# ----------------------------------------------------------------------------- stateless


def test_stateless_passes_only_declared_extras():
    seen = {}

    def with_step(batch, *, step):
        seen["with_step"] = step
        return batch

    def with_rng_and_default(batch, *, rng, scale=2.0):
        seen["with_rng"] = (rng, scale)
        return batch

    def with_nothing(batch):
        seen["with_nothing"] = True
        return batch

    def with_all(batch, **extra):
        seen["with_all"] = dict(extra)
        return batch

    extras = dict(step=3, rng="key", foo=object())
    for fn in (with_step, with_rng_and_default, with_nothing, with_all):
        t = stateless(fn)
        assert t.init() == ()
        out, state = t.apply(_batch(), t.init(), **extras)
        assert isinstance(out, Batch) and state == ()
    assert seen["with_step"] == 3
    assert seen["with_rng"] == ("key", 2.0)  # ``scale`` not in extras: its default is kept
    assert seen["with_nothing"] is True
    assert seen["with_all"] == extras  # **extra receives everything, unknown ones included


def test_stateless_ignores_unknown_extras_and_missing_ones_are_an_error():
    t = stateless(lambda batch, *, step: batch.add_metrics(step=step))
    out, _ = t.apply(_batch(), (), step=5, rng=jax.random.key(0), foo="bar", bar=None)
    assert out.metrics == {"step": 5}
    # a declared extra the caller did not pass is the caller's bug: a TypeError, not silence
    with pytest.raises(TypeError):
        t.apply(_batch(), (), rng=jax.random.key(0))


def test_stateless_rejects_unknown_needs():
    assert KNOWN_NEEDS == {"ref_logp", "values", "detached_values", "old_logp", "logits", "kl_to_old",
                           "old_mean_logp"}  # computations, not data
    with pytest.raises(ValueError, match="unknown needs"):
        stateless(lambda b: b, needs=("ref_logp", "reward_model"))
    with pytest.raises(ValueError, match="reward_model"):
        stateless(lambda b: b, needs=("reward_model",))
    for need in KNOWN_NEEDS:
        assert stateless(lambda b: b, needs=(need,)).needs == {need}


# ----------------------------------------------------------------------------- Batch


def test_batch_aux_rides_along_and_require_aux_names_the_provider():
    b = _batch().replace(aux={"greedy_reward_b": jnp.arange(2.0)})
    leaves = jax.tree.leaves(b)
    assert any(x.shape == (2,) and float(x[1]) == 1.0 for x in leaves)  # a pytree leaf: sliced with the rows
    b.require_aux("greedy_reward_b", by="t", provider="p")
    with pytest.raises(ValueError, match=r"t needs Batch.aux field\(s\) \['turn_bt'\].*collect with my_wrapper\(\)"):
        b.require_aux("turn_bt", by="t", provider="my_wrapper()")


def test_batch_add_term_and_add_loss_reject_duplicates():
    b = _batch()
    x = jnp.ones((2, 3))
    b1 = b.add_term("pg", x)
    assert set(b1.terms) == {"pg"} and b.terms == {}  # functional: the original is unchanged
    with pytest.raises(ValueError, match="pg"):
        b1.add_term("pg", x)
    with pytest.raises(ValueError, match="pg"):
        b1.add_loss("pg", jnp.float32(1))  # a loss may not shadow a pending term
    b2 = b.add_loss("dpo", jnp.float32(1))
    assert set(b2.losses) == {"dpo"} and b.losses == {}
    with pytest.raises(ValueError, match="dpo"):
        b2.add_loss("dpo", jnp.float32(2))
    with pytest.raises(ValueError, match="dpo"):
        b2.add_term("dpo", x)
    # distinct names accumulate
    b3 = b1.add_term("kl", x).add_loss("dpo", jnp.float32(1))
    assert set(b3.terms) == {"pg", "kl"} and set(b3.losses) == {"dpo"}


def test_batch_add_metrics_merges_and_overrides():
    b = _batch().add_metrics(a=1, b=2).add_metrics(b=3, c=4)
    assert b.metrics == {"a": 1, "b": 3, "c": 4}


def test_batch_require_names_missing_fields():
    b = _batch().replace(reward_b=jnp.zeros(2))
    b.require("reward_b", "mask_bt", by="x")  # present: no error
    with pytest.raises(ValueError) as err:
        b.require("reward_b", "group_b", "old_value_bt", by="my_transform")
    msg = str(err.value)
    assert "group_b" in msg and "old_value_bt" in msg and "my_transform" in msg
    assert "reward_b" not in msg.split("needs")[1].split("which")[0]  # only the missing ones


def test_batch_size_and_pytree():
    b = _batch(b=5, t=4)
    assert b.batch_size == 5
    leaves = jax.tree.leaves(b)
    assert len(leaves) == 4  # None fields and empty dicts are not leaves
    doubled = jax.tree.map(lambda x: x, b.replace(reward_b=jnp.ones(5)))
    assert doubled.reward_b.shape == (5,)


def test_policy_state_is_a_pytree():
    s = PolicyState(step=jnp.int32(0), rng=jax.random.key(0), params={"w": jnp.ones(3)}, opt_state=())
    assert s.ref_params is None and s.prepare_state is None and s.objective_state is None
    s2 = jax.jit(lambda s: s.replace(step=s.step + 1))(s)
    assert int(s2.step) == 1
    np.testing.assert_array_equal(s2.params["w"], np.ones(3))


# ----------------------------------------------------------------------------- total_loss


def test_total_loss_sums_losses():
    b = _batch().add_loss("a", jnp.float32(1.5)).add_loss("b", jnp.float32(-0.25))
    assert float(total_loss(b)) == pytest.approx(1.25)


def test_total_loss_errors_on_unaggregated_terms():
    b = _batch().add_loss("a", jnp.float32(1.0)).add_term("pg", jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="pg.*never aggregated"):
        total_loss(b)


def test_total_loss_errors_without_losses():
    with pytest.raises(ValueError, match="no loss"):
        total_loss(_batch())

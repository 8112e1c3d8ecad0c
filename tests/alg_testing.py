"""Shared helpers for the algorithm-catalogue tests (tests/test_alg_*.py).

* ``hand_batch`` — a small Batch from literal arrays, for hand-computed transform values;
* ``rollout_batch`` — a rollout-like batch (groups of 4, varying rewards) for the nouns;
* ``check_transform_contract`` — the transform contract (jit == no-jit, threaded state keeps its
  structure, no recompilation, unknown extras ignored), as tests/test_transforms.py checks it for
  polrl.advantages / polrl.objectives;
* ``check_algorithm_transforms`` — the same contract for a noun's prepare and objective;
* ``train_once`` — ``init_state`` + one jitted ``train_on_batch`` on the tiny Transformer.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from polrl.core import Batch, Transform
from polrl.models import TransformerConfig
from polrl.train import steps
from tiny_models import tiny_params

V = 8
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16)


@functools.lru_cache(maxsize=None)
def tiny_model():
    """(graphdef, params) of a one-layer Transformer over 8 tokens."""
    return tiny_params(CFG)


def hand_batch(mask, aux=None, **fields) -> Batch:
    """A Batch with the given mask [B, T] and fields (``group_b``/``source_b`` int, others float;
    ``aux``: a dict of float per-row fields)."""
    mask = jnp.asarray(mask, jnp.float32)
    b, t = mask.shape
    ints = {"group_b", "source_b", "version_b"}
    return Batch(
        prompt_bp=jnp.zeros((b, 1), jnp.int32),
        prompt_valid_bp=jnp.ones((b, 1), bool),
        response_bt=jnp.zeros((b, t), jnp.int32),
        mask_bt=mask,
        aux={k: jnp.asarray(v, jnp.float32) for k, v in (aux or {}).items()},
        **{k: jnp.asarray(v, jnp.int32 if k in ints else jnp.float32) for k, v in fields.items()},
    )


def apply(t: Transform, batch: Batch, state=None, **extra):
    """``t.apply`` from its initial state (or ``state``); returns the batch."""
    out, _ = t.apply(batch, t.init() if state is None else state, **extra)
    return out


def rollout_batch(b: int = 8, t: int = 4, seed: int = 0) -> Batch:
    """Rollout-like batch of two groups of 4 rows (rewards vary in each group), ragged lengths,
    sampler log-probs, a greedy baseline (``aux["greedy_reward_b"]``) and the static group size."""
    rng = np.random.default_rng(seed)
    mask = np.ones((b, t), np.float32)
    mask[0, -1] = 0.0
    mask[3, 2:] = 0.0
    mask[5, 1:] = 0.0
    return Batch(
        prompt_bp=np.repeat(rng.integers(1, V - 1, (b // 4, 2)), 4, axis=0).astype(np.int32),
        prompt_valid_bp=np.ones((b, 2), bool),
        response_bt=rng.integers(1, V - 1, (b, t)).astype(np.int32),
        mask_bt=mask,
        reward_b=np.array([1, 0, 0, 1, 0.5, 0, 1, 1][:b], np.float32),
        group_b=(np.arange(b) // 4).astype(np.int32),
        behavior_logp_bt=(-2.0 + 0.1 * rng.normal(size=(b, t))).astype(np.float32) * mask,
        aux={"greedy_reward_b": np.full((b,), 0.5, np.float32)},
        group_size=4,
    )


def assert_trees_close(a, b, **kw):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)


def check_transform_contract(t: Transform, batch: Batch, other: Batch):
    """jit == no-jit; the state keeps its structure; the second call (``other``, same shapes)
    does not recompile; unknown extras are ignored and no extra is required."""
    assert isinstance(t, Transform)
    state0 = t.init()
    traces = []

    def run(b, s, step, rng):
        traces.append(None)  # runs once per trace
        return t.apply(b, s, step=step, rng=rng)

    fn = jax.jit(run)
    extras = dict(step=jnp.int32(3), rng=jax.random.key(1))
    out, state1 = fn(batch, state0, **extras)
    assert isinstance(out, Batch)
    assert jax.tree.structure(state1) == jax.tree.structure(state0)
    _, state2 = fn(other, state1, step=jnp.int32(4), rng=jax.random.key(2))
    assert len(traces) == 1, "the second call with same-shaped inputs retraced"
    assert jax.tree.structure(state2) == jax.tree.structure(state0)
    eager, eager_state = t.apply(batch, state0, **extras)
    assert_trees_close(out, eager, rtol=1e-5, atol=1e-6)
    assert_trees_close(state1, eager_state, rtol=1e-5, atol=1e-6)
    unknown, _ = t.apply(batch, state0, **extras, foo=object(), temperature=0.3)
    assert_trees_close(unknown, eager, rtol=0, atol=0)
    bare, _ = t.apply(batch, state0)
    assert_trees_close(bare, eager, rtol=0, atol=0)
    return out


def scored(batch: Batch, seed: int = 0) -> Batch:
    """``batch`` with the fields the trainer fills before/inside the update (π_old, π_ref, the
    scores), drawn near the sampler's log-probs so ratios are close to, but not exactly, 1."""
    rng = np.random.default_rng(seed)
    shape = batch.mask_bt.shape
    noise = lambda s: jnp.asarray(s * rng.normal(size=shape), jnp.float32)
    old = batch.behavior_logp_bt + noise(0.05)
    return batch.replace(
        old_logp_bt=old, ref_logp_bt=old + noise(0.1), logp_bt=old + noise(0.1),
        entropy_bt=jnp.abs(noise(1.0)),
    )


def check_algorithm_transforms(alg):
    """The contract for a noun's prepare (on a rollout batch) and objective (on the prepared,
    scored batch); returns the objective's output batch."""
    batch = scored(rollout_batch(seed=0), seed=0)
    other = scored(rollout_batch(seed=1), seed=1)
    prepared = check_transform_contract(alg.prepare, batch, other)
    other_prepared, _ = alg.prepare.apply(other, alg.prepare.init())
    out = check_transform_contract(alg.objective, prepared, other_prepared)
    assert out.terms == {} and out.losses, "the objective must end aggregated"
    return out


@functools.lru_cache(maxsize=None)
def _train_fn(alg):
    graphdef, _ = tiny_model()
    return jax.jit(functools.partial(steps.train_on_batch, algorithm=alg, graphdef=graphdef))


def train_once(alg, batch: Batch | None = None):
    """One jitted ``train_on_batch`` of ``alg`` on the tiny Transformer from ``init_state``
    (reference = the initial parameters); returns (new state, metrics as numpy, initial params)."""
    _, params = tiny_model()
    state = jax.jit(lambda p, r: steps.init_state(p, alg, r, ref_params=p))(params, jax.random.key(0))
    batch = rollout_batch() if batch is None else batch
    new_state, metrics = _train_fn(alg)(state, batch)
    return new_state, jax.tree.map(np.asarray, metrics), params


def assert_trained(alg, expected_metrics=()):
    """``train_once`` moves the parameters, logs finite metrics (``expected_metrics`` among them)."""
    state, metrics, params = train_once(alg)
    assert int(state.step) == 1
    missing = set(expected_metrics) - set(metrics)
    assert not missing, f"missing metrics {missing}"
    for key, value in metrics.items():
        assert np.all(np.isfinite(value)), (key, value)
    moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)))
    assert moved > 1e-4, "the update did not change the parameters (test nouns with a large learning rate)"
    return metrics

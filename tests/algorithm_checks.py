"""Shared pieces of the algorithm-noun tests (tests/test_alg_*.py).

* ``hand_batch``        — a Batch from literal arrays, for hand-computed transform values;
* ``rollout_batch``     — a rollout-like batch of whole groups (optionally with expert rows);
* ``train_steps``       — ``init_state`` + jitted ``train_on_batch`` of a noun on a tiny model;
* ``apply_transform``   — a transform applied once (eager or jitted), with extras;
* ``assert_trees_close``.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from polrl.core import EXPERT, ON_POLICY, Batch
from polrl.models import TransformerConfig
from polrl.train import steps
from tiny_models import tiny_params

V = 8
EOS = 7
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16)


@functools.lru_cache(maxsize=None)
def tiny_model():
    """(graphdef, params) of a one-layer Transformer over an 8-token vocabulary."""
    return tiny_params(CFG)


def hand_batch(mask, **fields) -> Batch:
    """A Batch with ``mask_bt`` and the given fields (``group_b``/``source_b`` int, others float)."""
    mask = jnp.asarray(mask, jnp.float32)
    b, t = mask.shape
    ints = {"group_b", "source_b", "version_b", "response_bt"}
    fields = {k: jnp.asarray(v, jnp.int32 if k in ints else jnp.float32) for k, v in fields.items()}
    fields.setdefault("response_bt", jnp.zeros((b, t), jnp.int32))
    return Batch(prompt_bp=jnp.zeros((b, 1), jnp.int32), prompt_valid_bp=jnp.ones((b, 1), bool), mask_bt=mask, **fields)


def rollout_batch(*, num_groups: int = 2, group_size: int = 4, t: int = 3, expert_per_group: int = 0, seed: int = 0) -> Batch:
    """Groups of ``group_size`` rows sharing a prompt; rewards vary within every group; some
    padding; the last ``expert_per_group`` rows of each group are expert rows (reward 1,
    behaviour log-prob 0)."""
    rng = np.random.default_rng(seed)
    n = num_groups * group_size
    prompt = np.repeat(rng.integers(1, V - 1, (num_groups, 2)), group_size, axis=0).astype(np.int32)
    mask = np.ones((n, t), np.float32)
    mask[0, -1] = 0.0
    mask[group_size - 1 - expert_per_group, 1:] = 0.0
    reward = np.tile((np.arange(group_size) % 2).astype(np.float32), num_groups)
    reward[0] = 0.5
    source = np.tile((np.arange(group_size) >= group_size - expert_per_group).astype(np.int32), num_groups)
    reward = np.where(source == EXPERT, 1.0, reward).astype(np.float32)
    behavior = np.where(source[:, None] == EXPERT, 0.0, -1.5 * mask).astype(np.float32)
    return Batch(
        prompt_bp=prompt,
        prompt_valid_bp=np.ones((n, 2), bool),
        response_bt=rng.integers(1, V - 1, (n, t)).astype(np.int32),
        mask_bt=mask,
        reward_b=reward,
        group_b=(np.arange(n) // group_size).astype(np.int32),
        behavior_logp_bt=behavior,
        source_b=np.where(source == EXPERT, EXPERT, ON_POLICY).astype(np.int32) if expert_per_group else None,
        version_b=np.zeros((n,), np.int32),
        group_size=group_size,
    )


def train_steps(alg, batch: Batch, num_steps: int = 1):
    """``num_steps`` jitted ``train_on_batch`` calls from a fresh state (reference = initial
    parameters) on the tiny model; returns (state, [metrics per step])."""
    graphdef, params = tiny_model()
    state = jax.jit(lambda p, r: steps.init_state(p, alg, r, ref_params=p, example=batch))(params, jax.random.key(0))
    fn = jax.jit(functools.partial(steps.train_on_batch, algorithm=alg, graphdef=graphdef))
    history = []
    for _ in range(num_steps):
        state, metrics = fn(state, batch)
        history.append(jax.tree.map(np.asarray, metrics))
    return state, history


def params_moved(state) -> float:
    """Largest absolute parameter change from the tiny model's initial parameters."""
    _, params = tiny_model()
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
               for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)))


def apply_transform(t, batch: Batch, *, jit: bool = False, **extra) -> Batch:
    """``t.apply`` from its initial state, eager or under ``jax.jit``; returns the batch."""
    fn = (lambda b, s, e: t.apply(b, s, **e))
    if jit:
        fn = jax.jit(fn)
    out, _ = fn(batch, t.init(), extra)
    return out


def assert_trees_close(a, b, **kw):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)

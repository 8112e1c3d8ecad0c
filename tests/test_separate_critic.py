"""A critic optimized apart from the policy: detached values, the value head's own optimizer."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from polrl import algorithms, optim
from polrl.core import Batch
from polrl.models import TransformerConfig
from polrl.train import steps
from tiny_models import tiny_params

CFG = TransformerConfig(vocab_size=8, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16,
                        value_head=True)


def _split(tree):
    """(value-head leaves, other leaves) of a parameter-shaped tree, as lists of arrays."""
    pairs = list(zip(jax.tree.leaves(optim.value_head_labels(tree)), jax.tree.leaves(tree)))
    return ([np.asarray(v) for label, v in pairs if label == "value_head"],
            [np.asarray(v) for label, v in pairs if label == "policy"])


def _batch(seed: int = 3) -> Batch:
    rng = np.random.default_rng(seed)
    mask = np.ones((8, 3), np.float32)
    mask[2, 2:] = 0
    return Batch(prompt_bp=rng.integers(1, 7, (8, 2)).astype(np.int32), prompt_valid_bp=np.ones((8, 2), bool),
                 response_bt=rng.integers(1, 7, (8, 3)).astype(np.int32), mask_bt=mask,
                 reward_b=np.array([1, 0, 1, 1, 0, 0, 1, 0], np.float32),
                 group_b=(np.arange(8) // 4).astype(np.int32), group_size=4)


def test_detached_values_send_no_gradient_to_the_trunk():
    graphdef, params = tiny_params(CFG)
    batch = _batch()

    def total_value(p, detach):
        out = steps.score(graphdef, p, batch, values=True, detach_values=detach)
        return jnp.sum(out["value_bt"] * batch.mask_bt), out["value_bt"]

    (_, values_att), g_att = jax.value_and_grad(total_value, has_aux=True)(params, False)
    (_, values_det), g_det = jax.value_and_grad(total_value, has_aux=True)(params, True)
    np.testing.assert_array_equal(values_att, values_det)  # same forward, only the gradient differs
    head_det, trunk_det = _split(g_det)
    head_att, trunk_att = _split(g_att)
    assert all(np.all(g == 0) for g in trunk_det)
    assert max(np.abs(g).max() for g in trunk_att) > 0
    for a, b in zip(head_att, head_det):
        np.testing.assert_array_equal(a, b)


def test_value_head_optimizer_steps_each_part_at_its_own_rate():
    """Adam's first step moves every parameter by its learning rate (|m̂ / √v̂| = 1)."""
    _, params = tiny_params(CFG)
    opt = optim.with_value_head_optimizer(optim.adamw(1e-3, max_grad_norm=None), optim.adamw(1e-1, max_grad_norm=None))
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = opt.update(grads, opt.init(params), params)
    head, trunk = _split(updates)
    assert len(head) == 2 and trunk
    for u in head:
        np.testing.assert_allclose(u, -1e-1, rtol=1e-5)
    for u in trunk:
        np.testing.assert_allclose(u, -1e-3, rtol=1e-5)


def test_each_part_is_clipped_by_its_own_norm():
    _, params = tiny_params(CFG)
    clip = optim.with_value_head_optimizer(optax.clip_by_global_norm(1.0), optax.clip_by_global_norm(1.0))
    grads = jax.tree.map(lambda p: jnp.full_like(p, 3.0), params)
    updates, _ = clip.update(grads, clip.init(params), params)
    head, trunk = _split(updates)
    for part in (head, trunk):
        np.testing.assert_allclose(np.sqrt(sum(float(np.sum(u ** 2)) for u in part)), 1.0, rtol=1e-5)


@pytest.mark.parametrize("noun", ["ppo", "tppo"])
def test_the_critic_loss_never_moves_the_policy(noun):
    """One update with the critic apart moves the policy's parameters exactly as the same update
    without a value loss (coefficient 0), and moves the value head."""
    graphdef, params = tiny_params(CFG)
    batch = _batch()
    make = getattr(algorithms, noun)
    apart = make(learning_rate=1e-2, critic_learning_rate=1e-2, num_epochs=1, num_minibatches=1)
    no_value = make(learning_rate=1e-2, value_coef=0.0, num_epochs=1, num_minibatches=1)
    assert apart.needs == frozenset({"values", "detached_values"})

    def one_step(alg):
        state = steps.init_state(params, alg, jax.random.key(0))
        train = jax.jit(functools.partial(steps.train_on_batch, algorithm=alg, graphdef=graphdef))
        return train(state, batch)

    (s_apart, m_apart), (s_none, _) = one_step(apart), one_step(no_value)
    head_apart, trunk_apart = _split(s_apart.params)
    _, trunk_none = _split(s_none.params)
    head_before, _ = _split(params)
    for a, b in zip(trunk_apart, trunk_none):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert max(np.abs(a - b).max() for a, b in zip(head_apart, head_before)) > 1e-3
    assert np.isfinite(float(m_apart["value_error"]))


def test_critic_learning_rate_errors():
    with pytest.raises(ValueError, match="critic_learning_rate"):
        algorithms.ppo(critic_learning_rate=0.0)
    with pytest.raises(ValueError, match="detached"):
        algorithms.policy_gradient.separate_critic(1e-3, {}, algorithms.ppo())


def test_a_state_with_the_critic_apart_checkpoints_and_restores(tmp_path):
    """The split optimizer's state (each part's moments, the other part's places empty) survives
    a checkpoint: restored into a fresh state it equals the saved one leaf for leaf."""
    from polrl.train.checkpoint import PhaseCheckpointer

    graphdef, params = tiny_params(CFG)
    alg = algorithms.ppo(learning_rate=1e-2, critic_learning_rate=1e-2, num_epochs=1, num_minibatches=1)
    fresh = steps.init_state(params, alg, jax.random.key(0))
    trained, _ = jax.jit(functools.partial(steps.train_on_batch, algorithm=alg, graphdef=graphdef))(fresh, _batch())
    checkpointer = PhaseCheckpointer(str(tmp_path / "ckpt"))
    checkpointer.save(1, trained, position=8, global_step=1)
    restored, position, _ = checkpointer.restore(fresh)
    checkpointer.close()
    assert position == 8
    assert jax.tree.structure(restored) == jax.tree.structure(trained)
    plain = lambda x: np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(trained)):
        np.testing.assert_array_equal(plain(a), plain(b))


def test_sharded_update_with_the_critic_apart_matches_one_device():
    """The split optimizer's state lays out over a (data, fsdp, tensor) mesh like any state, and
    the sharded update equals the single-device one."""
    from polrl import sharding

    graphdef, params = tiny_params(CFG)
    alg = algorithms.ppo(learning_rate=1e-2, critic_learning_rate=1e-2, num_epochs=1, num_minibatches=1)
    train = functools.partial(steps.train_on_batch, algorithm=alg, graphdef=graphdef)
    one, _ = jax.jit(train)(steps.init_state(params, alg, jax.random.key(0)), _batch())
    layout = sharding.Layout(sharding.make_mesh(2, 2, 2))
    state = steps.init_state(jax.tree.map(jnp.copy, params), alg, jax.random.key(0))
    state = layout.put(state, layout.state_shardings(state))
    split, _ = layout.jit(train, ("state", "batch"), ("state", "replicated"))(state, _batch())
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(split.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

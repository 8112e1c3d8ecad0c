"""ReLIC partial updates: the update schedule and the two masks by hand, KV-cache acting equal to
the whole-context forward, a loss mask distinct from the context (the loss reads only its steps,
the forward the whole context), and the :smoke config through the launcher entry."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import polrl
from polrl.control import algorithms as control_algorithms
from polrl.control import relic
from polrl.control.batch import ControlBatch
from polrl.core import total_loss
from control_testing import run_smoke_config


def test_update_schedule_mirrors_relic():
    # T = 8, U = 4 → an update every 2 steps; F = 2 → every 2nd update is full (loss from 0)
    assert relic.update_schedule(8, 4, 2) == ((2, 0, False), (4, 0, True), (6, 4, False), (8, 0, True))
    assert relic.update_schedule(8, 4, 0) == ((2, 0, False), (4, 2, False), (6, 4, False), (8, 6, False))
    assert relic.update_schedule(8, 1, 1) == ((8, 0, True),)
    with pytest.raises(ValueError, match="updates_per_rollout"):
        relic.update_schedule(8, 3, 1)
    with pytest.raises(ValueError, match="full_updates_per_rollout"):
        relic.update_schedule(8, 4, 3)


def test_context_and_loss_masks_by_hand():
    np.testing.assert_array_equal(relic.context_mask(4, 2), [
        [1, 0, 0, 0],
        [1, 1, 0, 0],
        [1, 1, 0, 0],
        [1, 1, 0, 0],
    ])
    np.testing.assert_array_equal(relic.loss_mask(6, 2, 5), [0, 0, 1, 1, 1, 0])


def model_and_tokens(t=6, n=2, arms=3):
    task = relic.Task(num_arms=arms, episode_length=3)
    model = relic.InContextPolicy(task.token_dim(), arms, max_len=t + 1, d_model=8, num_layers=2,
                                  num_heads=2, rngs=nnx.Rngs(params=jax.random.key(0)))
    graphdef, params = nnx.split(model)
    tokens = jax.random.normal(jax.random.key(1), (n, t + 1, task.token_dim()))
    return graphdef, params, tokens


def test_kv_cache_acting_equals_the_whole_context_forward():
    graphdef, params, tokens = model_and_tokens()
    n, width = tokens.shape[:2]
    full_logits, full_values, _ = relic.forward(graphdef, params, tokens, width)
    _, _, kv = relic.forward(graphdef, params, tokens, 2)  # the cache of the first 2 steps
    model = nnx.merge(graphdef, params)
    for t in range(2, width):
        visible = jnp.broadcast_to(jnp.arange(width)[None, None] <= t, (n, 1, width))
        logits, values, kv = model(tokens[:, t:t + 1], visible, t, kv)
        np.testing.assert_allclose(logits[:, 0], full_logits[:, t], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(values[:, 0], full_values[:, t], rtol=1e-4, atol=1e-5)


def test_loss_mask_selects_the_loss_steps_while_the_forward_uses_the_whole_context():
    graphdef, params, tokens = model_and_tokens()
    n, t = tokens.shape[0], tokens.shape[1] - 1
    algo = control_algorithms.ppo(num_updates=1)
    assert control_algorithms.objectives is polrl.objectives
    rng = np.random.default_rng(0)
    batch = ControlBatch(
        prompt_bp=jnp.zeros((n, 0), jnp.int32), prompt_valid_bp=jnp.zeros((n, 0), bool),
        response_bt=jnp.asarray(rng.integers(0, 3, (n, t)), jnp.int32),
        mask_bt=jnp.broadcast_to(relic.loss_mask(t, 3, 5), (n, t)),
        old_logp_bt=jnp.asarray(rng.normal(size=(n, t)) - 1.0, jnp.float32),
        old_value_bt=jnp.asarray(rng.normal(size=(n, t)), jnp.float32),
        adv_bt=jnp.asarray(rng.normal(size=(n, t)), jnp.float32),
        return_bt=jnp.asarray(rng.normal(size=(n, t)), jnp.float32),
    )

    def loss(params, batch, tokens):
        out, _ = algo.objective.apply(relic.score(graphdef, params, batch, tokens, 5), algo.objective.init())
        return total_loss(out)

    base = loss(params, batch, tokens)
    # records of steps outside the loss mask do not enter the loss ...
    outside = batch.replace(
        response_bt=batch.response_bt.at[:, :3].set((batch.response_bt[:, :3] + 1) % 3),
        adv_bt=batch.adv_bt.at[:, 5:].add(10.0), old_value_bt=batch.old_value_bt.at[:, 0].add(5.0),
    )
    np.testing.assert_allclose(loss(params, outside, tokens), base, rtol=1e-6)
    # ... but the context before the loss steps does: it feeds their forward
    assert not np.isclose(loss(params, batch, tokens.at[:, 1].add(1.0)), base)
    # and tokens after the collected end (5) are masked out of the attention
    np.testing.assert_allclose(loss(params, batch, tokens.at[:, 5:].add(3.0)), base, rtol=1e-6)


def test_task_tokens_by_hand():
    task = relic.Task(num_arms=3, episode_length=4)
    tokens = task.token(6, jnp.array([2, -1]), jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(tokens, [[0.5, 0, 0, 1, 1], [0.5, 0, 0, 0, 0]])


@pytest.mark.slow
def test_smoke_config_runs_through_the_launcher_entry(tmp_path):
    _, records = run_smoke_config("bandit_relic", tmp_path)
    assert [r["step"] for r in records] == [64, 128]
    assert all(0.0 <= r["mean_reward"] <= 1.0 and np.isfinite(r["loss"]) for r in records)
    np.testing.assert_allclose([r["mean_return"] for r in records], [4 * r["mean_reward"] for r in records], rtol=1e-5)

"""Control updates through the shared loop (``polrl.train.update.epochs``): it computes what the
PureJaxRL epoch loop computes (checked in float64 against that loop written out), under jit as
without, and every control trainer with an epochs × minibatches update reaches it."""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl.control import algorithms as control_algorithms
from polrl.control import batch as batch_lib
from polrl.control import envs, policies, props, relic
from polrl.control import train as control_train
from polrl.core import total_loss
from polrl.train import update as update_lib

N, T = 4, 8  # environments × steps: 32 transitions


def _f64(tree):
    return jax.tree.map(lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def problem(algo, key=0):
    """A CartPole actor-critic, a prepared [N, T] batch with random states, actions and
    advantages, the acting distributions, and a fresh PolicyState (all float64)."""
    env = envs.make("CartPole-v1", N)
    model = policies.build(policies.ActorCritic, env.obs_shape, env.action, hidden=(8, 8))
    k = jax.random.split(jax.random.key(key), 6)
    params = _f64(model.init(k[0]))
    obs = jax.random.normal(k[1], (N, T, 4), jnp.float64)
    dist, value = model.apply(params, obs.reshape(N * T, 4))
    action = dist.sample(k[2])
    batch = batch_lib.ControlBatch(
        prompt_bp=jnp.zeros((N, 0), jnp.int32), prompt_valid_bp=jnp.zeros((N, 0), bool),
        response_bt=action.reshape(N, T), mask_bt=jnp.ones((N, T), jnp.float64),
        behavior_logp_bt=dist.log_prob(action).reshape(N, T), old_logp_bt=dist.log_prob(action).reshape(N, T),
        old_value_bt=value.reshape(N, T), reward_bt=jax.random.normal(k[3], (N, T), jnp.float64),
        discount_bt=jnp.where(jax.random.uniform(k[4], (N, T)) < 0.1, 0.0, 0.99).at[:, -1].set(0.0),
    )
    batch, _ = algo.prepare.apply(batch, algo.prepare.init(), step=0)
    old_dist = jax.tree.map(lambda x: x.reshape((N, T) + x.shape[1:]), dist)
    state = control_train.initial_state(algo, params, k[5])
    return model, state, batch, (obs, old_dist)


def pure_jax_rl_loop(model, algo, state, batch, data, key):
    """PureJaxRL's update loop, written out in Python: per epoch, one permutation of the N·T
    transitions (none with one minibatch), cut into consecutive minibatches; per minibatch,
    value_and_grad of the objective and one optimizer step."""
    obs, old_dist = data
    flat = batch_lib.to_transitions(batch)
    obs = obs.reshape(N * T, -1)
    old_dist = jax.tree.map(lambda x: x.reshape((N * T,) + x.shape[2:]), old_dist)
    k, size = algo.num_minibatches, N * T // algo.num_minibatches

    @jax.jit
    def minibatch_step(params, opt_state, objective_state, idx):
        def loss_fn(p):
            dist, value = model.apply(p, obs[idx])
            mb = jax.tree.map(lambda x: x[idx], flat)
            action = mb.response_bt[:, 0]
            kl = dist.kl(jax.tree.map(lambda x: x[idx], old_dist))[:, None] if "kl_to_old" in algo.needs else None
            mb = mb.replace(logp_bt=dist.log_prob(action)[:, None], entropy_bt=dist.entropy()[:, None],
                            value_bt=value[:, None], kl_to_old_bt=kl)
            out, new_objective_state = algo.objective.apply(mb, objective_state, step=state.step)
            return total_loss(out), new_objective_state

        (loss, objective_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = algo.optimizer.update(grads, opt_state, params)
        return jax.tree.map(lambda p, u: p + u, params, updates), opt_state, objective_state, loss

    carry = (state.params, state.opt_state, state.objective_state)
    losses = []
    for epoch_key in jax.random.split(key, algo.num_epochs):
        order = jax.random.permutation(epoch_key, N * T) if k > 1 else jnp.arange(N * T)
        for m in range(k):
            *carry, loss = minibatch_step(*carry, order[m * size:(m + 1) * size])
            losses.append(loss)
    return carry[0], carry[1], float(np.mean(losses))


def _close(a, b):
    # float64: the two loops differ only in the order XLA evaluates the same sums (≈ 1e-16
    # relative per operation, a few dozen operations deep); 1e-9 is far above that and far
    # below any real difference (a different minibatch order moves the parameters by ≈ 1e-4)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("noun, kwargs", [
    ("ppo", dict(num_epochs=2, num_minibatches=4)),   # shuffled minibatches
    ("ppo", dict(num_epochs=2, num_minibatches=1)),   # one full-batch minibatch: no permutation
    ("mdpo", dict(sgd_steps=3)),                      # exact KL to the acting policy
])
def test_shared_loop_equals_the_pure_jax_rl_loop(noun, kwargs):
    with jax.enable_x64(True):
        algo = getattr(control_algorithms, noun)(num_updates=4, **kwargs)
        model, state, batch, data = problem(algo)
        key = jax.random.key(7)
        update = jax.jit(lambda state, batch, data, key: control_train.update(model, algo, state, batch, data, key))
        params, opt_state, _, metrics = update(state, batch, data, key)
        ref_params, ref_opt_state, ref_loss = pure_jax_rl_loop(model, algo, state, batch, data, key)
        assert jax.tree.leaves(params)[0].dtype == jnp.float64 and metrics["loss"].dtype == jnp.float64
        _close(params, ref_params)
        _close(opt_state, ref_opt_state)
        np.testing.assert_allclose(float(metrics["loss"]), ref_loss, rtol=1e-9)
        # the update moved the parameters, and the minibatch order matters: another key differs
        other, _, _, _ = update(state, batch, data, jax.random.key(8))
        moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state.params)))
        assert moved > 1e-4
        if algo.num_minibatches > 1:
            assert not np.allclose(jax.tree.leaves(other)[0], jax.tree.leaves(params)[0], rtol=1e-6)


def test_update_under_jit_equals_without():
    with jax.enable_x64(True):
        algo = control_algorithms.ppo(num_updates=4, num_epochs=2, num_minibatches=2)
        model, state, batch, data = problem(algo, key=1)
        key = jax.random.key(3)
        eager = control_train.update(model, algo, state, batch, data, key)
        jitted = jax.jit(lambda s, b, d, k: control_train.update(model, algo, s, b, d, k))(state, batch, data, key)
        _close(eager, jitted)


def _spy(monkeypatch):
    calls = []
    original = update_lib.epochs

    def spy(*args, **kwargs):
        calls.append(kwargs["algorithm"].num_minibatches)
        return original(*args, **kwargs)

    monkeypatch.setattr(update_lib, "epochs", spy)
    return calls


def _smoke(name):
    return importlib.import_module(f"experiments.{name}").get_config("smoke")


@pytest.mark.parametrize("name, per_update", [
    ("cartpole_ppo", 1), ("cartpole_mdpo", 1), ("mpe_spread_mappo", 1),
    ("cartpole_props", 1 + 2),  # the target's update and one per behaviour chunk
    ("bandit_relic", 4),        # U = 4 partial / full updates per context
])
def test_every_epochs_minibatches_trainer_updates_through_the_shared_loop(name, per_update, monkeypatch):
    calls = _spy(monkeypatch)
    config = _smoke(name)
    run = importlib.import_module(f"polrl.control.{config.run}").make_run(config)
    key = jax.random.key(0)
    jax.eval_shape(run.train, key, jax.eval_shape(run.init, key), *run.data)  # traces the whole run
    # one traced call per update of the scanned update step (a scan traces its body once)
    assert len(calls) == per_update, calls


def test_props_behaviour_and_target_updates_use_their_own_minibatch_counts(monkeypatch):
    calls = _spy(monkeypatch)
    config = _smoke("cartpole_props")
    jax.eval_shape(props.make_train(config), jax.random.key(0))
    assert sorted(calls) == sorted([config.props.num_minibatches] * config.props.behavior_chunks
                                   + [config.algorithm_kwargs.num_minibatches])


def test_relic_minibatches_are_whole_contexts(monkeypatch):
    # the shared loop's rows are contexts ([N, T] records with their [N, T+1, F] tokens), so a
    # minibatch holds N/k whole contexts
    config = _smoke("bandit_relic")
    seen = set()
    original = relic.score

    def spy(graphdef, params, batch, tokens, end):
        seen.add((batch.response_bt.shape, tokens.shape))
        return original(graphdef, params, batch, tokens, end)

    monkeypatch.setattr(relic, "score", spy)
    run = relic.make_run(config)
    key = jax.random.key(0)
    jax.eval_shape(run.train, key, jax.eval_shape(run.init, key))
    n, t, k = config.num_envs, config.num_steps, config.algorithm_kwargs.num_minibatches
    width = relic.Task(**config.task).token_dim()
    assert seen == {((n // k, t), (n // k, t + 1, width))}

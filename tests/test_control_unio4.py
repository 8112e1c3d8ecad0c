"""Uni-O4: the ensemble BC loss, IQL losses and the BPPO objective against hand values (the BPPO
loss is the LLM side's clipped surrogate / entropy / aggregate), OPE-gated anchors, the online
start from the offline actor and V, and the :smoke config through the launcher entry."""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import polrl
from polrl import objectives
from polrl.control import envs, offline_data, policies, unio4
from polrl.control.state_batch import transition_batch
from polrl.control.value_functions import build_q, eager_init, expectile_loss
from control_testing import run_smoke_config


def test_bc_ensemble_loss_hand_values_and_gradient():
    logp = jnp.array([[-1.0, -2.0], [-0.5, -3.0]])  # [E = 2, M = 2]
    # member 0: max over the other member = [-0.5, -3]: mean(1 − 0.1·(−0.5), 2 − 0.1·(1)) = 1.475
    # member 1: max over member 0 = [-1, -2]:          mean(0.5 − 0.1·(0.5), 3 − 0.1·(−1)) = 1.775
    np.testing.assert_allclose(unio4.bc_ensemble_loss(logp, 0.1), [1.475, 1.775], rtol=1e-6)
    # the max is detached: ∇ = (1 + α)·∇NLL, i.e. −(1 + α)/M per entry
    grad = jax.grad(lambda x: unio4.bc_ensemble_loss(x, 0.1).sum())(logp)
    np.testing.assert_allclose(grad, np.full((2, 2), -1.1 / 2), rtol=1e-6)
    np.testing.assert_allclose(unio4.bc_ensemble_loss(logp[:1], 0.1), [1.5])  # one member: NLL
    with pytest.raises(ValueError, match="logp_em"):
        unio4.bc_ensemble_loss(logp[0], 0.1)


def test_expectile_and_iql_losses_hand_values():
    np.testing.assert_allclose(expectile_loss(jnp.array([-2.0, 1.0]), 0.7), [1.2, 0.7], rtol=1e-6)
    np.testing.assert_allclose(expectile_loss(jnp.array([-2.0, 1.0]), 0.5), [2.0, 0.5], rtol=1e-6)
    q_apply = lambda p, obs, a: p * obs[:, 0] + a
    v_apply = lambda p, obs: p * obs[:, 0]
    obs, next_obs = jnp.array([[1.0], [2.0]]), jnp.array([[3.0], [4.0]])
    batch = (obs, jnp.array([0.5, -1.0]), jnp.array([1.0, 0.0]), next_obs, jnp.array([False, True]))
    q_loss, v_loss = unio4.iql_losses(q_apply, v_apply, 2.0, 1.0, 3.0, batch, gamma=0.9, expectile=0.7)
    # Q̄ = 3·s + a = [3.5, 5]; V = [1, 2]; u = [2.5, 3] > 0 → 0.7·u²
    np.testing.assert_allclose(v_loss, np.mean([0.7 * 2.5**2, 0.7 * 3.0**2]), rtol=1e-6)
    # targets r + γ(1 − terminal)V(s′) = [1 + 0.9·3, 0] ; Q = 2·s + a = [2.5, 3]
    np.testing.assert_allclose(q_loss, np.mean([(2.5 - 3.7) ** 2, 3.0**2]), rtol=1e-6)


def test_bppo_objective_is_the_shared_clipped_surrogate():
    batch = transition_batch(jnp.array([0, 1]), jnp.log(jnp.array([0.5, 0.5])), jnp.array([1.0, -1.0]))
    scored = batch.replace(logp_bt=jnp.log(jnp.array([[0.8], [0.2]])), entropy_bt=jnp.array([[0.6], [0.4]]))
    objective = unio4.bppo_objective(0.25, 0.1)
    out, _ = objective.apply(scored, objective.init())
    # ρ = [1.6, 0.4]; A = [1, −1]: max(−1.6, −1.25) = −1.25 ; max(0.4, 0.75) = 0.75
    np.testing.assert_allclose(out.losses["pg"], np.mean([-1.25, 0.75]), rtol=1e-6)
    np.testing.assert_allclose(out.losses["entropy"], -0.1 * 0.5, rtol=1e-6)
    assert unio4.objectives is polrl.objectives and objectives.clipped_policy_gradient is polrl.objectives.clipped_policy_gradient


def tiny_nets(env):
    kw = dict(hidden=(8,))
    return unio4.Networks(
        actor=policies.build(policies.Actor, env.obs_shape, env.action, **kw),
        critic=policies.build(policies.Critic, env.obs_shape, env.action, **kw),
        q=build_q(env.obs_shape, env.action, **kw),
    )


def random_data(n=64):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    return offline_data.Transitions(
        obs=obs, action=rng.integers(0, 2, n).astype(np.int32), reward=np.ones(n, np.float32),
        next_obs=obs + 0.1, terminated=rng.random(n) < 0.1, truncated=np.zeros(n, bool),
        time=np.zeros(n, np.int32), expert=np.zeros(n, bool),
    )


def test_anchors_move_only_where_the_ope_estimate_improved():
    env = envs.make("CartPole-v1", 1)
    nets = tiny_nets(env)
    data = jax.tree.map(jnp.asarray, random_data())
    h = {**unio4.DEFAULTS, "num_members": 3, "batch_size": 16, "value_steps": 20, "bppo_steps": 6,
         "eval_every": 2, "bppo_lr": 3e-2, "bc_steps": 5}
    bc_e = eager_init(nets.actor.init, jax.random.split(jax.random.key(0), 3))
    q, v, _ = unio4.fit_values(nets, data, jax.random.key(1), h, 0.99, nets.q.init(jax.random.key(2)),
                               nets.critic.init(jax.random.key(3)))
    ope_obs = data.obs[:32]
    start = unio4.ope_scores(nets, q, bc_e, ope_obs)
    offline, stats = jax.jit(lambda k: unio4.improve(nets, data, k, h, bc_e, q, v, ope_obs))(jax.random.key(4))
    best = np.asarray(stats["best_ope"])
    # Step 0 is no evaluation step, so its best scores are the start's, as the jitted step computes
    # them: the same float32 function, which may round differently inside the larger program.
    np.testing.assert_allclose(best[0], np.asarray(start), rtol=1e-6)
    assert np.all(np.diff(best, axis=0) >= 0)
    # anchors change only on evaluation steps (every 2nd) and only where the score improved
    updates = np.asarray(stats["anchor_updates"])
    previous = np.vstack([best[:1], best[:-1]])
    np.testing.assert_array_equal(updates, (best > previous).sum(1))
    assert np.all(updates[0::2] == 0) and updates.sum() > 0
    # each anchor is the parameters that earned its best score (or the BC member if none did)
    np.testing.assert_allclose(unio4.ope_scores(nets, q, offline.anchor_e, ope_obs), offline.best_e, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(stats["clip_ratio"]), 0.25 * (1 - np.arange(6) / 6), rtol=1e-6)


def test_online_start_is_the_offline_actor_and_value():
    env = envs.make("CartPole-v1", 1)
    actor = policies.build(policies.Actor, env.obs_shape, env.action)
    critic = policies.build(policies.Critic, env.obs_shape, env.action)
    model = policies.build(policies.ActorCritic, env.obs_shape, env.action)
    a, c = actor.init(jax.random.key(0)), critic.init(jax.random.key(1))
    merged = unio4.actor_critic_params(jax.eval_shape(model.init, jax.random.key(2)), a, c)
    obs = jax.random.normal(jax.random.key(3), (5, 4))
    dist, value = model.apply(merged, obs)
    np.testing.assert_allclose(dist.logits, actor.apply(a, obs).logits, rtol=1e-6)
    np.testing.assert_allclose(value, critic.apply(c, obs), rtol=1e-6)


def test_unknown_hyperparameter_is_refused():
    config = importlib.import_module("experiments.cartpole_unio4").get_config("smoke")
    config.unio4.bc_stepz = 3
    with pytest.raises(ValueError, match="bc_stepz"):
        unio4.hyper(config)


@pytest.mark.slow
def test_smoke_config_runs_through_the_launcher_entry(tmp_path):
    summary, records = run_smoke_config("cartpole_unio4", tmp_path, data_dir=True)
    assert [r["step"] for r in records] == [64, 128] and all(r["phase"] == "control" for r in records)
    assert all(np.isfinite(r["loss"]) for r in records)
    assert np.isfinite(summary["offline_return"]) and summary["bc_return"] >= 0

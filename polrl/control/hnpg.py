"""HNPG: hybrid natural policy gradient (Song et al. 2023, "Hybrid RL: Using Both Offline and
Online Data Can Make RL Efficient", arXiv 2210.06718; the NPG variant of Zhou et al.,
``YifeiZhou02/HNPG : trpo.py``).

Finite horizon H, γ = 1, one policy π_h and one critic Q_h per step h (``FINITE = True`` in the
reference), on a ``combination_lock``. Each update (one jitted step of ``train``):

1. **On-policy rollout**: N episodes of H steps; V_h(s) = mean of 10 samples Q_h(s, a ~ π_h).
2. **Hybrid critic** (fitted evaluation), for h = H−1 … 0, 30 Adam steps (lr 3e-4, a fresh Adam
   per fit as the reference) on

       E_on[(Q_h(s,a) − G)²] + E_off[(Q_h(s,a) − r − Q_{h+1}(s′, ã ~ π_{h+1}))²] + l2·‖θ_h‖²

   with G the on-policy Monte-Carlo return (``ops.discounted_returns``) and offline transitions
   of step h (the target at h = H−1 is r).
3. **Advantages**: on-policy GAE with the refitted values (λ = τ = 0.97, ``ops.gae``); offline
   states s at step h get ã ~ π_h(s) and Â = Q_h(s, ã) − V_h(s). Not normalised (as the reference).
4. **Actor**: per h, one NPG/TRPO step on the union of on-policy and offline states of step h:

       L(θ) = −mean[Â · π_θ(a|s)/π_fixed(a|s)]          (``clipped_policy_gradient`` with ε = ∞)
       F = ∇²_θ mean KL(π_fixed ‖ π_θ)                  (Hessian-vector products: jvp of grad)
       x ≈ (F + 0.1 I)⁻¹(−∇L)  by 10 conjugate-gradient iterations (``jax.scipy.sparse.linalg.cg``)
       full step = x / √(½ xᵀ(F + 0.1 I)x / δ),  δ = max KL = 0.01
       backtracking line search: fractions 1, ½, …, ½⁹; the first with actual improvement > 0
       and actual / expected > 0.1 is taken (none: no step).

The H per-step policies / critics are parameters stacked on axis 0; steps 2 and 4 are a reverse
``lax.scan`` and a ``vmap`` over h. The policy is a tanh 16 × 16 Gaussian (reference ``Policy``;
here the polrl ``Actor`` init: orthogonal, head gain 0.01, log-std 0), Q a tanh 64 × 64 MLP on
[s, a] (``value_functions.QNetwork``). INFERRED: the reference's l2 term only reaches its last
parameter tensor (a loop overwrites the loss); l2 here covers all of θ_h, default 0 as the
reference's command line. ``hybrid=False`` (the reference's ``HYBRID`` flag) drops the offline
terms from both the critic and the actor: plain on-policy NPG with a Monte-Carlo critic.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from polrl import objectives, ops
from polrl.control import offline_data, policies
from polrl.control.state_batch import transition_batch
from polrl.control.seeds import Run
from polrl.control.value_functions import build_q, eager_init
from polrl.core import chain, total_loss

Array = jax.Array

DEFAULTS = dict(
    offline_batch=200, critic_steps=30, critic_lr=3e-4, l2_reg=0.0, value_samples=10,
    gae_lambda=0.97, max_kl=0.01, damping=0.1, cg_iters=10, backtracks=10, accept_ratio=0.1,
    actor_hidden=(16, 16), critic_hidden=(64, 64), hybrid=True,
)


def _vdot(a, b) -> Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _axpy(alpha, x, y):
    """α·x + y over pytrees."""
    return jax.tree.map(lambda u, v: alpha * u + v, x, y)


def surrogate_objective():
    """The NPG surrogate −Â·π_θ/π_fixed as the shared transforms (no clip, token mean)."""
    return chain(objectives.clipped_policy_gradient(eps_low=jnp.inf), objectives.aggregate("token_mean"))


def npg_step(actor_apply, params, obs: Array, action: Array, adv: Array, *, max_kl=0.01, damping=0.1,
             cg_iters: int = 10, backtracks: int = 10, accept_ratio=0.1):
    """One TRPO/NPG step of ``params`` on (obs, action, Â) (step 4 of the module doc).

    Returns ``(new_params, stats)``; stats: ``loss_before``, ``loss_after``, ``step_frac`` (the
    accepted line-search fraction, 0 when none), ``kl`` (mean KL(π_fixed ‖ π_new)).
    """
    fixed = jax.lax.stop_gradient(actor_apply(params, obs))
    batch = transition_batch(action, fixed.log_prob(action), adv)
    objective = surrogate_objective()

    def loss(p):
        dist = actor_apply(p, obs)
        out, _ = objective.apply(batch.replace(logp_bt=dist.log_prob(action)[:, None]), objective.init())
        return total_loss(out)

    def kl(p):
        return fixed.kl(actor_apply(p, obs)).mean()

    def fvp(v):
        hv = jax.jvp(jax.grad(kl), (params,), (v,))[1]
        return _axpy(damping, v, hv)

    loss0, grads = jax.value_and_grad(loss)(params)
    step_dir, _ = jax.scipy.sparse.linalg.cg(fvp, jax.tree.map(jnp.negative, grads), maxiter=cg_iters, tol=0.0, atol=1e-5)
    shs = 0.5 * _vdot(step_dir, fvp(step_dir))
    safe = shs > 0
    inv_lm = jnp.where(safe, jnp.sqrt(max_kl / jnp.where(safe, shs, 1.0)), 0.0)
    full = jax.tree.map(lambda x: x * inv_lm, step_dir)
    expected_rate = -_vdot(grads, step_dir) * inv_lm
    fracs = 0.5 ** jnp.arange(backtracks, dtype=jnp.float32)
    losses = jax.vmap(lambda f: loss(_axpy(f, full, params)))(fracs)
    actual = loss0 - losses
    ok = (actual > 0) & (actual > accept_ratio * expected_rate * fracs)
    frac = jnp.where(ok.any(), fracs[jnp.argmax(ok)], 0.0)
    new = _axpy(frac, full, params)
    stats = dict(loss_before=loss0, loss_after=jnp.where(ok.any(), losses[jnp.argmax(ok)], loss0),
                 step_frac=frac, kl=kl(new))
    return new, stats


def per_step_data(data: offline_data.Transitions, horizon: int):
    """Offline transitions grouped by step: every field [H, episodes, ...] (numpy, checked)."""
    n = data.reward.shape[0]
    if n % horizon or not np.array_equal(data.time.reshape(-1, horizon), np.tile(np.arange(horizon), (n // horizon, 1))):
        raise ValueError(
            f"per_step_data: the offline data is not made of whole episodes of horizon {horizon} "
            f"(time indices must repeat 0 … {horizon - 1}); collect it from the same lock (env_kwargs)"
        )
    return offline_data.Transitions(*(np.swapaxes(x.reshape((-1, horizon) + x.shape[1:]), 0, 1) for x in data))


class Networks(NamedTuple):
    actor: policies.PolicyDef
    q: Any


class Params(NamedTuple):
    """Per-step parameters, stacked on axis 0 (h)."""

    actor: Any
    q: Any


def hyper(config) -> dict:
    """``DEFAULTS`` overridden by ``config.hnpg``; unknown names fail."""
    given = dict(config.get("hnpg", {}) or {})
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"config.hnpg has unknown fields {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    return {**DEFAULTS, **given}


def make_run(config) -> Run:
    """The launcher's ``Run`` (``config.run = "hnpg"``): ``init(rng) -> Params`` (eager),
    ``train(rng, params, data) -> (Params, metrics)``; ``data`` = ``per_step_data`` of the
    offline set (``load_data``, generated on first use); one update is num_envs × H steps.

    Config: ``env_name = "CombinationLock"``, ``env_params`` (horizon, action_dim, lock_seed — the
    same as ``offline_data.env_kwargs``), ``num_envs`` (episodes per update), ``total_timesteps``
    (updates = total_timesteps // (num_envs · H)), ``hnpg`` (overrides of ``DEFAULTS``).
    ``metrics`` [K]: ``mean_return`` (the update's on-policy episodes), ``success`` (fraction that
    opened the lock), ``kl``, ``step_frac``, ``loss_before``/``loss_after`` (means over h),
    ``q_loss_on``/``q_loss_off`` (last critic step, mean over h).
    """
    h = hyper(config)
    if config.env_name != offline_data.LOCK:
        raise ValueError(f"HNPG runs on env_name={offline_data.LOCK!r} (finite horizon), got {config.env_name!r}")
    env_kwargs = dict(config.get("env_params", {}) or {})
    data_kwargs = dict(dict(config.offline_data).get("env_kwargs", {}) or {})
    if env_kwargs != data_kwargs:
        raise ValueError(f"env_params {env_kwargs} differ from offline_data.env_kwargs {data_kwargs}: use the same lock")
    env = offline_data.make_env(config.env_name, int(config.num_envs), env_kwargs)
    horizon = env.env.horizon
    num_updates = int(config.total_timesteps) // (env.num_envs * horizon)
    if num_updates < 1:
        raise ValueError(f"total_timesteps={config.total_timesteps} is less than one update of num_envs × horizon steps")
    nets = Networks(
        actor=policies.build(policies.Actor, env.obs_shape, env.action, hidden=h["actor_hidden"]),
        q=build_q(env.obs_shape, env.action, hidden=h["critic_hidden"]),
    )
    last = jnp.arange(horizon) == horizon - 1

    def values(params: Params, obs, key):
        """V_h(s) [H, M] = mean over ``value_samples`` draws of Q_h(s, a ~ π_h)."""

        def one(actor, q, obs, key):
            dist = nets.actor.apply(actor, obs)
            acts = jax.vmap(dist.sample)(jax.random.split(key, h["value_samples"]))
            return jax.vmap(lambda a: nets.q.apply(q, obs, a))(acts).mean(0)

        return jax.vmap(one)(params.actor, params.q, obs, jax.random.split(key, horizon))

    def rollout(actor, key):
        key_reset, key_run = jax.random.split(key)
        obs, state = env.reset(key_reset)

        def step(carry, xs):
            obs, state = carry
            p, k = xs
            key_act, key_env = jax.random.split(k)
            action = nets.actor.apply(p, obs).sample(key_act)
            next_obs, state, out = env.step(key_env, state, action)
            return (next_obs, state), (obs, action, out.reward)

        _, traj = jax.lax.scan(step, (obs, state), (actor, jax.random.split(key_run, horizon)))
        return traj  # [H, N, ...]

    def fit_critic(params: Params, on, off, key):
        """Step 2: reverse scan over h; returns the new stacked Q params and losses [H]."""
        opt = optax.adam(h["critic_lr"])
        next_actor = jax.tree.map(lambda x: jnp.roll(x, -1, axis=0), params.actor)

        def fit(q_next, xs):
            q_h, actor_next, obs, act, ret, o, is_last, k = xs
            a_next = nets.actor.apply(actor_next, o.next_obs).sample(k)
            target = o.reward + jnp.where(is_last, 0.0, nets.q.apply(q_next, o.next_obs, a_next))

            def loss(p):
                on_l = ((nets.q.apply(p, obs, act) - ret) ** 2).mean()
                off_l = ((nets.q.apply(p, o.obs, o.action) - target) ** 2).mean()
                l2 = sum(jnp.sum(x**2) for x in jax.tree.leaves(p))
                total = on_l + off_l if h["hybrid"] else on_l
                return total + h["l2_reg"] * l2, (on_l, off_l)

            def adam_step(c, _):
                p, st = c
                (_, aux), g = jax.value_and_grad(loss, has_aux=True)(p)
                upd, st = opt.update(g, st, p)
                return (optax.apply_updates(p, upd), st), aux

            (q_h, _), (on_l, off_l) = jax.lax.scan(adam_step, (q_h, opt.init(q_h)), None, length=h["critic_steps"])
            return q_h, (q_h, on_l[-1], off_l[-1])

        xs = (params.q, next_actor, *on, off, last, jax.random.split(key, horizon))
        init = jax.tree.map(lambda x: x[-1], params.q)
        _, (q, on_l, off_l) = jax.lax.scan(fit, init, xs, reverse=True)
        return q, on_l, off_l

    def update(params: Params, key, data):
        key_roll, key_v, key_off, key_critic, key_v2, key_act = jax.random.split(key, 6)
        obs, action, reward = rollout(params.actor, key_roll)  # [H, N, ...]
        discount = jnp.where(last, 0.0, 1.0)
        ret = jax.vmap(lambda r: ops.discounted_returns(r, discount, jnp.zeros(())), in_axes=1, out_axes=1)(reward)
        idx = jax.random.randint(key_off, (horizon, h["offline_batch"]), 0, data.reward.shape[1])
        off = jax.tree.map(lambda x: jax.vmap(lambda xh, ih: xh[ih])(x, idx), data)
        q, on_l, off_l = fit_critic(params, (obs, action, ret), off, key_critic)
        params = params._replace(q=q)
        v = values(params, obs, key_v)  # [H, N]
        gae = lambda r, vals: ops.gae(r, discount, jnp.concatenate([vals, jnp.zeros((1,))]), h["gae_lambda"])
        adv = jax.vmap(gae, in_axes=(1, 1), out_axes=1)(reward, v)

        def offline_adv(actor, q, obs, k):
            a = nets.actor.apply(actor, obs).sample(k)
            return a, nets.q.apply(q, obs, a)

        off_act, off_q = jax.vmap(offline_adv)(params.actor, params.q, off.obs, jax.random.split(key_act, horizon))
        off_adv = off_q - values(params, off.obs, key_v2)
        step = lambda p, o, a, ad: npg_step(
            nets.actor.apply, p, o, a, ad, max_kl=h["max_kl"], damping=h["damping"], cg_iters=h["cg_iters"],
            backtracks=h["backtracks"], accept_ratio=h["accept_ratio"],
        )
        cat = (lambda a, b: jnp.concatenate([a, b], axis=1)) if h["hybrid"] else (lambda a, b: a)
        actor, stats = jax.vmap(step)(params.actor, cat(obs, off.obs), cat(action, off_act), cat(adv, off_adv))
        total = reward.sum(0)
        metrics = dict(
            mean_return=total.mean(), success=(total >= 1.0).mean(),
            q_loss_on=on_l.mean(), q_loss_off=off_l.mean(), **jax.tree.map(jnp.mean, stats),
        )
        return params._replace(actor=actor), metrics

    def init(rng) -> Params:
        key_actor, key_q = jax.random.split(rng)
        return Params(eager_init(nets.actor.init, jax.random.split(key_actor, horizon)),
                      eager_init(nets.q.init, jax.random.split(key_q, horizon)))

    def train(rng, params: Params, data):
        keys = jax.random.split(rng, num_updates)
        return jax.lax.scan(lambda p, k: update(p, k, data), params, keys)

    return Run(init, train, steps_per_update=env.num_envs * horizon, data=(load_data(config),))


def load_data(config):
    """The experiment's offline lock data, grouped by step ([H, episodes, ...] jnp arrays)."""
    data = offline_data.load(config.data_dir, **dict(config.offline_data))
    horizon = int(dict(config.env_params)["horizon"])
    return jax.tree.map(jnp.asarray, per_step_data(data, horizon))


__all__ = ["load_data", "make_run", "npg_step", "per_step_data", "surrogate_objective"]

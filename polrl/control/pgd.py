"""Policy-Guided Diffusion: offline RL on real plus policy-guided synthetic trajectories
(Jackson et al. 2024, "Policy-Guided Diffusion", arXiv 2404.06356).

One jittable ``train(rng, init, windows, data)``:

1. **Target policy on real data.** IQL (Kostrikov et al. 2021, "Offline Reinforcement Learning
   with Implicit Q-Learning", arXiv 2110.06169): V by the expectile loss on the target Q, Q by
   TD on r + γ(1 − terminal)V(s′) (``unio4.iql_losses``), Polyak target; the policy by
   advantage-weighted regression, L_π = −E_D[min(exp(β (Q(s,a) − V(s))), 100)·log π(a|s)]
   (IQL's policy extraction, β = ``awr_temperature``), all three trained together.
2. **Trajectory diffusion** (``trajectory_diffusion``) on the dataset's windows of H
   consecutive steps of one episode; each row is [s, one-hot(a), r, terminal, s′], every column
   standardised by the windows' mean and max(std, 0.1) (the floor keeps the rare terminal flag
   and a constant reward finite); sampling clips x̂_0 to ±``clip_x0`` standard deviations.
3. **Guided synthesis.** ⌈``num_synthetic``/H⌉ windows sampled with policy guidance by the
   step-1 policy π (their first ``num_synthetic`` rows kept), λ = ``guidance``, through the relaxed log-likelihood
   log π(a_t|s_t) = Σ_k â_{t,k} log π(k|s_t) of the de-standardised row (â the one-hot columns
   as reals). Each sampled row decodes to a transition: a = argmax â, terminal = [column > ½],
   s, r, s′ as sampled.
4. **Agent on real + synthetic.** The same IQL + AWR agent from the same initialisation, every
   minibatch ``synthetic_fraction`` synthetic rows and the rest real.

Both agents' returns are measured online every ``eval_every`` gradient steps by rollouts with
sampled actions (``target_return``: real only, step 1; ``mean_return``: real + synthetic).
λ = 0 is the unguided baseline (synthetic data from the behaviour distribution).

INFERRED: the offline agent (IQL + AWR), the mixing of synthetic rows into each minibatch at a
fixed fraction, the relaxed one-hot action encoding and its guidance, the decoding of actions and
terminals, and training the target policy once on real data (the paper alternates rounds of
agent training and regeneration); the paper's agents and schedules are set for D4RL.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from polrl.control import envs, evaluation, offline_data, policies
from polrl.control import trajectory_diffusion as td
from polrl.control.seeds import Run
from polrl.control.unio4 import iql_losses
from polrl.control.value_functions import build_q, polyak

Array = jax.Array

DEFAULTS = dict(
    horizon=8, diffusion_steps=50, denoiser_hidden=(256, 256), diffusion_lr=1e-3, diffusion_train_steps=3_000,
    clip_x0=3.0, guidance=1.0, num_synthetic=2_000, synthetic_fraction=0.5, batch_size=256,
    lr=3e-4, expectile=0.7, awr_temperature=3.0, target_rate=0.005, eval_every=500, eval_steps=1_000,
)


class Transitions(NamedTuple):
    """Rows an agent trains on: (s, a, r, s′, terminal), leading axis the row."""

    obs: Array
    action: Array
    reward: Array
    next_obs: Array
    terminated: Array


class Agent(NamedTuple):
    """An IQL + AWR agent's parameters: actor, Q, V, target Q."""

    actor: Any
    q: Any
    v: Any
    q_target: Any


class Init(NamedTuple):
    """Initial parameters: the agent (shared by both trainings) and the denoiser."""

    agent: Agent
    denoiser: Any


def episode_windows(data: offline_data.Transitions, horizon: int, num_actions: int) -> np.ndarray:
    """Windows [W, H, obs + A + 3] of ``horizon`` consecutive rows of one episode (time indices
    t, t + 1, …), each row [s, one-hot(a), r, terminal, s′] (float32)."""
    time = np.asarray(data.time)
    m = time.shape[0] - horizon + 1
    if m < 1:
        raise ValueError(f"config.pgd.horizon={horizon} exceeds the dataset's {time.shape[0]} rows; lower it")
    starts = np.arange(m)
    ok = np.all(time[starts[:, None] + np.arange(horizon)] == time[starts, None] + np.arange(horizon), axis=1)
    rows = np.concatenate([
        np.asarray(data.obs, np.float32).reshape(time.shape[0], -1),
        np.eye(num_actions, dtype=np.float32)[np.asarray(data.action)],
        np.asarray(data.reward, np.float32)[:, None],
        np.asarray(data.terminated, np.float32)[:, None],
        np.asarray(data.next_obs, np.float32).reshape(time.shape[0], -1),
    ], axis=1)
    idx = starts[ok]
    if idx.size == 0:
        raise ValueError(f"config.pgd.horizon={horizon}: no episode in the data is that long; lower it")
    return rows[idx[:, None] + np.arange(horizon)]


def decode(rows: Array, obs_dim: int, num_actions: int) -> Transitions:
    """Transitions from (de-standardised) window rows [N, obs + A + 3] (module doc, step 3)."""
    a0 = obs_dim + num_actions
    return Transitions(
        obs=rows[:, :obs_dim], action=jnp.argmax(rows[:, obs_dim:a0], axis=-1).astype(jnp.int32),
        reward=rows[:, a0], terminated=rows[:, a0 + 1] > 0.5, next_obs=rows[:, a0 + 2:],
    )


def relaxed_log_policy(actor_apply, actor, obs_dim: int, num_actions: int, mean, std):
    """Σ_t Σ_k â_{t,k} log π(k|s_t) of a standardised window [H, D] (module doc, step 3)."""

    def log_policy(x):
        row = x * std + mean
        dist = actor_apply(actor, row[:, :obs_dim])
        logp_ha = jnp.stack([dist.log_prob(jnp.full((x.shape[0],), k)) for k in range(num_actions)], axis=-1)
        return (row[:, obs_dim:obs_dim + num_actions] * logp_ha).sum()

    return log_policy


def awr_loss(logp: Array, adv: Array, temperature) -> Array:
    """−mean(min(exp(β·A), 100)·log π(a|s)) with A detached (IQL's policy extraction)."""
    weight = jnp.minimum(jnp.exp(temperature * jax.lax.stop_gradient(adv)), 100.0)
    return -(weight * logp).mean()


def hyper(config) -> dict:
    """``DEFAULTS`` overridden by ``config.pgd``, plus ``agent_steps`` = ``config.total_timesteps``
    (each agent's gradient steps: pgd takes no online environment steps); unknown names and bad
    values fail in one line."""
    given = dict(config.get("pgd", {}) or {})
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"config.pgd has unknown fields {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    h = {**DEFAULTS, **given}
    if not 0.0 <= h["synthetic_fraction"] < 1.0:
        raise ValueError(f"config.pgd.synthetic_fraction={h['synthetic_fraction']}; use a float in [0, 1)")
    if min(h["horizon"], h["diffusion_steps"], h["num_synthetic"], h["eval_every"]) < 1:
        raise ValueError("config.pgd: horizon, diffusion_steps, num_synthetic, eval_every must be >= 1")
    steps = int(config.get("total_timesteps", 0))
    if steps < 1 or steps % h["eval_every"]:
        raise ValueError(f"config.total_timesteps={steps} (each agent's gradient steps) must be a positive "
                         f"multiple of config.pgd.eval_every={h['eval_every']}")
    return {**h, "agent_steps": steps}


def make_run(config) -> Run:
    """The launcher's ``Run`` of a PGD config (``config.run = "pgd"``; discrete actions).

    ``train(rng, init, windows, data) -> (result, metrics)``; ``data`` the offline transitions,
    ``windows`` their episode windows (``episode_windows``). Metrics: ``mean_return`` (agent on
    real + synthetic) and ``target_return`` (agent on real only) [total_timesteps / eval_every],
    ``diffusion_loss`` [diffusion_train_steps], ``synthetic_logp`` / ``real_logp`` (mean
    log π(a|s) of the target policy on the synthetic / real rows). One curve point stands for
    ``eval_every`` offline gradient steps (``steps_per_update``); no online data is trained on.
    """
    h = hyper(config)
    env = envs.make(config.env_name, int(config.num_envs), **dict(config.get("env_params", {}) or {}))
    if not env.action.discrete:
        raise ValueError(f"config.env_name={config.env_name!r}: pgd supports discrete actions only; use e.g. CartPole-v1")
    num_actions, obs_dim = env.action.num_actions, int(np.prod(env.obs_shape))
    kw = dict(hidden=tuple(config.get("hidden", (64, 64))), activation=config.get("activation", "tanh"))
    actor_def = policies.build(policies.Actor, env.obs_shape, env.action, **kw)
    critic_def = policies.build(policies.Critic, env.obs_shape, env.action, **kw)
    q_def = build_q(env.obs_shape, env.action, **kw)
    gamma = float(config.gamma)
    data = load_data(config)
    windows = jnp.asarray(episode_windows(data, h["horizon"], num_actions))
    real = Transitions(*(jnp.asarray(getattr(data, f)) for f in Transitions._fields))
    shape = (h["num_synthetic"] // h["horizon"] + 1, h["horizon"], windows.shape[-1])
    sched = td.cosine_schedule(h["diffusion_steps"])
    n_syn = int(round(h["synthetic_fraction"] * h["batch_size"]))

    def init(rng) -> Init:
        k_pi, k_q, k_v, k_d = jax.random.split(rng, 4)
        q = q_def.init(k_q)
        agent = Agent(actor_def.init(k_pi), q, critic_def.init(k_v), q)
        return Init(agent, td.init_denoiser(k_d, h["horizon"], windows.shape[-1], tuple(h["denoiser_hidden"])))

    def evaluate(actor, key):
        act = lambda k, obs, state: actor_def.apply(actor, obs).sample(k)
        return evaluation.mean_episode_return(env, act, key, h["eval_steps"])[0]

    def fit_agent(agent: Agent, key, real: Transitions, synthetic: Transitions, num_synthetic: int):
        opt = optax.adam(h["lr"])
        params = (agent.actor, agent.q, agent.v)

        def loss_fn(params, q_target, mb):
            actor, q, v = params
            q_loss, v_loss = iql_losses(q_def.apply, critic_def.apply, q, v, q_target, tuple(mb),
                                        gamma=gamma, expectile=h["expectile"])
            adv = q_def.apply(q_target, mb.obs, mb.action) - critic_def.apply(v, mb.obs)
            pi_loss = awr_loss(actor_def.apply(actor, mb.obs).log_prob(mb.action), adv, h["awr_temperature"])
            return q_loss + v_loss + pi_loss

        def minibatch(key):
            k_r, k_s = jax.random.split(key)
            take = lambda d, k, n: jax.tree.map(lambda x: x[jax.random.randint(k, (n,), 0, x.shape[0])], d)
            mb = take(real, k_r, h["batch_size"] - num_synthetic)
            if num_synthetic:
                mb = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), mb, take(synthetic, k_s, num_synthetic))
            return mb

        def step(carry, key):
            params, q_target, opt_state = carry
            grads = jax.grad(loss_fn)(params, q_target, minibatch(key))
            updates, opt_state = opt.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, polyak(q_target, params[1], h["target_rate"]), opt_state), None

        def chunk(carry, key):
            key_fit, key_eval = jax.random.split(key)
            carry, _ = jax.lax.scan(step, carry, jax.random.split(key_fit, h["eval_every"]))
            return carry, evaluate(carry[0][0], key_eval)

        carry = (params, agent.q_target, opt.init(params))
        num_chunks = h["agent_steps"] // h["eval_every"]
        ((actor, q, v), q_target, _), returns = jax.lax.scan(chunk, carry, jax.random.split(key, num_chunks))
        return Agent(actor, q, v, q_target), returns

    def fit_diffusion(params, key, windows, mean, std):
        opt = optax.adam(h["diffusion_lr"])
        x0_all = (windows - mean) / std

        def step(carry, key):
            params, opt_state = carry
            k_mb, k_loss = jax.random.split(key)
            x0 = x0_all[jax.random.randint(k_mb, (h["batch_size"],), 0, x0_all.shape[0])]
            loss_fn = lambda p: td.denoising_loss(lambda x, k: td.apply_denoiser(p, x, k, h["diffusion_steps"]), sched, x0, k_loss)
            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(key, h["diffusion_train_steps"]))
        return params, losses

    def train(rng, params: Init, windows, real):
        k_target, k_diff, k_syn, k_agent = jax.random.split(rng, 4)
        target, target_return = fit_agent(params.agent, k_target, real, real, 0)
        flat = windows.reshape(-1, windows.shape[-1])
        mean, std = flat.mean(0), jnp.maximum(flat.std(0), 0.1)
        denoiser, diffusion_loss = fit_diffusion(params.denoiser, k_diff, windows, mean, std)
        log_policy = relaxed_log_policy(actor_def.apply, target.actor, obs_dim, num_actions, mean, std)
        x = td.sample(lambda x, k: td.apply_denoiser(denoiser, x, k, h["diffusion_steps"]), sched, k_syn, shape,
                      log_policy=log_policy, guidance=h["guidance"], clip_x0=h["clip_x0"])
        synthetic = decode((x * std + mean).reshape(-1, windows.shape[-1]), obs_dim, num_actions)
        synthetic = jax.tree.map(lambda a: a[:h["num_synthetic"]], synthetic)
        agent, mean_return = fit_agent(params.agent, k_agent, real, synthetic, n_syn)
        logp = lambda d: actor_def.apply(target.actor, d.obs).log_prob(d.action).mean()
        metrics = dict(mean_return=mean_return, target_return=target_return, diffusion_loss=diffusion_loss,
                       synthetic_logp=logp(synthetic), real_logp=logp(real))
        return (target, agent), metrics

    return Run(init, train, steps_per_update=h["eval_every"], data=(windows, real), report=report)


def report(metrics: dict) -> tuple[dict, dict]:
    """(the two agents' return curves [seeds, K], final returns and log-likelihoods: mean and std
    over seeds) of a run's metrics (numpy, [seeds, ...])."""
    curves = {k: metrics[k] for k in ("mean_return", "target_return")}
    summary = {}
    finals = dict(augmented_return=metrics["mean_return"][:, -1], real_only_return=metrics["target_return"][:, -1],
                  synthetic_logp=metrics["synthetic_logp"], real_logp=metrics["real_logp"])
    for key, value in finals.items():
        summary[key] = float(value.mean())
        summary[key + "_std"] = float(value.std())
    return curves, summary


def load_data(config) -> offline_data.Transitions:
    """The experiment's offline dataset (``config.offline_data`` in ``config.data_dir``), numpy."""
    return offline_data.load(config.data_dir, **dict(config.offline_data))


__all__ = ["Agent", "Init", "Transitions", "awr_loss", "decode", "episode_windows", "make_run",
           "relaxed_log_policy", "report"]

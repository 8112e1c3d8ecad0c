"""Uni-O4: one on-policy objective offline, then online (Lei et al. 2024, arXiv 2311.03351).

Reference: ``Lei-Kun/Uni-O4`` (``main.py``, ``BC_ensemble.py``, ``abppo.py``). The whole run —
four offline phases and online PPO — is one jittable ``train(rng, data)``:

1. **Ensemble behaviour cloning.** E members π_1 … π_E, each minimising on dataset pairs (s, a)

       L_i = E_D[ −log π_i(a|s) − α_bc (log π_i(a|s) − max_{j≠i} sg log π_j(a|s)) ],   α_bc = 0.1

   (``bc_kl="data"``, the reference default). The max is detached, so ∇L_i = (1 + α_bc)·∇NLL_i:
   the term changes the loss value, not the direction; the members differ by their
   initialisation and their stochastic optimisation (noted from the reference, not changed).
2. **Q and V on the data** (IQL, Kostrikov et al. 2021, arXiv 2110.06169):
   V ← argmin E_D[L₂^ω(Q̄(s,a) − V(s))] (expectile ω = 0.7; ω = ½ is the SARSA-style mean),
   Q ← argmin E_D[(r + γ (1 − terminal) V(s′) − Q(s,a))²], target Q̄ by Polyak averaging.
3. **Per-member BPPO improvement.** On a minibatch of dataset states, a ~ π_old,i (the member's
   anchor), Â = Q(s,a) − V(s) normalised over the minibatch (``whiten_advantage``), and the
   shared PPO loss (``clipped_policy_gradient`` with ratio π_i/π_old,i, ``entropy_bonus``,
   ``aggregate("token_mean")``) with a clip ratio and a learning rate decayed linearly to 0 over
   the ``bppo_steps`` (``is_linear_decay``), gradient norm clipped to 0.5 per member.
4. **Offline policy evaluation and anchor updates.** Every ``eval_every`` steps each member is
   scored; where the score beats the member's best so far, its anchor π_old,i ← π_i.
   OPE chosen here: fitted-Q, Ĵ(π) = E_{s∈S_eval} Q(s, mode π(s)) on a fixed sample of
   dataset states. The reference rolls a learned dynamics ensemble out from dataset states and
   averages Q along the rollout; for the small, deterministic tasks here a one-step fitted-Q
   estimate needs no learned termination model and no rollout horizon, and ranks the members
   with the same Q that drives the improvement. (INFERRED: a substitute for the paper's OPE.)
5. **Online.** The repo's PPO (``polrl.control.train.run_on_policy``, PureJaxRL loop) starts
   from the member with the best OPE score (its anchor) and V as the critic.

Defaults follow the reference where they transfer (α_bc 0.1, ω 0.7, clip 0.25 decayed
linearly, entropy weight 0, 4 members, Adam, grad-norm clip 0.5 in BPPO); step counts and
learning rates are scaled down for CPU-sized tasks (documented in the experiment config).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from polrl import advantages, objectives
from polrl.control import evaluation, offline_data, policies
from polrl.control import train as control_train
from polrl.control.state_batch import transition_batch
from polrl.control.seeds import Run
from polrl.control.value_functions import build_q, eager_init, expectile_loss, greedy_action, polyak
from polrl.core import chain, total_loss

Array = jax.Array

DEFAULTS = dict(
    num_members=4, alpha_bc=0.1, bc_steps=2_000, bc_lr=1e-3, batch_size=256,
    value_steps=5_000, value_lr=3e-4, expectile=0.7, target_rate=0.005,
    bppo_steps=1_000, bppo_lr=1e-4, clip_ratio=0.25, ent_coef=0.0, max_grad_norm=0.5,
    eval_every=100, ope_states=2_048, eval_steps=1_000,
)


def bc_ensemble_loss(logp_em: Array, alpha) -> Array:
    """Per-member joint BC loss [E] from log π_i(a_m|s_m) [E, M] (step 1 of the module doc).

        L_i = mean_m[ −log π_i − α (log π_i − max_{j≠i} sg log π_j) ]

    With one member there is no other policy and L = NLL.
    """
    if logp_em.ndim != 2:
        raise ValueError(f"bc_ensemble_loss: logp_em must be [E, M], got shape {logp_em.shape}")
    num = logp_em.shape[0]
    if num == 1:
        return -logp_em.mean(-1)
    others = jnp.where(jnp.eye(num, dtype=bool)[:, :, None], -jnp.inf, jax.lax.stop_gradient(logp_em)[None])
    best_other = others.max(axis=1)
    return (-logp_em - alpha * (logp_em - best_other)).mean(-1)


def iql_losses(q_apply, v_apply, q_params, v_params, q_target, batch, *, gamma, expectile):
    """(Q loss, V loss) of IQL on a minibatch (step 2 of the module doc).

    ``batch`` = (obs, action, reward, next_obs, terminated). The V loss reads the target Q and
    the Q loss the detached V(s′), so each loss moves only its own network.
    """
    obs, action, reward, next_obs, terminated = batch
    q_bar = jax.lax.stop_gradient(q_apply(q_target, obs, action))
    v_loss = expectile_loss(q_bar - v_apply(v_params, obs), expectile).mean()
    next_v = jax.lax.stop_gradient(v_apply(v_params, next_obs))
    target = reward + gamma * (1.0 - terminated.astype(jnp.float32)) * next_v
    q_loss = ((q_apply(q_params, obs, action) - target) ** 2).mean()
    return q_loss, v_loss


def bppo_objective(clip_ratio, ent_coef):
    """The shared PPO objective of step 3: clipped surrogate, entropy bonus, token mean."""
    return chain(
        objectives.clipped_policy_gradient(eps_low=clip_ratio),
        objectives.entropy_bonus(coef=ent_coef),
        objectives.aggregate("token_mean"),
    )


class Networks(NamedTuple):
    """The static model definitions of a run."""

    actor: policies.PolicyDef
    critic: policies.PolicyDef
    q: Any


class Offline(NamedTuple):
    """What the offline phases produce (stacked over members where E appears)."""

    actor_e: Any
    anchor_e: Any
    best_e: Array
    q: Any
    v: Any


def _minibatch(key, data, size):
    idx = jax.random.randint(key, (size,), 0, data.reward.shape[0])
    return jax.tree.map(lambda x: x[idx], data)


def fit_bc(nets: Networks, data, key, h, params) -> tuple[Any, Array]:
    """Step 1: ``h["bc_steps"]`` Adam steps of the joint ensemble loss from ``params`` (stacked
    over members); returns (params_e, loss [steps, E])."""
    opt = optax.adam(h["bc_lr"])
    opt_state = jax.vmap(opt.init)(params)

    def loss_fn(params, obs, action):
        logp = jax.vmap(lambda p: nets.actor.apply(p, obs).log_prob(action))(params)
        per_member = bc_ensemble_loss(logp, h["alpha_bc"])
        return per_member.sum(), per_member

    def step(carry, key):
        params, opt_state = carry
        mb = _minibatch(key, data, h["batch_size"])
        grads, per_member = jax.grad(loss_fn, has_aux=True)(params, mb.obs, mb.action)
        updates, opt_state = jax.vmap(opt.update)(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), per_member

    (params, _), losses = jax.lax.scan(step, (params, opt_state), jax.random.split(key, h["bc_steps"]))
    return params, losses


def fit_values(nets: Networks, data, key, h, gamma, q, v) -> tuple[Any, Any, dict]:
    """Step 2: IQL Q and V from initial ``q``, ``v``; returns (Q, V, {"q_loss", "v_loss"} [steps])."""
    opt = optax.adam(h["value_lr"])
    opt_state = opt.init((q, v))

    def loss_fn(qv, q_target, mb):
        q_loss, v_loss = iql_losses(
            nets.q.apply, nets.critic.apply, qv[0], qv[1], q_target,
            (mb.obs, mb.action, mb.reward, mb.next_obs, mb.terminated),
            gamma=gamma, expectile=h["expectile"],
        )
        return q_loss + v_loss, dict(q_loss=q_loss, v_loss=v_loss)

    def step(carry, key):
        q, v, q_target, opt_state = carry
        grads, stats = jax.grad(loss_fn, has_aux=True)((q, v), q_target, _minibatch(key, data, h["batch_size"]))
        updates, opt_state = opt.update(grads, opt_state, (q, v))
        q, v = optax.apply_updates((q, v), updates)
        return (q, v, polyak(q_target, q, h["target_rate"]), opt_state), stats

    (q, v, _, _), stats = jax.lax.scan(step, (q, v, q, opt_state), jax.random.split(key, h["value_steps"]))
    return q, v, stats


def ope_scores(nets: Networks, q, actor_e, ope_obs) -> Array:
    """Step 4's fitted-Q estimate per member [E]: mean_s Q(s, mode π_i(s))."""
    return jax.vmap(lambda p: nets.q.apply(q, ope_obs, greedy_action(nets.actor.apply(p, ope_obs))).mean())(actor_e)


def improve(nets: Networks, data, key, h, bc_e, q, v, ope_obs) -> tuple[Offline, dict]:
    """Steps 3 and 4: per-member BPPO with decayed clip and lr, OPE-gated anchor updates.

    ``ope_obs`` are the fixed evaluation states of the fitted-Q OPE.
    """
    steps = h["bppo_steps"]
    opt = optax.chain(
        optax.clip_by_global_norm(h["max_grad_norm"]),
        optax.adam(lambda count: h["bppo_lr"] * (1.0 - count / steps)),
    )
    opt_state = jax.vmap(opt.init)(bc_e)
    best = ope_scores(nets, q, bc_e, ope_obs)
    prepare = advantages.whiten_advantage()

    def member_batch(anchor, key, obs):
        old = nets.actor.apply(anchor, obs)
        action = old.sample(key)
        adv = nets.q.apply(q, obs, action) - nets.critic.apply(v, obs)
        batch, _ = prepare.apply(transition_batch(action, old.log_prob(action), adv), ())
        return batch

    def member_loss(params, batch, obs, objective):
        dist = nets.actor.apply(params, obs)
        action = batch.response_bt[:, 0]
        scored = batch.replace(logp_bt=dist.log_prob(action)[:, None], entropy_bt=dist.entropy()[:, None])
        out, _ = objective.apply(scored, objective.init())
        return total_loss(out), out.metrics

    def step(carry, xs):
        params, anchor, best, opt_state = carry
        k, key = xs
        key_mb, key_act = jax.random.split(key)
        obs = _minibatch(key_mb, data, h["batch_size"]).obs
        batches = jax.vmap(member_batch, in_axes=(0, 0, None))(anchor, jax.random.split(key_act, h["num_members"]), obs)
        clip_now = h["clip_ratio"] * (1.0 - k / steps)
        objective = bppo_objective(clip_now, h["ent_coef"])
        grad_fn = jax.grad(lambda p, b: member_loss(p, b, obs, objective), has_aux=True)
        grads, metrics = jax.vmap(grad_fn)(params, batches)
        updates, opt_state = jax.vmap(opt.update)(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        scores = ope_scores(nets, q, params, ope_obs)
        improved = ((k + 1) % h["eval_every"] == 0) & (scores > best)
        pick = lambda new, old: jnp.where(improved.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
        anchor = jax.tree.map(pick, params, anchor)
        best = jnp.where(improved, scores, best)
        stats = dict(clip_ratio=clip_now, ope=scores, best_ope=best, anchor_updates=improved.sum(),
                     clip_frac=metrics["clip_frac"].mean())
        return (params, anchor, best, opt_state), stats

    xs = (jnp.arange(steps), jax.random.split(key, steps))
    (params, anchor, best, _), stats = jax.lax.scan(step, (bc_e, bc_e, best, opt_state), xs)
    return Offline(actor_e=params, anchor_e=anchor, best_e=best, q=q, v=v), stats


def actor_critic_params(template, actor, critic):
    """``ActorCritic`` parameters holding ``actor`` (an ``Actor``'s) and ``critic`` (a ``Critic``'s).

    ``template`` is an ``ActorCritic`` parameter state (or its ``jax.eval_shape``); its leaves are
    the actor's then the critic's (NNX orders the submodules by name), which fixes where each
    leaf goes.
    """
    leaves = jax.tree.leaves(actor) + jax.tree.leaves(critic)
    if len(leaves) != len(jax.tree.leaves(template)):
        raise ValueError("actor_critic_params: the actor and critic do not match the ActorCritic template")
    return jax.tree.unflatten(jax.tree.structure(template), leaves)


def _online_config(config) -> ml_collections.ConfigDict:
    """The experiment config as H5's PPO trainer reads it (``algorithm="ppo"``)."""
    online = ml_collections.ConfigDict(config.to_dict())
    online.algorithm = "ppo"
    online.algorithm_kwargs = dict(config.get("algorithm_kwargs", {}) or {})
    return online


def hyper(config) -> dict:
    """The Uni-O4 hyper-parameters: ``DEFAULTS`` overridden by ``config.unio4``; unknown names fail."""
    given = dict(config.get("unio4", {}) or {})
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"config.unio4 has unknown fields {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    h = {**DEFAULTS, **given}
    if h["num_members"] < 1 or h["eval_every"] < 1 or min(h["bc_steps"], h["value_steps"], h["bppo_steps"]) < 1:
        raise ValueError("config.unio4: num_members, eval_every and the step counts must be >= 1")
    return h


class Init(NamedTuple):
    """Initial parameters: the E BC members (stacked), Q and V."""

    actor_e: Any
    q: Any
    v: Any


def make_run(config) -> Run:
    """The launcher's ``Run`` of a Uni-O4 experiment config (``config.run = "unio4"``).

    ``init(rng) -> Init`` (eager); ``train(rng, init, data) -> (result, metrics)`` with ``data``
    the ``offline_data.Transitions`` as arrays (``load_data(config)``, generated on first use),
    shared by seeds in ``seeds.train_seeds``. ``result`` = (``Offline``, (PolicyState, EnvCarry)
    of the online phase); ``metrics`` holds the offline curves (``bc_loss`` [bc_steps, E],
    ``q_loss`` / ``v_loss`` [value_steps], ``ope`` / ``best_ope`` [bppo_steps, E],
    ``clip_ratio``, ``clip_frac``, ``anchor_updates``), the returns of deployed policies measured
    by rollouts with sampled actions (``bc_return``: the BC member the OPE ranks best;
    ``offline_return``: the member deployed online) and the online PPO metrics prefixed
    ``online/`` ([K] per update, ``online/mean_return`` among them). ``report``: the online
    metrics are the per-update curves (one update = num_envs × num_steps online steps), the
    summary holds ``bc_return`` and ``offline_return`` (mean and ``_std`` over seeds).
    """
    h = hyper(config)
    online_setup = control_train.setup(_online_config(config))
    env = online_setup.env
    kw = dict(hidden=tuple(config.get("hidden", (64, 64))), activation=config.get("activation", "tanh"))
    nets = Networks(
        actor=policies.build(policies.Actor, env.obs_shape, env.action, **kw),
        critic=policies.build(policies.Critic, env.obs_shape, env.action, **kw),
        q=build_q(env.obs_shape, env.action, **kw),
    )
    template = jax.eval_shape(online_setup.model.init, jax.random.key(0))
    gamma = float(config.gamma)

    def init(rng) -> Init:
        key_bc, key_q, key_v = jax.random.split(rng, 3)
        return Init(eager_init(nets.actor.init, jax.random.split(key_bc, h["num_members"])),
                    nets.q.init(key_q), nets.critic.init(key_v))

    def evaluate(actor_params, key):
        act = lambda k, obs, state: nets.actor.apply(actor_params, obs).sample(k)
        return evaluation.mean_episode_return(env, act, key, h["eval_steps"])[0]

    def train(rng, params: Init, data):
        key_bc, key_val, key_ope, key_imp, key_eval, key_online = jax.random.split(rng, 6)
        bc_e, bc_loss = fit_bc(nets, data, key_bc, h, params.actor_e)
        q, v, value_stats = fit_values(nets, data, key_val, h, gamma, params.q, params.v)
        ope_obs = data.obs[jax.random.randint(key_ope, (h["ope_states"],), 0, data.reward.shape[0])]
        offline, stats = improve(nets, data, key_imp, h, bc_e, q, v, ope_obs)
        pick = lambda tree, i: jax.tree.map(lambda x: x[i], tree)
        bc_best = jnp.argmax(ope_scores(nets, q, bc_e, ope_obs))
        deployed = pick(offline.anchor_e, jnp.argmax(offline.best_e))
        key_bc_eval, key_off_eval = jax.random.split(key_eval)
        start = actor_critic_params(template, deployed, v)
        (state, carry), online = control_train.run_on_policy(online_setup, key_online, params=start)
        metrics = dict(
            bc_loss=bc_loss, **value_stats, **stats,
            bc_return=evaluate(pick(bc_e, bc_best), key_bc_eval),
            offline_return=evaluate(deployed, key_off_eval),
            **{f"online/{k}": x for k, x in online.items()},
        )
        return (offline, (state, carry)), metrics

    return Run(init, train, steps_per_update=online_setup.env.num_envs * online_setup.num_steps,
               data=(load_data(config),), report=report)


def report(metrics: dict) -> tuple[dict, dict]:
    """(the online phase's per-update curves, ``bc_return`` / ``offline_return`` mean and std
    over seeds) of a run's metrics (numpy, [seeds, ...])."""
    curves = {k[len("online/"):]: v for k, v in metrics.items() if k.startswith("online/")}
    summary = {}
    for key in ("bc_return", "offline_return"):
        summary[key] = float(metrics[key].mean())
        summary[key + "_std"] = float(metrics[key].std())
    return curves, summary


def load_data(config):
    """The experiment's offline dataset (``config.offline_data`` in ``config.data_dir``) as jnp arrays."""
    data = offline_data.load(config.data_dir, **dict(config.offline_data))
    return jax.tree.map(jnp.asarray, data)


__all__ = ["Init", "bc_ensemble_loss", "bppo_objective", "iql_losses", "load_data", "make_run", "report"]

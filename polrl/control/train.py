"""One jitted training run for on-policy control: ``make_train(config) -> train(rng, hparams)``.

The whole run is one pure function, with PureJaxRL's structure (Lu et al. 2022, "Discovered
Policy Optimisation", arXiv 2210.05639):

    scan over updates k = 0 … K−1
      ├─ rollout: scan over T steps of vmap over N environments        (polrl.control.rollout)
      ├─ ControlBatch [N, T] → Algorithm.prepare (GAE via polrl.ops.gae)
      └─ scan over epochs ⊃ scan over shuffled minibatches of N·T transitions [M, 1]:
           score (log-prob, entropy, value; the exact KL to the acting policy when the
           algorithm declares the need "kl_to_old") →
           Algorithm.objective → total_loss → optax update

No host callbacks inside, so ``jax.vmap(train)(keys)`` trains one run per seed in one call, and
``jax.vmap(train, in_axes=(None, 0))(key, {"learning_rate": lrs})`` one run per hyper-parameter
value (any float keyword of the algorithm noun, and ``gamma``).

Config fields (``ml_collections.ConfigDict``): ``env_name``, ``env_params`` (EnvParams
overrides), ``num_envs``, ``num_steps`` (T per update), ``total_timesteps``, ``gamma``,
``bootstrap_truncation``, ``hidden``, ``activation``, ``algorithm`` (a noun of
``polrl.control.algorithms``: ``"ppo"``, ``"mdpo"``) and ``algorithm_kwargs``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from polrl.core import Algorithm, PolicyState, total_loss
from polrl.control import algorithms as control_algorithms
from polrl.control import batch as batch_lib
from polrl.control import envs, policies, rollout

Array = jax.Array


class Setup(NamedTuple):
    """The static parts of a run, resolved from the config once."""

    env: envs.VecEnv
    model: policies.PolicyDef
    num_updates: int
    num_steps: int
    gamma: float
    bootstrap_truncation: bool
    algorithm: Callable[..., Algorithm]
    algorithm_kwargs: dict


def get_noun(name: str) -> Callable[..., Algorithm]:
    """The control noun called ``name`` (an attribute of ``polrl.control.algorithms``)."""
    nouns = [n for n in control_algorithms.__all__ if n != "annealed_adam"]
    if name not in nouns:
        raise ValueError(f"algorithm={name!r} is not a control algorithm; use one of {nouns}")
    return getattr(control_algorithms, name)


def setup(config) -> Setup:
    """Validates ``config`` and resolves the environment, the model and the algorithm noun."""
    env = envs.make(config.env_name, int(config.num_envs), **dict(config.get("env_params", {}) or {}))
    per_update = env.num_envs * int(config.num_steps)
    num_updates = int(config.total_timesteps) // per_update
    if num_updates < 1:
        raise ValueError(
            f"total_timesteps={config.total_timesteps} is less than one update of "
            f"num_envs × num_steps = {per_update} steps; raise total_timesteps"
        )
    noun = get_noun(config.algorithm)
    kwargs = dict(config.get("algorithm_kwargs", {}) or {})
    algorithm = noun(num_updates=num_updates, **kwargs)  # validates the keyword names now
    if per_update % algorithm.num_minibatches:
        raise ValueError(
            f"num_envs × num_steps = {per_update} is not divisible by num_minibatches="
            f"{algorithm.num_minibatches}"
        )
    model = policies.build(
        policies.ActorCritic, env.obs_shape, env.action,
        hidden=tuple(config.get("hidden", (64, 64))), activation=config.get("activation", "tanh"),
    )
    return Setup(
        env=env, model=model, num_updates=num_updates, num_steps=int(config.num_steps),
        gamma=float(config.gamma), bootstrap_truncation=bool(config.get("bootstrap_truncation", True)),
        algorithm=noun, algorithm_kwargs=kwargs,
    )


def make_train(config) -> Callable[..., tuple[Any, dict]]:
    """``train(rng, hparams=None) -> ((PolicyState, EnvCarry), metrics)``, one whole run.

    ``hparams`` overrides float hyper-parameters (``gamma`` or keywords of the noun) with
    possibly traced values, for vmapped sweeps. ``metrics`` maps names to [K] arrays, one entry
    per update: ``mean_return`` (mean over environments of their last finished episode's
    return), ``episodes`` (episodes finished during the update), ``loss``, every loss term and
    every objective metric (averaged over the update's minibatches).
    """
    s = setup(config)
    return lambda rng, hparams=None: run_on_policy(s, rng, hparams)


def _hyper(s: Setup, hparams: dict | None) -> tuple[Any, dict]:
    hparams = dict(hparams or {})
    gamma = hparams.pop("gamma", s.gamma)
    if "num_updates" in hparams:
        raise ValueError("hparams cannot set num_updates: it follows from total_timesteps (static)")
    return gamma, {**s.algorithm_kwargs, **hparams}


def run_on_policy(s: Setup, rng: Array, hparams: dict | None = None):
    """The jittable body of ``make_train``'s ``train`` (see there)."""
    gamma, kwargs = _hyper(s, hparams)
    algo = s.algorithm(num_updates=s.num_updates, **kwargs)
    rng, init_key, reset_key = jax.random.split(rng, 3)
    params = s.model.init(init_key)
    state = PolicyState(
        step=jnp.zeros((), jnp.int32),
        rng=rng,
        params=params,
        opt_state=algo.optimizer.init(params),
        prepare_state=algo.prepare.init(),
        objective_state=algo.objective.init(),
    )
    carry = rollout.reset(s.env, reset_key)

    def update(runner, _):
        state, carry = runner
        rng, rollout_key, shuffle_key = jax.random.split(state.rng, 3)
        carry, traj, last_value = rollout.rollout(
            s.env,
            lambda obs: s.model.apply(state.params, obs),
            lambda obs: s.model.apply(state.params, obs)[1],
            carry, rollout_key, s.num_steps,
            bootstrap_truncation=s.bootstrap_truncation, keep_dist="kl_to_old" in algo.needs,
        )
        batch = batch_lib.from_trajectory(traj, last_value, gamma)
        batch, prepare_state = algo.prepare.apply(batch, state.prepare_state, step=state.step)
        data = (jnp.swapaxes(traj.obs, 0, 1), jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), traj.dist))
        params, opt_state, objective_state, stats = update_epochs(
            s.model, algo, state, batch, data, shuffle_key
        )
        metrics = dict(
            **batch.metrics,
            **stats,
            mean_return=carry.last_return.mean(),
            episodes=traj.done.sum(),
        )
        state = state.replace(
            step=state.step + 1, rng=rng, params=params, opt_state=opt_state,
            prepare_state=prepare_state, objective_state=objective_state,
        )
        return (state, carry), metrics

    return jax.lax.scan(update, (state, carry), None, length=s.num_updates)


def score(model: policies.PolicyDef, params, batch, obs, old_dist):
    """The scoring forward of a minibatch [M, 1]: log-prob, entropy, value, and the exact KL to
    π_old when ``old_dist`` (π_old's distribution at these states) is given."""
    dist, value = model.apply(params, obs[:, 0])
    action = batch.response_bt[:, 0]
    kl = None if old_dist is None else dist.kl(jax.tree.map(lambda x: x[:, 0], old_dist))[:, None]
    return batch.replace(
        logp_bt=dist.log_prob(action)[:, None],
        entropy_bt=dist.entropy()[:, None],
        value_bt=value[:, None],
        kl_to_old_bt=kl,
    )


def update_epochs(model, algo: Algorithm, state: PolicyState, batch, data, key):
    """``algo.num_epochs`` passes of ``algo.num_minibatches`` shuffled minibatches over a batch.

    ``batch`` is the prepared ``ControlBatch`` [N, T]; ``data`` = (obs [N, T, ...], π_old's
    distribution [N, T, ...] or None), the distribution used only when the algorithm needs
    ``"kl_to_old"``. Returns the new params, optimizer and objective states, and the losses /
    metrics averaged over all minibatch steps.
    """
    n, t = batch.mask_bt.shape
    size = n * t
    mb = algo.num_minibatches
    obs, old_dist = data
    if "kl_to_old" not in algo.needs:
        old_dist = None
    flat = (batch_lib.to_transitions(batch), batch_lib.flatten((obs, old_dist), n, t))

    def loss_fn(params, mb_batch, mb_data, objective_state):
        scored = score(model, params, mb_batch, *mb_data)
        out, objective_state = algo.objective.apply(scored, objective_state, step=state.step)
        loss = total_loss(out)
        return loss, (objective_state, dict(loss=loss, **out.losses, **out.metrics))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def minibatch(c, xs):
        params, opt_state, objective_state = c
        mb_batch, mb_data = xs
        (_, (objective_state, stats)), grads = grad_fn(params, mb_batch, mb_data, objective_state)
        updates, opt_state = algo.optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state, objective_state), stats

    def epoch(c, epoch_key):
        if mb == 1:
            shuffled = jax.tree.map(lambda x: x[None], flat)
        else:
            perm = jax.random.permutation(epoch_key, size)
            shuffled = jax.tree.map(lambda x: x[perm].reshape((mb, size // mb) + x.shape[1:]), flat)
        return jax.lax.scan(minibatch, c, shuffled)

    init = (state.params, state.opt_state, state.objective_state)
    (params, opt_state, objective_state), stats = jax.lax.scan(
        epoch, init, jax.random.split(key, algo.num_epochs)
    )
    return params, opt_state, objective_state, jax.tree.map(jnp.mean, stats)

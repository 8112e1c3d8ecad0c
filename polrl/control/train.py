"""One jitted training run for on-policy control: ``make_train(config) -> train(rng, hparams)``.

The whole run is one pure function, with PureJaxRL's structure (Lu et al. 2022, "Discovered
Policy Optimisation", arXiv 2210.05639):

    scan over updates k = 0 … K−1
      ├─ rollout: scan over T steps of vmap over N environments        (polrl.control.rollout)
      ├─ ControlBatch [N, T] → Algorithm.prepare (GAE via polrl.ops.gae)
      └─ polrl.train.update.epochs (the update loop every polrl trainer shares): scan over
         epochs ⊃ scan over shuffled minibatches of the N·T transitions [M, 1]:
           score (this module's: log-prob, entropy, value; the exact KL to the acting policy
           when the algorithm declares the need "kl_to_old") →
           Algorithm.objective → total_loss → optax update

No host callbacks inside, so ``jax.vmap(train)(keys)`` trains one run per seed in one call, and
``jax.vmap(train, in_axes=(None, 0))(key, {"learning_rate": lrs})`` one run per hyper-parameter
value (any float keyword of the algorithm noun, and ``gamma``).

Config fields (``ml_collections.ConfigDict``): ``run = "train"`` (the launcher's
``make_run``), ``env_name``, ``env_params`` (EnvParams
overrides), ``num_envs``, ``num_steps`` (T per update), ``total_timesteps``, ``gamma``,
``bootstrap_truncation``, ``hidden``, ``activation``, ``algorithm`` (a noun of
``polrl.control.algorithms``: ``"ppo"``, ``"mdpo"``) and ``algorithm_kwargs``.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from polrl.core import Algorithm, PolicyState
from polrl.control import algorithms as control_algorithms
from polrl.control import batch as batch_lib
from polrl.control import envs, policies, rollout
from polrl.control.seeds import Run
from polrl.train import update as update_lib

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
    return), ``episodes`` (episodes finished during the update), ``loss``, ``grad_norm``, every
    loss term and every objective metric (averaged over the update's minibatches).
    """
    s = setup(config)
    return lambda rng, hparams=None: run_on_policy(s, rng, hparams)


def make_run(config) -> Run:
    """The launcher's ``Run`` of an on-policy config (``config.run = "train"``):
    ``train(rng, init(rng))`` is ``make_train(config)(rng)``."""
    s = setup(config)
    return Run(
        init=functools.partial(initial_params, s),
        train=lambda rng, params: run_on_policy(s, rng, params=params),
        steps_per_update=s.env.num_envs * s.num_steps,
    )


def initial_params(s: Setup, rng: Array):
    """The model's initial parameters of a run seeded with ``rng``: its init of the second of the
    three keys ``run_on_policy`` splits ``rng`` into."""
    return s.model.init(jax.random.split(rng, 3)[1])


def _hyper(s: Setup, hparams: dict | None) -> tuple[Any, dict]:
    hparams = dict(hparams or {})
    gamma = hparams.pop("gamma", s.gamma)
    if "num_updates" in hparams:
        raise ValueError("hparams cannot set num_updates: it follows from total_timesteps (static)")
    return gamma, {**s.algorithm_kwargs, **hparams}


def initial_state(algo: Algorithm, params, rng: Array) -> PolicyState:
    """Step 0 of a run: ``params`` and the algorithm's fresh optimizer, prepare and objective states."""
    return PolicyState(
        step=jnp.zeros((), jnp.int32), rng=rng, params=params, opt_state=algo.optimizer.init(params),
        prepare_state=algo.prepare.init(), objective_state=algo.objective.init(),
    )


def run_on_policy(s: Setup, rng: Array, hparams: dict | None = None, params=None, evaluate=None):
    """The jittable body of ``make_train``'s ``train`` (see there); ``params`` replaces the
    model's initialisation (a run that starts from given parameters); ``evaluate(params, key)
    -> dict`` of scalars, when given, is added to every update's metrics, measured on the updated
    parameters with a key folded from the update's rollout key (the run's random stream is
    unchanged)."""
    gamma, kwargs = _hyper(s, hparams)
    algo = s.algorithm(num_updates=s.num_updates, **kwargs)
    rng, init_key, reset_key = jax.random.split(rng, 3)
    state = initial_state(algo, s.model.init(init_key) if params is None else params, rng)
    carry = rollout.reset(s.env, reset_key)

    def update_step(runner, _):
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
        params, opt_state, objective_state, stats = update(s.model, algo, state, batch, data, shuffle_key)
        metrics = dict(
            **batch.metrics,
            **stats,
            mean_return=carry.last_return.mean(),
            episodes=traj.done.sum(),
        )
        if evaluate is not None:
            metrics.update(evaluate(params, jax.random.fold_in(rollout_key, 1)))
        state = state.replace(
            step=state.step + 1, rng=rng, params=params, opt_state=opt_state,
            prepare_state=prepare_state, objective_state=objective_state,
        )
        return (state, carry), metrics

    return jax.lax.scan(update_step, (state, carry), None, length=s.num_updates)


def score(model: policies.PolicyDef, params, rows):
    """The scoring forward of a minibatch of M transitions: ``rows`` = (``ControlBatch`` [M, 1],
    (obs [M, ...], π_old's distribution [M, ...] or None)); fills the log-prob, entropy and
    value, and the exact KL to π_old when its distribution is given."""
    batch, (obs, old_dist) = rows
    dist, value = model.apply(params, obs)
    action = batch.response_bt[:, 0]
    return batch.replace(
        logp_bt=dist.log_prob(action)[:, None],
        entropy_bt=dist.entropy()[:, None],
        value_bt=value[:, None],
        kl_to_old_bt=None if old_dist is None else dist.kl(old_dist)[:, None],
    )


def update(model: policies.PolicyDef, algo: Algorithm, state: PolicyState, batch, data, key):
    """``algo.num_epochs`` passes of ``algo.num_minibatches`` shuffled minibatches of transitions
    through the shared loop (``polrl.train.update.epochs``, its ``score`` this module's).

    ``batch`` is the prepared ``ControlBatch`` [N, T]; ``data`` = (obs [N, T, ...], π_old's
    distribution [N, T, ...] or None), the distribution used only when the algorithm needs
    ``"kl_to_old"``. The rows are the N·T transitions (row n·T + t: environment n at step t).
    Non-finite minibatches are not skipped (as PureJaxRL: a NaN shows in the metrics). Returns
    the new params, optimizer and objective states, and the losses / metrics averaged over all
    minibatch steps.
    """
    n, t = batch.mask_bt.shape
    obs, old_dist = data
    if "kl_to_old" not in algo.needs:
        old_dist = None
    per_step = jax.tree.map(lambda x: x.reshape((n * t,) + x.shape[2:]), (obs, old_dist))
    return update_lib.epochs(
        state.params, state.opt_state, state.objective_state, (batch_lib.to_transitions(batch), per_step),
        algorithm=algo, score=functools.partial(score, model), key=key, step=state.step, skip_nonfinite=False,
    )

"""PROPS: Proximal Robust On-Policy Sampling (Corrado & Hanna, arXiv 2311.08290).

A target policy π_θ is trained by PPO on a buffer of the last b rollout batches; the data is
collected by a behaviour policy π_φ trained to make the buffer look on-policy for π_θ — it lowers
the probability of actions the buffer already over-represents, so under-sampled ones get sampled.
Reference code: NicholasCorrado/PPOROS ``PROPS/ppo_props_continuous.py``.

One update k of ``make_train`` (one jitted run, like ``polrl.control.train``):

    for each of ``behavior_chunks`` chunks of T/chunks steps:
        collect the chunk with π_φ; slide it into the buffer (the oldest steps fall out)
        behaviour update on the buffer minus the oldest chunk (the next to be evicted):
            L(φ) = mean[ max(ρ, clip(ρ, 1 − ε_P, 1 + ε_P)) ] + λ · mean KL(π_φ ‖ π_θ),  ρ = π_φ/π_θ
    sampling error of the buffer w.r.t. π_θ (discrete actions; ``sampling_error``)
    PPO update of π_θ on the whole buffer (b·T steps per env), with π_θ's log-probs and values
        recomputed on it first, so PPO treats the buffer as on-policy (ratio 1 at the start)

Each behaviour update starts from φ = θ (the reference copies the target's parameters into the
behaviour before every behaviour update; the behaviour's Adam state carries over).

With ``behavior_updates=False`` the behaviour is the target at collection time: PPO with a buffer of
b batches and on-policy sampling, the paper's baseline for the sampling-error comparison.

Defaults: b = 2, ε_P = 0.3, λ = 0.3 (the paper's values), behaviour Adam 1e-4, 16 epochs × 16
minibatches. INFERRED / simplified: the reference's early stops (target KL 0.03 for PPO, 0.05 for
the behaviour) are not applied (a data-dependent stop is a ``lax.cond`` per epoch; left out);
returns are those of the episodes the behaviour policy collected; the values of truncation
bootstraps are the target critic's at collection time (the per-step values are recomputed).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from polrl import objectives, ops
from polrl.control import batch as batch_lib
from polrl.control import rollout
from polrl.control.sampling_error import MAX_OBS_DIM, sampling_error
from polrl.control.seeds import Run
from polrl.control.train import Setup, initial_params, initial_state, setup, update
from polrl.core import Algorithm, Batch, Transform, chain, stateless


def props_behavior_loss(*, clip_coef=0.3, kl_coef=0.3) -> Transform:
    """PROPS behaviour objective per step, terms ``"props"`` and ``"props_kl"``.

        ρ_t = π_φ(a_t|s_t) / π_θ(a_t|s_t)      (``logp_bt`` = log π_φ, ``old_logp_bt`` = log π_θ)
        L_t = max(ρ_t, clip(ρ_t, 1 − ε_P, 1 + ε_P)) + λ · KL(π_φ(·|s_t) ‖ π_θ(·|s_t))

    The first term is PPO's clipped surrogate with advantage −1 (``ops.clipped_surrogate``):
    minimising it pushes down the probability of the actions already in the buffer, and its
    gradient vanishes once ρ < 1 − ε_P. The KL is exact (``kl_to_old_bt`` with π_old = π_θ).
    Defaults ε_P = 0.3, λ = 0.3 (Corrado & Hanna, arXiv 2311.08290). Logs ``props_ratio``.
    """

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "old_logp_bt", by="props_behavior_loss")
        kl_bt = getattr(batch, "kl_to_old_bt", None)
        if kl_bt is None:
            raise ValueError("props_behavior_loss needs batch.kl_to_old_bt = KL(π_φ ‖ π_θ) (a ControlBatch field)")
        ratio = jnp.exp(ops.log_ratio(batch.logp_bt, batch.old_logp_bt))
        loss_bt, _ = ops.clipped_surrogate(ratio, -jnp.ones_like(ratio), eps_low=clip_coef)
        batch = batch.add_metrics(props_ratio=ops.masked_mean(jax.lax.stop_gradient(ratio), batch.mask_bt))
        return batch.add_term("props", loss_bt).add_term("props_kl", kl_coef * kl_bt)

    return stateless(fn, needs=("kl_to_old",))


def behavior_algorithm(*, learning_rate=1e-4, clip_coef=0.3, kl_coef=0.3, num_epochs=16, num_minibatches=16,
                       max_grad_norm=0.5) -> Algorithm:
    """The behaviour update as an ``Algorithm``: ``props_behavior_loss`` → token mean, Adam."""
    return Algorithm(
        prepare=chain(),
        objective=chain(props_behavior_loss(clip_coef=clip_coef, kl_coef=kl_coef), objectives.aggregate("token_mean")),
        optimizer=optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate, eps=1e-5)),
        num_epochs=num_epochs,
        num_minibatches=num_minibatches,
    )


PROPS_DEFAULTS = dict(
    buffer_batches=2, behavior_chunks=2, behavior_updates=True,
    learning_rate=1e-4, clip_coef=0.3, kl_coef=0.3, num_epochs=16, num_minibatches=16,
)


def make_train(config):
    """``train(rng, hparams=None, params=None) -> ((PolicyState, EnvCarry), metrics)`` for PROPS
    (module docstring).

    ``config`` is a control config whose ``algorithm`` is the target's noun (``"ppo"``), plus
    ``config.props`` (keys of ``PROPS_DEFAULTS``). ``hparams`` may override the target noun's float
    keywords and ``gamma`` (traced); ``params`` replaces the model's initialisation. Metrics per
    update: those of ``polrl.control.train.make_train`` for the target update, ``behavior_*`` for
    the last behaviour update, and ``sampling_error`` / ``sampling_error_pooled`` (discrete
    actions with observations of ≤ 8 coordinates; the buffer before the target update; per
    tercile cell / one cell, see ``polrl.control.sampling_error``).
    """
    return _build(config)[1]


def _build(config):
    """(the target's ``Setup``, PROPS's ``train``) of ``config`` (see ``make_train``)."""
    s = setup(config)
    p = {**PROPS_DEFAULTS, **dict(config.get("props", {}) or {})}
    unknown = set(p) - set(PROPS_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown props keys {sorted(unknown)}; known: {sorted(PROPS_DEFAULTS)}")
    chunks = int(p["behavior_chunks"])
    if s.num_steps % chunks:
        raise ValueError(f"num_steps={s.num_steps} is not divisible by props.behavior_chunks={chunks}")
    buffer_steps = int(p["buffer_batches"]) * s.num_steps
    behavior = behavior_algorithm(**{k: p[k] for k in ("learning_rate", "clip_coef", "kl_coef", "num_epochs", "num_minibatches")})
    if (buffer_steps * s.env.num_envs) % behavior.num_minibatches:
        raise ValueError("buffer_batches × num_steps × num_envs must be divisible by props.num_minibatches")
    measure = s.env.action.discrete and 0 < _flat_dim(s.env.obs_shape) <= MAX_OBS_DIM

    def train(rng, hparams=None, params=None):
        return _run(s, behavior, bool(p["behavior_updates"]), chunks, buffer_steps, measure, rng, hparams, params)

    return s, train


def make_run(config) -> Run:
    """The launcher's ``Run`` of a PROPS config (``config.run = "props"``): ``make_train``'s run
    from the initial parameters of ``polrl.control.train.make_run``; its summary holds
    ``sampling_error`` and ``sampling_error_pooled`` averaged over the updates after the first
    and over seeds."""
    s, train = _build(config)

    def report(metrics):
        return metrics, {k: float(metrics[k][:, 1:].mean()) for k in ("sampling_error", "sampling_error_pooled")
                         if k in metrics}

    return Run(
        init=functools.partial(initial_params, s),
        train=lambda rng, params: train(rng, params=params),
        steps_per_update=s.env.num_envs * s.num_steps, report=report,
    )


def _flat_dim(shape) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def _empty_buffer(s: Setup, steps: int) -> rollout.Trajectory:
    """A buffer of ``steps`` zero transitions with the shapes of a rollout (time-major)."""
    n, spec = s.env.num_envs, s.env.action
    zeros = jnp.zeros((steps, n), jnp.float32)
    action = jnp.zeros((steps, n), jnp.int32) if spec.discrete else jnp.zeros((steps, n, spec.dim), jnp.float32)
    return rollout.Trajectory(
        obs=jnp.zeros((steps, n, *s.env.obs_shape), jnp.float32),
        action=action,
        logp=zeros, value=zeros, reward=zeros,
        terminated=jnp.zeros((steps, n), bool), truncated=jnp.zeros((steps, n), bool),
        final_value=zeros, episode_return=zeros,
    )


def _slide(buffer, chunk):
    """Appends ``chunk`` [C, ...] to the time-major ``buffer`` [W, ...] and drops its C oldest."""
    c = jax.tree.leaves(chunk)[0].shape[0]
    return jax.tree.map(lambda b, x: jnp.concatenate([b[c:], x], axis=0), buffer, chunk)


def _buffer_batch(s: Setup, params, buffer: rollout.Trajectory, valid, last_obs, gamma):
    """The [N, W] ControlBatch of the buffer with π_θ's log-probs and values recomputed."""
    w, n = valid.shape
    obs_flat = buffer.obs.reshape((w * n,) + buffer.obs.shape[2:])
    dist, value = s.model.apply(params, obs_flat)
    logp = dist.log_prob(buffer.action.reshape((w * n,) + buffer.action.shape[2:])).reshape(w, n)
    last_value = s.model.apply(params, last_obs)[1]
    recomputed = buffer._replace(logp=logp, value=value.reshape(w, n))
    batch = batch_lib.from_trajectory(recomputed, last_value, gamma)
    batch = batch.replace(behavior_logp_bt=buffer.logp.T, mask_bt=valid.T.astype(jnp.float32))
    target_dist = jax.tree.map(lambda x: jnp.swapaxes(x.reshape((w, n) + x.shape[1:]), 0, 1), dist)
    return batch, (jnp.swapaxes(buffer.obs, 0, 1), target_dist)


def _run(s: Setup, behavior: Algorithm, behavior_updates: bool, chunks: int, buffer_steps: int, measure: bool, rng,
         hparams, params):
    hparams = dict(hparams or {})
    gamma = hparams.pop("gamma", s.gamma)
    target = s.algorithm(num_updates=s.num_updates, **{**s.algorithm_kwargs, **hparams})
    rng, init_key, reset_key = jax.random.split(rng, 3)
    params = s.model.init(init_key) if params is None else params
    state = initial_state(target, params, rng)
    carry = rollout.reset(s.env, reset_key)
    buffer = _empty_buffer(s, buffer_steps)
    valid = jnp.zeros((buffer_steps, s.env.num_envs), bool)
    chunk_steps = s.num_steps // chunks

    def behaviour_update(bstate, target_params, buffer, valid, last_obs, key):
        bstate = bstate.replace(params=target_params)  # every behaviour update starts from φ = θ
        batch, data = _buffer_batch(s, target_params, buffer, valid, last_obs, gamma)
        # the oldest chunk is evicted next: the behaviour does not fit it
        keep = jnp.arange(buffer_steps) >= chunk_steps
        batch = batch.replace(mask_bt=batch.mask_bt * keep[None, :])
        params, opt_state, objective_state, stats = update(s.model, behavior, bstate, batch, data, key)
        bstate = bstate.replace(params=params, opt_state=opt_state, objective_state=objective_state)
        return bstate, stats

    def update_step(runner, _):
        state, bstate, carry, buffer, valid = runner
        rng, key = jax.random.split(state.rng)
        behaviour_stats = {}
        for c in range(chunks):
            key, rollout_key, behaviour_key = jax.random.split(key, 3)
            acting = bstate.params if behavior_updates else state.params
            carry, traj, _ = rollout.rollout(
                s.env,
                lambda obs: (s.model.apply(acting, obs)[0], s.model.apply(state.params, obs)[1]),
                lambda obs: s.model.apply(state.params, obs)[1],
                carry, rollout_key, chunk_steps, bootstrap_truncation=s.bootstrap_truncation,
            )
            buffer = _slide(buffer, traj._replace(dist=None))
            valid = _slide(valid, jnp.ones((chunk_steps, s.env.num_envs), bool))
            if behavior_updates:
                bstate, behaviour_stats = behaviour_update(
                    bstate, state.params, buffer, valid, carry.obs, behaviour_key
                )
        batch, data = _buffer_batch(s, state.params, buffer, valid, carry.obs, gamma)
        metrics = {}
        if measure:
            w, n = valid.shape
            probs = jax.nn.softmax(data[1].logits, axis=-1).reshape(n * w, -1)
            args = (data[0].reshape((n * w,) + data[0].shape[2:]), batch.response_bt.reshape(n * w),
                    probs, valid.T.reshape(n * w))
            metrics["sampling_error"] = sampling_error(*args)
            metrics["sampling_error_pooled"] = sampling_error(*args, pooled=True)
        batch, prepare_state = target.prepare.apply(batch, state.prepare_state, step=state.step)
        key, update_key = jax.random.split(key)
        params, opt_state, objective_state, stats = update(s.model, target, state, batch, data, update_key)
        state = state.replace(
            step=state.step + 1, rng=rng, params=params, opt_state=opt_state,
            prepare_state=prepare_state, objective_state=objective_state,
        )
        metrics.update(stats)
        metrics.update({f"behavior_{k}": v for k, v in behaviour_stats.items()})
        metrics.update(mean_return=carry.last_return.mean(), episodes=buffer.done[-s.num_steps:].sum())
        return (state, bstate, carry, buffer, valid), metrics

    bstate = initial_state(behavior, params, rng)
    (state, bstate, carry, _, _), metrics = jax.lax.scan(
        update_step, (state, bstate, carry, buffer, valid), None, length=s.num_updates
    )
    return (state, carry), metrics

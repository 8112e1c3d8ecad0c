"""ReLIC-style in-context RL: a causal transformer policy over a long multi-episode context,
trained by PPO with partial updates (Elawady et al. 2024, arXiv 2410.02751;
``aielawady/relic : relic/trainer/transformers_trainer.py``).

**Task distribution.** A trial is one Bernoulli bandit: K arm means p ~ U[0, 1]^K drawn per
trial, fixed for the whole context; an episode is L pulls (reward ~ Bernoulli(p_a), the
episode terminates after its L-th pull) and one context holds T = ``num_steps`` pulls, i.e.
T/L episodes of the same task. Doing better in later episodes than in the first one needs the
context: that is the in-context learning being trained.

**Policy.** A small pre-norm causal transformer (``InContextPolicy``) over one token per step,
x_t = [obs_t, one-hot(a_{t−1}), r_{t−1}] with obs_t = (t mod L)/L (position in the episode),
learned position embeddings, a categorical actor head and a value head. Acting uses a KV
cache (one token per step).

**Partial updates** (ReLIC's train loop). With U = ``updates_per_rollout``, every T/U steps a
PPO update runs on the context collected so far:

* the forward pass covers the whole context from step 0 (the attention/context mask: causal and
  limited to the collected steps, ``context_mask``);
* the loss covers only the steps collected since the previous update (the ``loss_mask``);
* every U/F-th update (F = ``full_updates_per_rollout``) is a full one: loss from step 0; the
  last update of a context is always full when F > 0.

The loss mask is the Batch's ``mask_bt``, so the shared objective (``polrl.control.algorithms.ppo``:
whitening over the masked steps, clipped surrogate, clipped value loss, entropy bonus,
``aggregate("token_mean")``) sees only the loss steps while every score comes from the full
forward. Advantages: ``stepwise_gae`` over the collected steps, the stream cut at episode ends
and bootstrapped at the last collected step with the current value (habitat's
``compute_returns`` with ``next_value``). As ReLIC's defaults, the values and log-probs of older
steps stay those recorded when they were acted (``update_stale_values`` /
``update_stale_action_probs`` False); the acting KV cache is recomputed after each update
(``update_stale_kv`` True), so acting always uses the current parameters. One context per
rollout: each rollout starts a new trial (ReLIC can also carry old context across rollouts).

PPO minibatches are groups of whole environments (rows), as recurrent/transformer PPO needs.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from polrl.control import algorithms as control_algorithms
from polrl.control.batch import ControlBatch
from polrl.control.distributions import Categorical
from polrl.control.seeds import Run
from polrl.control.train import initial_state
from polrl.core import PolicyState
from polrl.train import update as update_lib

Array = jax.Array


class CausalSelfAttention(nnx.Module):
    """Multi-head attention where query t sees key s iff ``visible[t, s]``; keys/values returned.

    With ``kv`` = (k, v) [B, S, H, E] and ``index``, the new tokens' keys/values are written at
    slots index … index+T−1 first (a KV cache), and the queries attend over all S slots.
    """

    def __init__(self, d: int, heads: int, *, rngs: nnx.Rngs):
        if d % heads:
            raise ValueError(f"d_model={d} must be divisible by num_heads={heads}")
        self.heads = heads
        self.qkv = nnx.Linear(d, 3 * d, rngs=rngs)
        self.out = nnx.Linear(d, d, rngs=rngs)

    def __call__(self, x: Array, visible: Array, kv=None, index=None):
        b, t, d = x.shape
        q, k, v = jnp.split(self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads), 3, axis=2)
        q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]
        if kv is not None:
            k = jax.lax.dynamic_update_slice(kv[0], k, (0, index, 0, 0))
            v = jax.lax.dynamic_update_slice(kv[1], v, (0, index, 0, 0))
        scores = jnp.einsum("bthe,bshe->bhts", q, k) / math.sqrt(d // self.heads)
        scores = jnp.where(visible[:, None], scores, jnp.finfo(jnp.float32).min)
        y = jnp.einsum("bhts,bshe->bthe", jax.nn.softmax(scores, axis=-1), v).reshape(b, t, d)
        return self.out(y), (k, v)


class Block(nnx.Module):
    """x += Attn(LN(x)); x += MLP(LN(x))  (pre-norm, GELU MLP of width 4d)."""

    def __init__(self, d: int, heads: int, *, rngs: nnx.Rngs):
        self.ln1 = nnx.LayerNorm(d, rngs=rngs)
        self.attn = CausalSelfAttention(d, heads, rngs=rngs)
        self.ln2 = nnx.LayerNorm(d, rngs=rngs)
        self.up = nnx.Linear(d, 4 * d, rngs=rngs)
        self.down = nnx.Linear(4 * d, d, rngs=rngs)

    def __call__(self, x, visible, kv=None, index=None):
        y, kv = self.attn(self.ln1(x), visible, kv, index)
        x = x + y
        return x + self.down(jax.nn.gelu(self.up(self.ln2(x)))), kv


class InContextPolicy(nnx.Module):
    """Tokens [B, T, F] → (logits [B, T, A], values [B, T], per-layer (k, v))."""

    def __init__(self, token_dim: int, num_actions: int, *, max_len: int, d_model=32, num_layers=2,
                 num_heads=2, rngs: nnx.Rngs):
        self.embed = nnx.Linear(token_dim, d_model, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (max_len, d_model)))
        self.blocks = nnx.List([Block(d_model, num_heads, rngs=rngs) for _ in range(num_layers)])
        self.ln = nnx.LayerNorm(d_model, rngs=rngs)
        self.actor = nnx.Linear(d_model, num_actions, kernel_init=nnx.initializers.orthogonal(0.01), rngs=rngs)
        self.critic = nnx.Linear(d_model, 1, rngs=rngs)

    def __call__(self, tokens: Array, visible: Array, start=0, kv=None):
        """``start``: position of ``tokens[:, 0]`` (the cache slot when ``kv`` is given)."""
        t = tokens.shape[1]
        x = self.embed(tokens) + jax.lax.dynamic_slice_in_dim(self.pos[...], start, t)[None]
        new_kv = []
        for i, block in enumerate(self.blocks):
            x, layer_kv = block(x, visible, None if kv is None else kv[i], start)
            new_kv.append(layer_kv)
        h = self.ln(x)
        return self.actor(h), self.critic(h)[..., 0], tuple(new_kv)


def context_mask(num_tokens: int, end) -> Array:
    """[T, T] attention mask: query t sees key s iff s ≤ t and s < ``end`` (collected steps)."""
    pos = jnp.arange(num_tokens)
    return (pos[None, :] <= pos[:, None]) & (pos[None, :] < end)


def loss_mask(num_steps: int, loss_from, end) -> Array:
    """[T] 1.0 on the steps the update's loss covers: loss_from ≤ t < end."""
    t = jnp.arange(num_steps)
    return ((t >= loss_from) & (t < end)).astype(jnp.float32)


def update_schedule(num_steps: int, updates_per_rollout: int, full_updates_per_rollout: int):
    """(end, loss_from, is_full) of each of the U updates of one context (static numpy-free ints).

    end_u = (u+1)·T/U; full iff F > 0 and (u+1) is a multiple of U/F; loss_from = 0 when full,
    else end_{u−1}. Mirrors ReLIC's ``UPDATE_EVERY_STEPS`` / ``RATIO_P2F_UPDATES``.
    """
    u, f = updates_per_rollout, full_updates_per_rollout
    if u < 1 or num_steps % u:
        raise ValueError(f"updates_per_rollout={u} must divide num_steps={num_steps}")
    if f < 0 or (f and u % f):
        raise ValueError(f"full_updates_per_rollout={f} must be 0 or divide updates_per_rollout={u}")
    every = num_steps // u
    schedule = []
    for i in range(u):
        full = f > 0 and (i + 1) % (u // f) == 0
        schedule.append(((i + 1) * every, 0 if full else i * every, full))
    return tuple(schedule)


def forward(graphdef, params, tokens: Array, end):
    """The whole-context forward: every position, attention limited to the first ``end`` tokens
    (``context_mask``). Returns (logits [N, T, A], values [N, T], per-layer (k, v))."""
    n, t = tokens.shape[:2]
    visible = jnp.broadcast_to(context_mask(t, end), (n, t, t))
    return nnx.merge(graphdef, params)(tokens, visible)


def score(graphdef, params, batch: ControlBatch, tokens: Array, end) -> ControlBatch:
    """The scoring forward of whole rows: log-prob, entropy and value of every step [N, T].

    ``tokens`` [N, T+1, F] hold the context; the batch's ``mask_bt`` (the loss mask) plays no
    part here: every step is scored from the full context, the objective then reduces over the
    loss steps only.
    """
    logits, value, _ = forward(graphdef, params, tokens, end)
    t = batch.response_bt.shape[1]
    dist = Categorical(logits[:, :t].reshape(-1, logits.shape[-1]))
    action = batch.response_bt.reshape(-1)
    shape = batch.response_bt.shape
    return batch.replace(
        logp_bt=dist.log_prob(action).reshape(shape), entropy_bt=dist.entropy().reshape(shape),
        value_bt=value[:, :t],
    )


class Task(NamedTuple):
    """The bandit trial distribution (static)."""

    num_arms: int = 5
    episode_length: int = 8

    def token_dim(self) -> int:
        return 1 + self.num_arms + 1

    def token(self, t, prev_action, prev_reward) -> Array:
        """x_t = [(t mod L)/L, one-hot(a_{t−1}), r_{t−1}] per row ([N] inputs; a = −1: none)."""
        obs = jnp.broadcast_to((t % self.episode_length) / self.episode_length, prev_reward.shape)
        onehot = jax.nn.one_hot(prev_action, self.num_arms)
        return jnp.concatenate([obs[:, None], onehot, prev_reward[:, None]], axis=-1).astype(jnp.float32)


class Context(NamedTuple):
    """One context of N rows: tokens [N, T+1, F] and per-step records [N, T]."""

    tokens: Array
    action: Array
    logp: Array
    value: Array
    reward: Array
    done: Array


DEFAULTS = dict(d_model=32, num_layers=2, num_heads=2, updates_per_rollout=4, full_updates_per_rollout=2)


def make_run(config) -> Run:
    """The launcher's ``Run`` of a ReLIC config (``config.run = "relic"``): ``init(rng)`` the
    policy's parameters (eager), ``train(rng, params) -> (PolicyState, metrics)`` the whole run,
    one context of num_envs × num_steps pulls per entry of the metrics.

    Config: ``num_envs`` (N rows = trials in parallel), ``num_steps`` (T, the context),
    ``total_timesteps`` (rollouts = total // (N·T)), ``gamma``, ``task`` (``Task`` fields),
    ``relic`` (``DEFAULTS`` overrides: model size, U, F), ``algorithm_kwargs`` (keywords of
    ``polrl.control.algorithms.ppo``: learning rate, clip, epochs, minibatches over rows…).
    Metrics [rollouts]: ``mean_return`` (mean episode return over the context: L × the mean
    reward per pull), ``mean_reward`` (per pull over the context), ``first_episode`` /
    ``last_episode`` (mean reward per pull in the first / last episode of the context),
    ``oracle`` (mean of the best arm), and the PPO losses / metrics of the last update.
    """
    task = Task(**dict(config.get("task", {}) or {}))
    h = {**DEFAULTS, **dict(config.get("relic", {}) or {})}
    unknown = set(h) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"config.relic has unknown fields {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    n, t_ctx = int(config.num_envs), int(config.num_steps)
    if t_ctx % task.episode_length:
        raise ValueError(f"num_steps={t_ctx} must be a multiple of task.episode_length={task.episode_length}")
    schedule = update_schedule(t_ctx, h["updates_per_rollout"], h["full_updates_per_rollout"])
    num_rollouts = int(config.total_timesteps) // (n * t_ctx)
    if num_rollouts < 1:
        raise ValueError(f"total_timesteps={config.total_timesteps} is less than one context of num_envs × num_steps")
    kwargs = dict(config.get("algorithm_kwargs", {}) or {})
    algo = control_algorithms.ppo(num_updates=num_rollouts * len(schedule), **kwargs)
    if n % algo.num_minibatches:
        raise ValueError(f"num_envs={n} must be divisible by num_minibatches={algo.num_minibatches} (rows)")
    gamma = float(config.gamma)

    def make_model(key):
        return InContextPolicy(task.token_dim(), task.num_arms, max_len=t_ctx + 1, d_model=h["d_model"],
                               num_layers=h["num_layers"], num_heads=h["num_heads"], rngs=nnx.Rngs(params=key))

    graphdef, _ = nnx.split(nnx.eval_shape(lambda: make_model(jax.random.key(0))))

    def act(params, ctx: Context, kv, t, p, key):
        """Step t of every row: one token through the cache, pull, record, write token t+1."""
        key_a, key_r = jax.random.split(key)
        visible = jnp.broadcast_to(jnp.arange(t_ctx + 1)[None, None] <= t, (n, 1, t_ctx + 1))
        token = jax.lax.dynamic_slice_in_dim(ctx.tokens, t, 1, axis=1)
        logits, value, kv = nnx.merge(graphdef, params)(token, visible, t, kv)
        dist = Categorical(logits[:, 0])
        a = dist.sample(key_a)
        r = jax.random.bernoulli(key_r, jnp.take_along_axis(p, a[:, None], 1)[:, 0]).astype(jnp.float32)
        done = jnp.broadcast_to((t + 1) % task.episode_length == 0, (n,))
        nxt = task.token(t + 1, a, r)
        ctx = ctx._replace(
            tokens=jax.lax.dynamic_update_slice_in_dim(ctx.tokens, nxt[:, None], t + 1, axis=1),
            action=ctx.action.at[:, t].set(a), logp=ctx.logp.at[:, t].set(dist.log_prob(a)),
            value=ctx.value.at[:, t].set(value[:, 0]), reward=ctx.reward.at[:, t].set(r),
            done=ctx.done.at[:, t].set(done),
        )
        return ctx, kv

    def batch_of(ctx: Context, end, loss_from, last_value) -> ControlBatch:
        """The [N, T] batch of the context so far: loss mask, bootstrapped streams, records."""
        steps = jnp.arange(t_ctx)
        collected = steps < end
        done = ctx.done.astype(jnp.float32)
        at_end = steps == end - 1
        reward = jnp.where(collected, ctx.reward, 0.0)
        reward = reward + jnp.where(at_end, gamma * (1.0 - done) * last_value[:, None], 0.0)
        discount = jnp.where(collected & ~at_end, gamma * (1.0 - done), 0.0)
        return ControlBatch(
            prompt_bp=jnp.zeros((n, 0), jnp.int32), prompt_valid_bp=jnp.zeros((n, 0), bool),
            response_bt=ctx.action, mask_bt=jnp.broadcast_to(loss_mask(t_ctx, loss_from, end), (n, t_ctx)),
            behavior_logp_bt=ctx.logp, old_logp_bt=ctx.logp, old_value_bt=jnp.where(collected, ctx.value, 0.0),
            reward_bt=reward, discount_bt=discount,
        )

    def ppo_update(state: PolicyState, batch: ControlBatch, tokens, end, key):
        """Epochs × minibatches of whole rows (contexts) of the prepared batch, through the
        shared loop (``polrl.train.update.epochs``) with the whole-context ``score``."""
        params, opt_state, objective_state, stats = update_lib.epochs(
            state.params, state.opt_state, state.objective_state, (batch, tokens), algorithm=algo,
            score=lambda params, rows: score(graphdef, params, *rows, end), key=key, step=state.step,
            skip_nonfinite=False,
        )
        state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, objective_state=objective_state)
        return state, stats

    def rollout(state: PolicyState, key):
        """One context: new trials, T steps with U interleaved (partial / full) PPO updates."""
        key_task, key_run = jax.random.split(key)
        p = jax.random.uniform(key_task, (n, task.num_arms))
        tokens = jnp.zeros((n, t_ctx + 1, task.token_dim()), jnp.float32)
        tokens = tokens.at[:, 0].set(task.token(0, jnp.full((n,), -1), jnp.zeros((n,))))
        zeros = jnp.zeros((n, t_ctx), jnp.float32)
        ctx = Context(tokens, jnp.zeros((n, t_ctx), jnp.int32), zeros, zeros, zeros, jnp.zeros((n, t_ctx), bool))
        stats = {}
        start = 0
        keys = jax.random.split(key_run, len(schedule))
        for (end, loss_from, _), k in zip(schedule, keys):
            key_steps, key_update = jax.random.split(k)
            _, _, kv = forward(graphdef, state.params, ctx.tokens, start)  # (re)built cache: current params
            step_keys = jax.random.split(key_steps, end - start)

            def body(c, xs, params=state.params):
                ctx, kv = c
                t, sk = xs
                return act(params, ctx, kv, t, p, sk), None

            (ctx, _), _ = jax.lax.scan(body, (ctx, kv), (jnp.arange(start, end), step_keys))
            _, values, _ = forward(graphdef, state.params, ctx.tokens, end + 1)
            batch = batch_of(ctx, end, loss_from, values[:, end])
            batch, prepare_state = algo.prepare.apply(batch, state.prepare_state, step=state.step)
            state, stats = ppo_update(state.replace(prepare_state=prepare_state), batch, ctx.tokens, end, key_update)
            start = end
        length = task.episode_length
        metrics = dict(
            mean_return=ctx.reward.mean() * length, mean_reward=ctx.reward.mean(),
            first_episode=ctx.reward[:, :length].mean(),
            last_episode=ctx.reward[:, -length:].mean(), oracle=p.max(-1).mean(), **stats,
        )
        return state, metrics

    def init(rng):
        return nnx.split(make_model(rng))[1]

    def train(rng, params):
        return jax.lax.scan(rollout, initial_state(algo, params, rng), jax.random.split(rng, num_rollouts))

    return Run(init, train, steps_per_update=n * t_ctx)


__all__ = ["InContextPolicy", "Task", "context_mask", "forward", "loss_mask", "make_run", "score", "update_schedule"]

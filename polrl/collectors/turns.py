"""Multi-turn rollouts: the model and a text environment (``polrl.envs``) take turns.

The program, for B prompts × G samples = K trajectories (``polrl.rollout.engine``)::

    slots = repeat(extend(init_slots(B, P + W), prompts), G)     # one prefill per prompt, fork ×G
    obs   = env.reset(example)                                     # per trajectory
    for turn t = 0 … max_turns − 1:
        slots = extend(slots, obs)                                 # trajectories not done
        gen, slots = generate(slots, fold_in(rng, t), active = not done, budget = turn_tokens,
                              stop = EOS or env.stop_sequences)
        obs, r, done = env.step(gen)                               # host (Python) or device

A Batch row is the whole trajectory after the prompt — observation 0, generation 0,
observation 1, generation 1, … — compacted (no holes) and right-padded to the static width
W = max_turns · (turn_tokens + O), O = ``env.observation_len``:

* ``mask_bt`` = 1 on generated tokens only (observation tokens are not the model's actions and
  are masked out of the loss); ``behavior_logp_bt`` = the sampler's log-probs there, 0 elsewhere;
* ``aux["turn_bt"]`` = t on observation t and generation t, −1 on padding;
* ``reward_b`` = the sum of the environment's rewards (its outcome); ``group_b`` = the prompt.

Positions: the engine gives every token the count of real tokens before it (the pads of a
left-padded prompt or a right-padded observation are holes it skips), and the scoring forward
over ``prompt ++ response`` gives response column j the real prompt length + j. The response
is compacted, so both agree and the training forward scores exactly what the sampler drew
(tests/test_turns.py checks it against the sampler's log-probs on a float64 model).

Randomness: turn t decodes with ``fold_in(rng, t)`` (``engine.generate``: step i of slot k uses
``uniform(fold_in(rng, t), (turn_tokens, K))[i, k]``), so a trajectory's tokens do not depend on
which other trajectories are still running.

A ``HostEnv`` makes the collector a host collector: prefill, each turn and the batch assembly
are compiled once (``ctx.layout.jit``) and the environment steps this process's trajectories
in between; failed or timed-out steps observe the environment's error observation
(``polrl.envs.Stepper``). A ``DeviceEnv`` keeps the whole rollout jittable (a
``lax.while_loop`` over turns) inside the training step.
"""
from __future__ import annotations

import dataclasses

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from polrl import envs, sharding
from polrl.collectors.context import Context, host_rows, repeat_rows, shapes
from polrl.collectors.group_samples import rollout_metrics
from polrl.core import Batch, Collector
from polrl.envs.protocol import DeviceEnv, HostEnv, check_device_outputs, check_observation
from polrl.models.layers import wide
from polrl.rollout import engine

FIELD = "turn_bt"
DATA = ("prompt_bp", "prompt_valid_bp", "answer_ba", "answer_valid_ba")


@flax.struct.dataclass
class Transcript:
    """The trajectories after their prompts, compacted: K rows of W columns.

    tokens_kt: int32 (pad after the end); generated_kt: float32, 1 on generated tokens;
    logp_kt: the sampler's log-probs of generated tokens (0 elsewhere); turn_kt: int32, the
    turn of each token (−1 on padding); length_k: int32, tokens written so far.
    """

    tokens_kt: jax.Array
    generated_kt: jax.Array
    logp_kt: jax.Array
    turn_kt: jax.Array
    length_k: jax.Array

    @classmethod
    def empty(cls, rows: int, width: int, pad_id: int, logp_dtype) -> "Transcript":
        return cls(tokens_kt=jnp.full((rows, width), pad_id, jnp.int32),
                   generated_kt=jnp.zeros((rows, width), jnp.float32),
                   logp_kt=jnp.zeros((rows, width), logp_dtype),
                   turn_kt=jnp.full((rows, width), -1, jnp.int32),
                   length_k=jnp.zeros((rows,), jnp.int32))

    def append(self, tokens_kn, valid_kn, turn, logp_kn=None) -> "Transcript":
        """Writes each row's valid tokens after its last one, in order; ``logp_kn`` given: they
        are generated tokens with these log-probs, else observation tokens."""
        width = self.tokens_kt.shape[1]
        col_kn = jnp.where(valid_kn, self.length_k[:, None] + jnp.cumsum(valid_kn, axis=1, dtype=jnp.int32) - 1, width)
        rows = jnp.arange(tokens_kn.shape[0])[:, None]
        put = lambda x, values: x.at[rows, col_kn].set(jnp.broadcast_to(values, col_kn.shape).astype(x.dtype), mode="drop")
        generated = logp_kn is not None
        return Transcript(tokens_kt=put(self.tokens_kt, tokens_kn),
                          generated_kt=put(self.generated_kt, float(generated)),
                          logp_kt=put(self.logp_kt, logp_kn if generated else 0.0),
                          turn_kt=put(self.turn_kt, turn),
                          length_k=self.length_k + valid_kn.sum(axis=1, dtype=jnp.int32))


def response_width(max_turns: int, turn_tokens: int, observation_len: int) -> int:
    """W: ``max_turns`` observations (the reset one included) and generations at their longest."""
    return max_turns * (turn_tokens + observation_len)


def prefill(model, prompt_bp, prompt_valid_bp, *, group_size: int, width: int, pad_id: int):
    """Each prompt extended once into a cache of P + W columns and forked ×G; an empty
    transcript of W columns."""
    b, p = prompt_bp.shape
    if p + width > model.max_len:
        raise ValueError(f"turns: the prompt ({p} tokens) + max_turns × (turn_tokens + observation_len) = {width} "
                         f"tokens exceed model.max_len={model.max_len}; raise model.max_len or lower max_turns / "
                         f"turn_tokens")
    slots = engine.extend(model, engine.init_slots(model, b, p + width), prompt_bp, prompt_valid_bp)
    slots = engine.repeat(slots, group_size)
    return slots, Transcript.empty(b * group_size, width, pad_id, wide(model.config.dtype))


def play_turn(model, slots, transcript: Transcript, obs_ko, obs_valid_ko, active_k, turn, rng, sampling,
              stop_sequences):
    """Turn ``turn`` of the active trajectories: their observation, then one generation.
    Returns ``(slots, transcript, generation)``."""
    obs_valid_ko = obs_valid_ko & active_k[:, None]
    slots = engine.extend(model, slots, obs_ko.astype(jnp.int32), obs_valid_ko)
    transcript = transcript.append(obs_ko, obs_valid_ko, turn)
    gen, slots = engine.generate(model, slots, jax.random.fold_in(rng, turn), sampling, active_s=active_k,
                                 stop_sequences=stop_sequences)
    transcript = transcript.append(gen.tokens_sn, gen.mask_sn > 0, turn, gen.logp_sn)
    return slots, transcript, gen


def device_rollout(model, env: DeviceEnv, data: dict, rng, sampling, *, group_size: int, max_turns: int,
                   pad_id: int):
    """The whole program with a device environment (jittable).
    Returns ``(transcript, reward_k, turns_k, done_k)``."""
    width = response_width(max_turns, sampling.max_new_tokens, env.observation_len)
    slots, transcript = prefill(model, data["prompt_bp"], data["prompt_valid_bp"], group_size=group_size,
                                width=width, pad_id=pad_id)
    k = transcript.length_k.shape[0]
    env_state, obs_ko, obs_valid_ko = env.reset({name: repeat_rows(data[name], group_size) for name in DATA})
    check_device_outputs(env.name, "reset", k, env.observation_len, obs_ko, obs_valid_ko)

    def body(carry):
        turn, slots, transcript, env_state, obs_ko, obs_valid_ko, active_k, reward_k, turns_k = carry
        slots, transcript, gen = play_turn(model, slots, transcript, obs_ko, obs_valid_ko, active_k, turn, rng,
                                           sampling, env.stop_sequences)
        env_state, obs_ko, obs_valid_ko, r_k, done_k = env.step(env_state, gen.tokens_sn, gen.mask_sn > 0)
        check_device_outputs(env.name, "step", k, env.observation_len, obs_ko, obs_valid_ko, r_k, done_k)
        reward_k = reward_k + jnp.where(active_k, r_k, 0.0).astype(reward_k.dtype)
        turns_k = turns_k + active_k.astype(jnp.int32)
        return (turn + 1, slots, transcript, env_state, obs_ko, obs_valid_ko, active_k & ~done_k, reward_k, turns_k)

    carry = (jnp.zeros((), jnp.int32), slots, transcript, env_state, obs_ko, obs_valid_ko, jnp.ones((k,), bool),
             jnp.zeros((k,), jnp.float32), jnp.zeros((k,), jnp.int32))
    carry = jax.lax.while_loop(lambda c: (c[0] < max_turns) & jnp.any(c[6]), body, carry)
    _, _, transcript, _, _, _, active_k, reward_k, turns_k = carry
    return transcript, reward_k, turns_k, ~active_k


def trajectory_batch(data: dict, transcript: Transcript, reward_k, turns_k, done_k, failed_k, step, group_size: int):
    """The Batch of K trajectories and the rollout's metrics (``rollout_metrics`` and
    ``turns_mean``, ``done_frac`` (trajectories the environment ended), ``observation_tokens``
    (per trajectory) and ``env_error_frac`` (failed or timed-out steps ÷ steps))."""
    k = reward_k.shape[0]
    batch = Batch(
        prompt_bp=repeat_rows(data["prompt_bp"], group_size),
        prompt_valid_bp=repeat_rows(data["prompt_valid_bp"], group_size),
        response_bt=transcript.tokens_kt,
        mask_bt=transcript.generated_kt,
        reward_b=reward_k.astype(jnp.float32),
        group_b=jnp.arange(k, dtype=jnp.int32) // group_size,
        behavior_logp_bt=transcript.logp_kt.astype(jnp.float32),
        version_b=jnp.full((k,), step, jnp.int32),
        aux={FIELD: transcript.turn_kt},
        group_size=group_size,
    )
    observed = transcript.length_k - transcript.generated_kt.sum(axis=1)
    metrics = {**rollout_metrics(batch), "turns_mean": turns_k.mean(), "done_frac": done_k.mean(),
               "observation_tokens": observed.mean(),
               "env_error_frac": failed_k.sum() / jnp.maximum(turns_k.sum(), 1)}
    return batch, metrics


def pad_observations(observations: list[list[int]], width: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ``(obs_ko int32, obs_valid_ko bool)`` of a list of token lists."""
    obs_ko = np.full((len(observations), width), pad_id, np.int32)
    valid_ko = np.zeros((len(observations), width), bool)
    for row, obs in enumerate(observations):
        obs_ko[row, : len(obs)] = obs
        valid_ko[row, : len(obs)] = True
    return obs_ko, valid_ko


def turns(ctx: Context, *, env, max_turns: int, turn_tokens: int, env_kwargs=None,
          group_size: int | None = None) -> Collector:
    """G trajectories per prompt, the model and ``env`` taking turns (see the module docstring).

    Args:
      env: a ``polrl.envs.HostEnv`` / ``DeviceEnv``, or the name of a factory in ``polrl.envs``
        (called with the task and ``env_kwargs``).
      max_turns: the most generations per trajectory.
      turn_tokens: the token budget of one generation (the turn also ends at EOS or one of the
        environment's stop sequences).
      group_size: G (default the run's ``rollout.group_size``).

    The sampling options other than the budget are the run's (``ctx.sampling``).
    """
    if isinstance(env, str):
        env = envs.get(env)(ctx.task, **dict(env_kwargs or {}))
    elif env_kwargs:
        raise ValueError("turns: env_kwargs are only for an environment given by name")
    if not isinstance(env, (HostEnv, DeviceEnv)):
        raise ValueError(f"turns: env={env!r} is not a polrl.envs.HostEnv or DeviceEnv (or the name of one)")
    g = ctx.group_size if group_size is None else group_size
    for name, value in (("max_turns", max_turns), ("turn_tokens", turn_tokens), ("group_size", g)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"turns: {name}={value!r} must be an int >= 1")
    sampling = dataclasses.replace(ctx.sampling, max_new_tokens=turn_tokens)
    width = response_width(max_turns, turn_tokens, env.observation_len)
    pad_id = ctx.pad_id
    model_of = lambda params: nnx.merge(ctx.graphdef, sharding.reshard_for_rollout(params))

    def example(prompts):
        f32, i32 = jnp.float32, jnp.int32
        return shapes(prompts * g, ctx.task.max_prompt_len, width, g, reward_b=f32, group_b=i32,
                      behavior_logp_bt=f32, version_b=i32, aux={FIELD: ((width,), i32)})

    if isinstance(env, DeviceEnv):
        def collect(cstate, state, data, rng):
            transcript, reward_k, turns_k, done_k = device_rollout(
                model_of(state.params), env, data, rng, sampling, group_size=g, max_turns=max_turns, pad_id=pad_id)
            batch, metrics = trajectory_batch(data, transcript, reward_k, turns_k, done_k, jnp.zeros_like(turns_k),
                                              state.step, g)
            return batch, cstate, metrics

        return Collector(init=lambda prompts: (), collect=collect, example=example)

    vocab_size = ctx.task.tokenizer.vocab_size
    prefill_jit = ctx.layout.jit(
        lambda params, prompt_bp, valid_bp: prefill(model_of(params), prompt_bp, valid_bp, group_size=g,
                                                    width=width, pad_id=pad_id),
        ("params", "batch", "batch"), ("batch", "batch"))
    turn_jit = ctx.layout.jit(
        lambda params, slots, transcript, obs_ko, valid_ko, active_k, turn, rng: play_turn(
            model_of(params), slots, transcript, obs_ko, valid_ko, active_k, turn, rng, sampling, env.stop_sequences),
        ("params", "batch", "batch", "batch", "batch", "batch", "replicated", "replicated"), ("batch", "batch", "batch"))
    batch_jit = ctx.layout.jit(
        lambda data, transcript, reward_k, turns_k, done_k, failed_k, step: trajectory_batch(
            data, transcript, reward_k, turns_k, done_k, failed_k, step, g),
        ("batch", "batch", "batch", "batch", "batch", "batch", "replicated"), ("batch", "replicated"))

    def collect(cstate, state, data, rng):
        arrays = {name: data[name] for name in DATA}
        rows = data["prompt_bp"].shape[0] * g
        to_device = lambda x: ctx.layout.from_process_rows(x, rows)
        # This process's trajectories answer its own examples (the batch is split by process, in order).
        examples = [e for e in data["examples"] for _ in range(g)]
        episodes = [env.new_episode() for _ in examples]
        observations = [check_observation(env.name, "reset", ep.reset(e), env.observation_len, vocab_size)
                        for ep, e in zip(episodes, examples)]
        stepper = envs.Stepper(env, vocab_size)
        active = np.ones(len(examples), bool)
        reward, turns_k, failed = (np.zeros(len(examples), np.float32), np.zeros(len(examples), np.int32),
                                   np.zeros(len(examples), np.int32))
        slots, transcript = prefill_jit(state.params, arrays["prompt_bp"], arrays["prompt_valid_bp"])
        for turn in range(max_turns):
            obs_ko, valid_ko = pad_observations(observations, env.observation_len, pad_id)
            slots, transcript, gen = turn_jit(state.params, slots, transcript, *map(to_device, (obs_ko, valid_ko, active)),
                                              jnp.int32(turn), rng)
            tokens, mask = host_rows(ctx, gen.tokens_sn), host_rows(ctx, gen.mask_sn) > 0
            stepped = np.flatnonzero(active)
            results = stepper.step(episodes, stepped, [tokens[k][mask[k]].tolist() for k in stepped])
            for k, (obs, r, done, error) in zip(stepped, results):
                observations[k], reward[k], active[k] = obs, reward[k] + r, not done
                failed[k] += error
            turns_k[stepped] += 1
        batch, metrics = batch_jit(arrays, transcript, *map(to_device, (reward, turns_k, ~active, failed)), state.step)
        return batch, cstate, metrics

    return Collector(init=lambda prompts: (), collect=collect, example=example, host=True)

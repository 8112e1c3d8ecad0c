"""Partial rollouts: responses drawn W tokens per training step, unfinished ones kept in their slots.

"Truncated Proximal Policy Optimization" (Fan et al. 2025, arXiv 2506.15050) generates long
responses in windows: each training step decodes at most W = ``window`` tokens of every running
response, trains on them, and a response still unfinished at the window's end keeps its
sequence (its slot of the rollout engine's KV cache) and continues at the next step with the
updated policy. The program over one cache (``polrl.rollout.engine``) for B = P prompts × G rows
(row k·G + j: sample j of group k), at step s with parameters θ_s:

    refill: every group whose G rows have all finished takes a new prompt — the freed groups,
        in group order, take the step's prompts 0, 1, … (a prompt is prefilled once and forked
        into its G slots, as ``group_samples`` does); the step's other prompts are not used
    window: every running row draws up to W more tokens with θ_s (``engine.generate`` with
        ``max_new_s`` = min(W, N − length), N = ``rollout.max_new_tokens``), continuing from its
        cached keys and values — computed by the policies of the earlier windows θ_{s−1}, …
        (partial-rollout systems keep the cache: nothing is recomputed when the policy moves)
    finish: a row that emits EOS or reaches N tokens has finished and gets its verifier reward
        on its whole response; it waits (drawing nothing) until its group's last row finishes

Data: every step reads P prompts (``reads`` = P) and uses as many as groups were freed (all P at
the first step, none while every group has a running row), so the data stream moves at P prompts
per step whatever the lengths; the prompts no group took are skipped.

Rows (static shape [B, N]): ``response_bt`` is each row's whole response so far, ``mask_bt`` the
tokens drawn THIS step (what the policy trains on now, all drawn by θ_s), ``behavior_logp_bt``
the log-probs each token was drawn with (by whichever version drew it), ``reward_b`` the verifier
reward of the rows that finished this step (0 for the others), ``version_b`` the step that drew
the row's first token. In ``aux``, per row:

    version_bt        int32 [B, N]: the step that drew each token (−1: no token);
                      ``polrl.diagnostics`` reads the staleness per token from it
    finished_b        float32 [B]: 1 for the rows that finished this step
    response_mask_bt  float32 [B, N]: 1 on every token of the response so far
    window_start_b    int32 [B]: the row's length before this step (its first masked token)
    bootstrap_value_b float32 [B] (with ``values``): V(s_{e+1}), the value head at the state
                      after the row's last token e, for the rows still running (0 for the others)

The bootstrap value is read from the slot's final hidden state (``Slots.hidden_sd``), so it is
θ_s's value head over keys and values partly computed by earlier policies, like the tokens.
The state (checkpointed in ``PolicyState.collector_state``) holds the slots, each group's prompt
and answer, the rows' tokens, log-probs and versions so far, their lengths and which are running.

INFERRED (the paper does not fix them): the refill rule above (a group is replaced as a whole,
once all its samples have finished, and new prompts are read at a fixed rate); a finished row's
slot stays occupied until its group is replaced; the bootstrap value from the cached state.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from polrl import sharding
from polrl.collectors.context import Context, policy_template, repeat_rows, shapes
from polrl.collectors.group_samples import device_reward
from polrl.core import Batch, Collector
from polrl.diagnostics import TOKEN_VERSION
from polrl.rollout import engine

FINISHED, RESPONSE_MASK, WINDOW_START, BOOTSTRAP = "finished_b", "response_mask_bt", "window_start_b", "bootstrap_value_b"


def partial_groups(ctx: Context, *, window: int, group_size: int | None = None, values: bool = False) -> Collector:
    """G samples per prompt generated ``window`` tokens per step, unfinished rows continued at
    the next step from their cache (see the module docstring). ``values`` also records the value
    head's bootstrap V(s_{e+1}) of the running rows (``aux["bootstrap_value_b"]``; T-PPO's
    Extended GAE needs it, and the policy needs a value head).

    Metrics: ``reward_mean``, ``accuracy`` and ``response_length`` of the rows that finished
    this step; ``response_tokens`` (tokens drawn this step); ``partial/finished_rows``,
    ``partial/running_rows`` (after this step) and ``partial/new_groups``.
    """
    g = ctx.group_size if group_size is None else group_size
    n = ctx.sampling.max_new_tokens
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= n:
        raise ValueError(f"partial_groups: window={window!r} must be an int in [1, rollout.max_new_tokens={n}] "
                         f"(tokens drawn per row and step)")
    if g < 1:
        raise ValueError(f"partial_groups: group_size={g} must be >= 1")
    if ctx.task.device_reward is None:
        raise ValueError(f"partial_groups: task {ctx.task.name!r} has only a host reward; partial rollouts are "
                         f"scored inside the compiled step and need a task with a device reward")
    template = policy_template(ctx, "partial_groups")
    lp, la = ctx.task.max_prompt_len, ctx.task.max_answer_len
    window_config = dataclasses.replace(ctx.sampling, max_new_tokens=window)

    def init(prompts):
        b = prompts * g
        empty = jax.eval_shape(lambda p: engine.init_slots(nnx.merge(ctx.graphdef, p), b, lp + n), template)
        return {
            "slots": jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), empty),
            "prompt_pp": jnp.full((prompts, lp), ctx.pad_id, jnp.int32),
            "prompt_valid_pp": jnp.zeros((prompts, lp), bool),
            "answer_pa": jnp.full((prompts, la), ctx.pad_id, jnp.int32),
            "answer_valid_pa": jnp.zeros((prompts, la), bool),
            "response_bn": jnp.full((b, n), ctx.pad_id, jnp.int32),
            "logp_bn": jnp.zeros((b, n), jnp.float32),
            "version_bn": jnp.full((b, n), -1, jnp.int32),
            "length_b": jnp.zeros((b,), jnp.int32),
            "running_b": jnp.zeros((b,), bool),
        }

    def refill(model, cstate, data):
        """The state with every group whose rows have all finished given the step's next prompt."""
        p = cstate["prompt_pp"].shape[0]
        free_p = ~cstate["running_b"].reshape(p, g).any(axis=1)
        src_p = jnp.where(free_p, jnp.cumsum(free_p, dtype=jnp.int32) - 1, 0)
        free_b = repeat_rows(free_p, g)
        where = lambda fresh, old, rows: jnp.where(rows.reshape(rows.shape + (1,) * (old.ndim - 1)), fresh, old)
        group = {k: where(data[d][src_p], cstate[k], free_p) for k, d in (
            ("prompt_pp", "prompt_bp"), ("prompt_valid_pp", "prompt_valid_bp"),
            ("answer_pa", "answer_ba"), ("answer_valid_pa", "answer_valid_ba"))}

        def prefill(slots):
            roots = engine.extend(model, engine.init_slots(model, p, lp + n), group["prompt_pp"],
                                  group["prompt_valid_pp"])
            return jax.tree.map(lambda fresh, old: where(fresh, old, free_b), engine.repeat(roots, g), slots)

        slots = jax.lax.cond(free_p.any(), prefill, lambda s: s, cstate["slots"])
        rows = {"response_bn": where(ctx.pad_id, cstate["response_bn"], free_b),
                "logp_bn": where(0.0, cstate["logp_bn"], free_b),
                "version_bn": where(-1, cstate["version_bn"], free_b),
                "length_b": jnp.where(free_b, 0, cstate["length_b"]),
                "running_b": cstate["running_b"] | free_b}
        return {**cstate, **group, **rows, "slots": slots}, free_p.sum(dtype=jnp.int32)

    def collect(cstate, state, data, rng):
        model = nnx.merge(ctx.graphdef, sharding.reshard_for_rollout(state.params))
        step = jnp.asarray(state.step, jnp.int32)
        cstate, new_groups = refill(model, cstate, data)
        b = cstate["length_b"].shape[0]
        length, running = cstate["length_b"], cstate["running_b"]
        uniform = jax.random.uniform(rng, (window, b))
        gen, slots = engine.generate(model, cstate["slots"], None, window_config, active_s=running,
                                     max_new_s=n - length, uniform_ns=uniform)
        rows, cols = jnp.arange(b)[:, None], length[:, None] + jnp.arange(window, dtype=jnp.int32)
        put = lambda buf, x: buf.at[rows, cols].set(x.astype(buf.dtype), mode="drop")
        drawn = gen.mask_sn > 0
        response = put(cstate["response_bn"], gen.tokens_sn)
        logp = put(cstate["logp_bn"], gen.logp_sn)
        version = put(cstate["version_bn"], jnp.where(drawn, step, -1))
        mask = put(jnp.zeros((b, n), jnp.float32), gen.mask_sn)
        new_length = length + gen.length_s
        going = running & (gen.finish_s == engine.LENGTH) & (new_length < n)
        finished = running & ~going
        full = (jnp.arange(n) < new_length[:, None]).astype(jnp.float32)
        answers = repeat_rows(cstate["answer_pa"], g), repeat_rows(cstate["answer_valid_pa"], g)
        reward = jnp.where(finished, device_reward(ctx, response, full, *answers), 0.0)
        aux = {TOKEN_VERSION: version, FINISHED: finished.astype(jnp.float32), RESPONSE_MASK: full,
               WINDOW_START: length}
        if values:
            aux[BOOTSTRAP] = jnp.where(going, model.value(slots.hidden_sd), 0.0).astype(jnp.float32)
        batch = Batch(prompt_bp=repeat_rows(cstate["prompt_pp"], g),
                      prompt_valid_bp=repeat_rows(cstate["prompt_valid_pp"], g), response_bt=response, mask_bt=mask,
                      reward_b=reward, group_b=jnp.arange(b, dtype=jnp.int32) // g,
                      behavior_logp_bt=logp, version_b=jnp.where(new_length > 0, version[:, 0], step),
                      aux=aux, group_size=g)
        done = finished.astype(jnp.float32)
        mean = lambda x: (x * done).sum() / jnp.maximum(done.sum(), 1.0)
        metrics = {"reward_mean": mean(reward), "accuracy": mean((reward >= 1.0).astype(jnp.float32)),
                   "response_length": mean(new_length.astype(jnp.float32)), "response_tokens": mask.sum(),
                   "partial/finished_rows": done.sum(), "partial/running_rows": going.sum(dtype=jnp.float32),
                   "partial/new_groups": new_groups.astype(jnp.float32)}
        new_state = {**cstate, "slots": slots, "response_bn": response, "logp_bn": logp, "version_bn": version,
                     "length_b": new_length, "running_b": going}
        return batch, new_state, metrics

    def example(prompts):
        f32, i32 = jnp.float32, jnp.int32
        aux = {TOKEN_VERSION: ((n,), i32), FINISHED: ((), f32), RESPONSE_MASK: ((n,), f32), WINDOW_START: ((), i32)}
        if values:
            aux[BOOTSTRAP] = ((), f32)
        return shapes(prompts * g, lp, n, g, reward_b=f32, group_b=i32, behavior_logp_bt=f32, version_b=i32, aux=aux)

    return Collector(init=init, collect=collect, example=example)

"""Step-level transitions with N candidate actions and a frozen model's features: Digi-Q's data.

"Digi-Q: Learning Q-Value Functions for Training Device-Control Agents" (arXiv 2502.15760) trains
a critic on a frozen model's representations of the state s and of the state-action pair (s, a),
from an offline data set of the behaviour policy's trajectories, and extracts a policy by
scoring N candidate actions per state. On a task whose responses are split into steps (the
task's ``step_separator``, ``polrl.search.scoring.separator_id``) a state is the prompt and the
steps so far, an action the next step (one ``engine.generate`` until the separator, EOS or the
budget), and the reward the verifier's, at the last step only.

The behaviour policy is the phase's frozen reference (``PolicyState.ref_params``, the SFT warm
start); it is also the frozen feature model, so no second model is kept. For B = P·G
trajectories (G per prompt), K = ``max_steps`` and N = ``candidates``, over one KV cache:

    prefill each prompt once, fork it into G row slots
    for j in 0 … K−1, in the rows whose trajectory is unfinished (the state s_j exists):
        h(s_j) = the row slot's hidden state (after the state's last token)
        fork every row slot into N − 1 candidate slots, ``generate`` one step in each
          (a_j^1 … a_j^{N−1}); h(s_j, a_j^n) = the candidate slot's hidden state after it
        ``generate`` the behaviour's step a_j^0 = a_j in the row slot; h(s_j, a_j^0) after it
    rest: ``generate`` the unfinished rows to EOS or the budget (steps after K: no transition)

h is the final hidden state of the frozen model after a sequence's last token (the engine's
``Slots.hidden_sd``, equal to a full forward's, a test). The next state of the behaviour's
transition is s_{j+1} = s_j ++ a_j, so h(s_{j+1}) = h(s_j, a_j^0): the critic's V(s′) reads
``action_feature_bnd[:, 0]``. The trajectory's reward r (the task's device reward of the whole
response) is the reward of its last step; every other step has reward 0; the last step (EOS, the
budget, or a separator at the budget's end) is terminal.

Rows: one per state (b, j), row b·K + j, so the rows of prompt k are contiguous
(``group_size`` = G·K, ``group_b`` = k). The row's response is s_j's steps followed by the
behaviour's step a_j (pad after it), ``mask_bt`` = 1 on a_j's tokens only (all 0 when s_j does
not exist), ``behavior_logp_bt`` the behaviour's log-probs of a_j, ``reward_b`` = r of the row's
trajectory, ``version_b`` 0. In ``aux``, per row:

  ``candidate_bnt``       int32 [R, N, T]: s_j's steps ++ a_j^n (n = 0 the behaviour's a_j), pad after;
  ``candidate_mask_bnt``  float32 [R, N, T]: 1 on a_j^n's tokens;
  ``candidate_logp_bnt``  float32 [R, N, T]: the behaviour's log-probs of a_j^n's tokens;
  ``state_feature_bd``    float32 [R, D]: h(s_j);
  ``action_feature_bnd``  float32 [R, N, D]: h(s_j, a_j^n);
  ``step_reward_b``       float32 [R]: r at the trajectory's last step, else 0;
  ``step_done_b``         float32 [R]: 1 at the last step;
  ``state_valid_b``       float32 [R]: 1 when s_j exists;
  ``outcome_b``           float32 [R]: the trajectory's reward r (its undiscounted return).

Randomness: ``rng`` splits into (row key, candidate key). Token t of row b is drawn with
``uniform(row key, (N_tok, B))[t, b]`` whichever step draws it, so the rows' trajectories are
exactly ``polrl.rollout.sample(graphdef, ref_params, …, row key, sampling, G)`` (a test); the
candidate key splits into K keys, step j's candidates being one ``generate`` over the B·(N−1)
candidate slots with key_j.

INFERRED (not fixed by the paper, whose data are device-control trajectories): the candidates
are drawn from the behaviour policy (the authors' code reads them from its offline buffer);
the data set is drawn anew each step from the frozen behaviour policy rather than read from a
file; the representation of (s, a) is the hidden state after the action's last token, which is
also the representation of the next state.
"""
from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
from flax import nnx

from polrl import sharding
from polrl.collectors.context import (Context, group_rows, named_model, policy_template, reads_reference, repeat_rows,
                                     shapes)
from polrl.collectors.group_samples import device_reward, rollout_metrics
from polrl.collectors.step_labels import row_decoder
from polrl.core import Collector
from polrl.models.layers import wide
from polrl.rollout import engine
from polrl.search.scoring import separator_id

CANDIDATES, CANDIDATE_MASK, CANDIDATE_LOGP = "candidate_bnt", "candidate_mask_bnt", "candidate_logp_bnt"
STATE_FEATURE, ACTION_FEATURE = "state_feature_bd", "action_feature_bnd"
STEP_REWARD, STEP_DONE, STATE_VALID, OUTCOME = "step_reward_b", "step_done_b", "state_valid_b", "outcome_b"


class Transitions(flax.struct.PyTreeNode):
    """What ``transition_rollout`` returns for B trajectories, T response columns, K steps, N
    candidates and feature width D (step-major: index [j, b]).

    tokens_bt, logp_bt, mask_bt: the behaviour's whole trajectories (as ``engine.Generation``);
    start_kb, end_kb: response columns of a_j's first and last token; live_kb: s_j exists;
    last_kb: a_j ends its trajectory; cand_kbnt, cand_mask_kbnt, cand_logp_kbnt: candidate rows
    (n ≥ 1; the behaviour's rows are cut from the trajectories); state_kbd: h(s_j);
    action_kbnd: h(s_j, a_j^n), n = 0 … N−1.
    """

    tokens_bt: jax.Array
    logp_bt: jax.Array
    mask_bt: jax.Array
    start_kb: jax.Array
    end_kb: jax.Array
    live_kb: jax.Array
    last_kb: jax.Array
    cand_kbnt: jax.Array
    cand_mask_kbnt: jax.Array
    cand_logp_kbnt: jax.Array
    state_kbd: jax.Array
    action_kbnd: jax.Array


def transition_rollout(model, prompt_bp, prompt_valid_bp, rng, config, *, samples: int, candidates: int,
                       max_steps: int, separator: int) -> Transitions:
    """The program of the module docstring for left-padded prompts [P, ·], G = ``samples``
    trajectories per prompt, N = ``candidates``, K = ``max_steps``, with the behaviour (and
    feature) ``model`` (rollout layout). Pure and jittable."""
    p, width = prompt_bp.shape
    n, g, c = config.max_new_tokens, samples, candidates - 1
    b = p * g
    row_key, cand_key = jax.random.split(rng)
    uniform_bn = jax.random.uniform(row_key, (n, b)).T
    slots = engine.repeat(engine.extend(model, engine.init_slots(model, p, width + n), prompt_bp, prompt_valid_bp), g)
    real = wide(model.config.dtype)
    cols = jnp.arange(n, dtype=jnp.int32)
    put, decode = row_decoder(model, config, separator, uniform_bn)

    def step(carry, key):
        slots, tokens, logp, mask, offset, done = carry
        live = ~done
        state = slots.hidden_sd
        cand_offset = repeat_rows(offset, c)
        cand, cand_slots = engine.generate(model, engine.repeat(slots, c), key, config, active_s=repeat_rows(live, c),
                                           max_new_s=n - cand_offset, stop_sequences=((separator,),))
        zeros = jnp.zeros((b * c, n), real)
        cand_tokens = put(jnp.where(cols < cand_offset[:, None], repeat_rows(tokens, c), config.pad_id),
                          cand_offset, cand.tokens_sn)
        cand_mask, cand_logp = put(zeros, cand_offset, cand.mask_sn), put(zeros, cand_offset, cand.logp_sn)
        gen, slots, tokens, logp, mask = decode(slots, tokens, logp, mask, offset, live, stop=True)
        start, offset = offset, offset + gen.length_s
        done = done | (gen.finish_s != engine.STOP) | (offset >= n)
        action = jnp.concatenate([slots.hidden_sd[:, None], cand_slots.hidden_sd.reshape(b, c, -1)], axis=1)
        per_row = lambda x: x.reshape(b, c, n)
        out = (start, offset - 1, live, live & done, per_row(cand_tokens), per_row(cand_mask), per_row(cand_logp),
               state, action)
        return (slots, tokens, logp, mask, offset, done), out

    init = (slots, jnp.full((b, n), config.pad_id, jnp.int32), jnp.zeros((b, n), real), jnp.zeros((b, n), real),
            jnp.zeros((b,), jnp.int32), jnp.zeros((b,), bool))
    (slots, tokens, logp, mask, offset, done), out = jax.lax.scan(step, init, jax.random.split(cand_key, max_steps))
    _, _, tokens, logp, mask = decode(slots, tokens, logp, mask, offset, ~done, stop=False, commit_last=False)
    start, end, live, last, cand_tokens, cand_mask, cand_logp, state, action = out
    return Transitions(tokens_bt=tokens, logp_bt=logp, mask_bt=mask, start_kb=start, end_kb=end, live_kb=live,
                       last_kb=last, cand_kbnt=cand_tokens, cand_mask_kbnt=cand_mask, cand_logp_kbnt=cand_logp,
                       state_kbd=state, action_kbnd=action)


def state_rows(out: Transitions, pad_id: int) -> dict:
    """The per-state arrays of the module docstring's rows, [B·K, …] in row order b·K + j: the
    behaviour's step a_j as candidate 0 (cut from the trajectory), then the sampled candidates."""
    k, b = out.live_kb.shape
    cols = jnp.arange(out.tokens_bt.shape[1], dtype=jnp.int32)
    own = (cols >= out.start_kb[:, :, None]) & (cols <= out.end_kb[:, :, None]) & out.live_kb[:, :, None]  # [K, B, T]
    own_mask = own.astype(out.mask_bt.dtype) * out.mask_bt
    own_tokens = jnp.where(cols <= out.end_kb[:, :, None], out.tokens_bt, pad_id)
    stack = lambda first, rest: jnp.concatenate([first[:, :, None], rest], axis=2)
    rows = lambda x: jnp.swapaxes(x, 0, 1).reshape(b * k, *x.shape[2:])
    f32 = lambda x: rows(x).astype(jnp.float32)
    return {CANDIDATES: rows(stack(own_tokens, out.cand_kbnt)),
            CANDIDATE_MASK: f32(stack(own_mask, out.cand_mask_kbnt)),
            CANDIDATE_LOGP: f32(stack(out.logp_bt * own_mask, out.cand_logp_kbnt)),
            STATE_FEATURE: f32(out.state_kbd), ACTION_FEATURE: f32(out.action_kbnd),
            STEP_DONE: f32(out.last_kb), STATE_VALID: f32(out.live_kb)}


def step_candidates(ctx: Context, *, candidates: int = 4, max_steps: int = 9, group_size: int | None = None) -> Collector:
    """The behaviour's (the phase's reference's) trajectories as one row per state, each with
    ``candidates`` candidate next steps (the behaviour's own first) and the frozen reference's
    features of the state and of every (state, candidate) pair (module docstring). G =
    ``group_size`` (default the run's ``rollout.group_size``) trajectories per prompt, their first
    ``max_steps`` steps as states.

    Metrics: those of ``group_samples`` over the state rows (``accuracy``: of the states'
    trajectories), ``transitions/states_per_trajectory`` and ``transitions/outcome`` (the
    trajectories' mean reward, each counted once). The features' width D is the model's, read from
    ``ctx.params_template``.
    """
    g = ctx.group_size if group_size is None else group_size
    checks = [("candidates", candidates, 2), ("max_steps", max_steps, 1), ("group_size", g, 1)]
    for field, value, low in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"step_candidates: {field}={value!r} must be an int >= {low}")
    task = ctx.task
    if task.device_reward is None:
        raise ValueError(f"step_candidates: task {task.name!r} has only a host reward; the transitions are verified "
                         f"inside the compiled step and need a task with a device reward")
    separator = separator_id(task, "step_candidates")
    n = ctx.sampling.max_new_tokens
    d = nnx.merge(ctx.graphdef, policy_template(ctx, "step_candidates")).config.d_model

    def collect(cstate, state, data, rng):
        graphdef, params = named_model(ctx, state, "reference", "step_candidates")
        model = nnx.merge(graphdef, sharding.reshard_for_rollout(params))
        prompt_bp, valid_bp = sharding.constrain_batch((data["prompt_bp"], data["prompt_valid_bp"]), rollout=True)
        out = transition_rollout(model, prompt_bp, valid_bp, rng, ctx.sampling, samples=g, candidates=candidates,
                                 max_steps=max_steps, separator=separator)
        answers = repeat_rows(data["answer_ba"], g), repeat_rows(data["answer_valid_ba"], g)
        outcome_b = device_reward(ctx, out.tokens_bt, out.mask_bt, *answers)
        aux = state_rows(out, ctx.pad_id)
        outcome = jnp.repeat(outcome_b, max_steps)
        aux.update({STEP_REWARD: outcome * aux[STEP_DONE], OUTCOME: outcome})
        batch = group_rows(data, aux[CANDIDATES][:, 0], aux[CANDIDATE_MASK][:, 0], aux[CANDIDATE_LOGP][:, 0],
                           g * max_steps, 0, reward_b=outcome, aux=aux)
        metrics = {**rollout_metrics(batch),
                   "transitions/states_per_trajectory": aux[STATE_VALID].sum() / outcome_b.shape[0],
                   "transitions/outcome": outcome_b.mean()}
        return batch, cstate, metrics

    def example(prompts):
        f32, i32 = jnp.float32, jnp.int32
        aux = {CANDIDATES: ((candidates, n), i32), CANDIDATE_MASK: ((candidates, n), f32),
               CANDIDATE_LOGP: ((candidates, n), f32), STATE_FEATURE: ((d,), f32), ACTION_FEATURE: ((candidates, d), f32),
               **{k: ((), f32) for k in (STEP_REWARD, STEP_DONE, STATE_VALID, OUTCOME)}}
        return shapes(prompts * g * max_steps, task.max_prompt_len, n, g * max_steps, reward_b=f32, group_b=i32,
                      behavior_logp_bt=f32, version_b=i32, aux=aux)

    return Collector(init=lambda prompts: (), collect=collect, example=example, needs=reads_reference("reference"))

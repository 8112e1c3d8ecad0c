"""MCTS-DPO's step-level preference pairs: Monte-Carlo tree search over reasoning steps, then, at
each expanded node, the child of highest Q preferred over the child of lowest Q.

"Monte Carlo Tree Search Boosts Reasoning via Iterative Preference Learning" (Xie et al. 2024,
arXiv 2405.00451), §2.2: each prompt's search (``polrl.search.mcts``, the policy's steps split at
the task's ``step_separator``, evaluated by policy rollouts scored with the verifier) gives, for
every expanded node s with children c_1 … c_k,

    c⁺ = argmax_j Q(c_j),   c⁻ = argmin_j Q(c_j),   gap(s) = Q(c⁺) − Q(c⁻)      (first on ties),

and the pair (s; step(c⁺) ≻ step(c⁻)) is kept when gap(s) > ``margin`` and the two steps differ
(two equal steps give a zero DPO log-ratio). At most ``max_pairs`` pairs per prompt are emitted,
the largest gaps first.

Layout (groups of two rows, ``best_and_worst``'s: [chosen, rejected]): both rows carry the prompt
and the response s ++ step(c) — the shared prefix s, then the child's step — with ``mask_bt`` = 1
on the step's tokens only. The scoring forward attends to every response token (the mask only
weights the sums), so log π(step | x, s) is computed in its context, and DPO's per-row sums
S(y) = Σ_t mask_t log π_θ(y_t | ·) cover the step alone:

    h = [log π_θ(c⁺ | x, s) − log π_ref(c⁺ | x, s)] − [log π_θ(c⁻ | x, s) − log π_ref(c⁻ | x, s)],

the step-level DPO log-ratio of the paper. ``reward_b`` holds Q(c⁺) / Q(c⁻) (the chosen row has
the higher reward); a missing pair (fewer than ``max_pairs`` kept) has empty masks and equal
rewards, a tie every pair loss ignores, and ``aux["pair_valid_b"]`` False.

The search runs with the current policy by default (the paper's code, online; ``policy =
"reference"`` searches with the phase's frozen π_{i−1}, its offline mode); the DPO reference is the
phase's (the previous iteration's final policy). The paper's loss is plain DPO (or IPO) on these
pairs, so MCTS-DPO is the ``dpo`` noun on this collector.

INFERRED: the paper's code moves the root down its selected path and pairs the children of each
root it searched (one pair per depth); here one search per prompt pairs the children of every
expanded node; which pairs survive the ``max_pairs`` cap (largest gap first) is this
implementation's choice.
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from polrl import sharding
from polrl.collectors.context import (Context, check_named_model, check_sampler, named_model, reads_reference,
                                      repeat_rows, sampler, shapes)
from polrl.collectors.group_samples import device_reward
from polrl.core import Batch, Collector
from polrl.search.mcts import Tree, check_search, mcts, prm_prefix_score
from polrl.search.scoring import separator_id

VALID = "pair_valid_b"


def step_pairs(tree: Tree, branching: int, margin: float, max_pairs: int):
    """The step-level pairs of each prompt's tree (module docstring), ``max_pairs`` slots each.

    Returns ``(chosen_bp, rejected_bp, gap_bp, valid_bp, found_b)``: node indices of c⁺ and c⁻,
    the Q gap, whether the slot holds a kept pair (slots ordered by gap, largest first) and the
    number of pairs kept before the cap.
    """
    b, m, _ = tree.tokens_bmn.shape
    q = tree.q_bm
    kids = jnp.clip(tree.child_bm, 0, m - 1)[:, :, None] + jnp.arange(branching, dtype=jnp.int32)  # [B, M, k]
    q_kids = jnp.take_along_axis(q[:, :, None], kids.reshape(b, -1, 1), axis=1).reshape(b, m, branching)
    pick = lambda j: jnp.take_along_axis(kids, j[:, :, None], axis=2)[:, :, 0]
    chosen, rejected = pick(jnp.argmax(q_kids, axis=2)), pick(jnp.argmin(q_kids, axis=2))
    gap = q_kids.max(axis=2) - q_kids.min(axis=2)
    step = lambda node: jnp.take_along_axis(tree.tokens_bmn, jnp.clip(node, 0, m - 1)[:, :, None], axis=1)
    differ = jnp.any(step(chosen) != step(rejected), axis=2)
    keep = (tree.child_bm >= 0) & (gap > margin) & differ
    order = jnp.argsort(jnp.where(keep, -gap, jnp.inf), axis=1, stable=True)[:, :max_pairs]
    take = lambda x: jnp.take_along_axis(x, order, axis=1)
    return take(chosen), take(rejected), take(gap), take(keep), keep.sum(axis=1, dtype=jnp.int32)


def pair_rows(tree: Tree, prompt_bp, prompt_valid_bp, chosen_bp, rejected_bp, valid_bp, version) -> Batch:
    """Rows [chosen, rejected] of every pair slot (prompt-major): the node's whole response with the
    mask on its own step (empty for an invalid slot), ``reward_b`` Q (0 / 0 for an invalid slot),
    the sampler's log-probs of the step, ``aux["pair_valid_b"]``."""
    b, m, n = tree.tokens_bmn.shape
    p = chosen_bp.shape[1]
    node = jnp.stack([chosen_bp, rejected_bp], axis=2).reshape(b, 2 * p)              # [B, 2P]
    valid = jnp.repeat(valid_bp, 2, axis=1)
    at = lambda x: jnp.take_along_axis(x, node, axis=1).reshape(-1)
    rows = lambda x: jnp.take_along_axis(x, node[:, :, None], axis=1).reshape(b * 2 * p, n)
    col = jnp.arange(n, dtype=jnp.int32)
    mask = (col >= at(tree.start_bm)[:, None]) & (col < at(tree.length_bm)[:, None]) & valid.reshape(-1)[:, None]
    mask = mask.astype(jnp.float32)
    count = b * 2 * p
    return Batch(
        prompt_bp=repeat_rows(prompt_bp, 2 * p), prompt_valid_bp=repeat_rows(prompt_valid_bp, 2 * p),
        response_bt=rows(tree.tokens_bmn), mask_bt=mask,
        reward_b=jnp.where(valid.reshape(-1), at(tree.q_bm), 0.0).astype(jnp.float32),
        group_b=jnp.arange(count, dtype=jnp.int32) // 2,
        behavior_logp_bt=rows(tree.logp_bmn).astype(jnp.float32) * mask,
        version_b=jnp.full((count,), version, jnp.int32),
        aux={VALID: valid.reshape(-1)},
        group_size=2,
    )


def mcts_pairs(ctx: Context, *, simulations: int = 8, branching: int = 3, max_depth: int = 10, step_tokens: int = 16,
               c_puct: float = 1.0, length_penalty: float = 1.25, margin: float = 0.0, max_pairs: int = 4,
               policy: str = "current", prm: str = "", prefix_weight: float = 0.0) -> Collector:
    """MCTS-DPO's step-level pairs (module docstring): per prompt, ``simulations`` simulations
    expanding ``branching`` candidate steps of at most ``step_tokens`` tokens, down to depth
    ``max_depth`` (``polrl.search.mcts``, PUCT constant ``c_puct``, prior length exponent
    ``length_penalty``), searched with ``policy`` ("current", or "reference": the phase's frozen
    π_{i−1}); then ``max_pairs`` pair slots per prompt (2 · ``max_pairs`` rows) of gap >
    ``margin``. Metrics: ``mcts/pairs_found`` (pairs kept per prompt before the cap),
    ``mcts/pairs`` (pairs emitted per prompt), ``mcts/q_gap`` (mean gap of the emitted pairs),
    ``mcts/tree_size`` (nodes per prompt), ``mcts/root_value`` (mean Q of the roots: the search's
    estimate of the policy's success), ``sampled_tokens`` (steps and rollouts decoded).

    ``prm``: the name of a process reward model among the run's frozen models (``config.models``,
    with a value head) whose score p(x, y_{≤t}) of a new node's prefix is blended into its value
    with weight ``prefix_weight`` (``search.mcts.prm_prefix_score``); "" (the default) values
    nodes by their rollouts alone.
    """
    n = ctx.sampling.max_new_tokens
    check_search(n, simulations=simulations, branching=branching, max_depth=max_depth, step_tokens=step_tokens,
                 c_puct=c_puct, length_penalty=length_penalty, prefix_weight=prefix_weight, who="mcts_pairs")
    if bool(prm) != (prefix_weight > 0):
        raise ValueError(f"mcts_pairs: prm={prm!r} with prefix_weight={prefix_weight}; name a process reward model "
                         f"(collector_kwargs.prm) and give it a weight in (0, 1], or neither")
    if prm:
        check_named_model(ctx, prm, "mcts_pairs: prm", value_head=True)
    check_sampler(ctx, policy, "mcts_pairs: policy")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < float("inf"):
        raise ValueError(f"mcts_pairs: margin={margin!r} must be a finite number >= 0 (0 keeps every Q gap > 0)")
    if isinstance(max_pairs, bool) or not isinstance(max_pairs, int) or max_pairs < 1:
        raise ValueError(f"mcts_pairs: max_pairs={max_pairs!r} must be an int >= 1 (pair slots per prompt)")
    task = ctx.task
    if task.device_reward is None:
        raise ValueError(f"mcts_pairs: task {task.name!r} has only a host reward; the search scores rollouts inside "
                         f"the compiled step and needs a task with a device reward")
    separator = separator_id(task, "mcts_pairs")

    def collect(cstate, state, data, rng):
        graphdef, params, version = sampler(ctx, state, policy, "mcts_pairs")
        model = nnx.merge(graphdef, sharding.reshard_for_rollout(params))
        prompt_bp, valid_bp = sharding.constrain_batch((data["prompt_bp"], data["prompt_valid_bp"]), rollout=True)
        b = prompt_bp.shape[0]
        answers = repeat_rows(data["answer_ba"], branching), repeat_rows(data["answer_valid_ba"], branching)

        def outcome(response_bkn, mask_bkn):
            flat = lambda x: x.reshape(b * branching, n)
            return device_reward(ctx, flat(response_bkn), flat(mask_bkn), *answers).reshape(b, branching)

        prefix_score = None
        if prm:
            prm_graphdef, prm_params = named_model(ctx, state, prm, "mcts_pairs")
            prefix_score = prm_prefix_score(prm_graphdef, sharding.reshard_for_rollout(prm_params), prompt_bp, valid_bp)
        tree = mcts(model, prompt_bp, valid_bp, rng, ctx.sampling, outcome=outcome, separator_id=separator,
                    simulations=simulations, branching=branching, max_depth=max_depth, step_tokens=step_tokens,
                    c_puct=c_puct, length_penalty=length_penalty, prefix_score=prefix_score,
                    prefix_weight=prefix_weight)
        chosen, rejected, gap, valid, found = step_pairs(tree, branching, margin, max_pairs)
        batch = pair_rows(tree, data["prompt_bp"], data["prompt_valid_bp"], chosen, rejected, valid, version)
        kept = valid.astype(jnp.float32)
        metrics = {"mcts/pairs_found": found.mean(dtype=jnp.float32), "mcts/pairs": kept.sum(axis=1).mean(),
                   "mcts/q_gap": (gap * kept).sum().astype(jnp.float32) / jnp.maximum(kept.sum(), 1.0),
                   "mcts/tree_size": tree.size_b.mean(dtype=jnp.float32),
                   "mcts/root_value": tree.q_bm[:, 0].mean().astype(jnp.float32),
                   "sampled_tokens": tree.sampled.astype(jnp.float32)}
        return batch, cstate, metrics

    def example(prompts):
        f32, i32 = jnp.float32, jnp.int32
        return shapes(prompts * 2 * max_pairs, task.max_prompt_len, n, 2, reward_b=f32, group_b=i32,
                      behavior_logp_bt=f32, version_b=i32, aux={VALID: ((), jnp.bool_)})

    needs = reads_reference(policy, prm)
    return Collector(init=lambda prompts: (), collect=collect, example=example, needs=needs)

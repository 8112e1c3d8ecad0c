"""DialTree-RPO's dialogue tree rollouts: an attacker and a frozen target take turns, the
dialogues branch at every attacker turn and quality-aware pruning keeps the promising ones.

"Tree-based Dialogue Reinforced Policy Optimization for Red-Teaming Attacks" (Guo et al. 2025,
arXiv 2510.02286). For a goal g (the prompt) the attacker (the policy) holds a dialogue of at most
``max_turns`` = T turns with the target (a frozen named model, ``Context.models``); after each
attacker turn the target replies and a judge scores the reply (the task's ``attack_rules``:
``polrl.tasks.<task>.attack_rules``). The program, per goal, over one KV cache of C = W·n
attacker slots (``polrl.rollout.engine``; W = ``width``, n = ``branch``):

    live dialogues: the root (the goal) alone, with ``init_branches`` children at turn 0
    for t = 0 … T − 1:
        every live dialogue j has n children: slots j·n … j·n + n − 1, forked from it
        the attacker generates one turn in each child (stop: the rules' stop sequences)
        pruning 1 (format): a turn that is malformed or off the goal ends its dialogue
                            (``check_turn``); it is never sent to the target
        the target answers each well-formed turn (greedy, fresh cache: BOS + the turn)
        the judge scores the reply, s ∈ [0, 1]; s = 1 is a success, which ends the dialogue
        the reply (``observation``) is appended to the child's dialogue
        pruning 2 (quality): of each parent's children that go on, the ``top_k`` with the
                            highest s; of those, the ``width`` with the highest s of the goal
                            (ties: the lower slot first) become the live dialogues of turn t + 1
        every child that does not go on is a leaf: a finished dialogue

A Batch row is one leaf: the dialogue after the goal (turn 0, reply 0, turn 1, reply 1, …),
compacted as ``polrl.collectors.turns`` writes it, with ``mask_bt`` = 1 on the attacker's
tokens only (the target's replies are observations, never trained on) and ``reward_b`` = 1 iff
the judge declared success on its last turn (the paper's R = 1 if any turn succeeded: a success
ends the dialogue, so only the last turn can). Rows are laid out per goal as T·C slots, row
(t, c) = the dialogue that ended at turn t in slot c; slots that held no leaf are empty rows
(mask 0, ``aux["dialogue_leaf_b"]`` = 0). ``group_b`` is the goal, ``group_size`` = T·C, so the
group-relative advantage (``polrl.algorithms.dialtree_rpo``) compares the goal's dialogues.

Without a tree (the paper's comparison): ``init_branches`` = G, ``branch`` = 1, ``width`` =
``top_k`` = G gives G independent multi-turn dialogues per goal, pruned by format only.

Randomness: turn t decodes with ``fold_in(rng, t)``; slot s draws its i-th token with
``uniform(fold_in(rng, t), (N, B·C))[i, s]`` (``engine.generate``). The target decodes greedily.

INFERRED (not fixed by the paper's text available here): the judge's score ranks the children
that go on (the paper names a format check, a topic check and a branch limit of w nodes per turn;
here the topic check is part of ``check_turn`` and the limit keeps the best-scored);
a dialogue dropped by the width limit is trained on as a failed dialogue (reward 0), like a
malformed one; a malformed turn is a leaf with no target reply.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from polrl import sharding
from polrl.collectors.context import Context, check_named_model, named_model, reads_reference, repeat_rows, shapes
from polrl.collectors.turns import FIELD as TURN_FIELD
from polrl.collectors.turns import Transcript
from polrl.core import Batch, Collector
from polrl.models.layers import wide
from polrl.rollout import SamplingConfig, engine

LEAF_FIELD = "dialogue_leaf_b"
TARGET_SEED = 1_000_003  # folds the (unused) greedy target draws away from the attacker's


class DialogueTree(NamedTuple):
    """The leaves of B goals' trees, rows (b, t, c) flattened, T·C rows per goal.

    tokens_rw / generated_rw / logp_rw / turn_rw: the dialogues (``Transcript`` fields), empty
    rows pad / 0 / 0 / −1; leaf_r: float32, 1 for a leaf; success_r: float32, 1 for a success;
    turns_r: int32, the leaf's number of turns (0 for empty rows); calls_b: int32, target calls
    per goal; malformed_b: int32, attacker turns pruned by format per goal.
    """

    tokens_rw: jax.Array
    generated_rw: jax.Array
    logp_rw: jax.Array
    turn_rw: jax.Array
    leaf_r: jax.Array
    success_r: jax.Array
    turns_r: jax.Array
    calls_b: jax.Array
    malformed_b: jax.Array


def rank_in(score_gc: jax.Array, eligible_gc: jax.Array, same_cc: jax.Array) -> jax.Array:
    """For each candidate c: how many eligible candidates c' with ``same_cc[c, c']`` rank before
    it (higher score, or the same score and a lower index). [G, C] int32."""
    c = score_gc.shape[1]
    idx = jnp.arange(c)
    higher = score_gc[:, None, :] > score_gc[:, :, None]
    tied_before = (score_gc[:, None, :] == score_gc[:, :, None]) & (idx[None, :] < idx[:, None])
    before = (higher | tied_before) & eligible_gc[:, None, :] & same_cc[None]
    return before.sum(axis=2, dtype=jnp.int32)


def select_survivors(score_gc, going_on_gc, parent_c, *, top_k: int, width: int):
    """Quality-aware pruning of one turn: ``(keep_gc, order_gc)``.

    Of the candidates that go on (``going_on_gc``: well-formed, not yet a success), each parent's
    (``parent_c``) ``top_k`` best-scored, then of those the goal's ``width`` best-scored are kept;
    ``order_gc`` is a kept candidate's rank in the goal (0 = best), −1 for the others."""
    same_parent = parent_c[:, None] == parent_c[None, :]
    first = going_on_gc & (rank_in(score_gc, going_on_gc, same_parent) < top_k)
    everyone = jnp.ones(same_parent.shape, bool)
    order = rank_in(score_gc, first, everyone)
    keep = first & (order < width)
    return keep, jnp.where(keep, order, -1)


def next_parents(order_gc: jax.Array, width: int) -> tuple[jax.Array, jax.Array]:
    """``(src_gw, live_gw)``: the candidate that becomes live dialogue j of each goal (0 where
    none) and whether there is one."""
    g, c = order_gc.shape
    rows = jnp.broadcast_to(jnp.arange(g)[:, None], (g, c))
    src = jnp.zeros((g, width), jnp.int32).at[rows, jnp.where(order_gc >= 0, order_gc, width)].set(
        jnp.broadcast_to(jnp.arange(c, dtype=jnp.int32), (g, c)), mode="drop")
    live = jnp.zeros((g, width), bool).at[rows, jnp.where(order_gc >= 0, order_gc, width)].set(True, mode="drop")
    return src, live


def row_width(rules, max_turns: int) -> int:
    """Columns of a dialogue row: ``max_turns`` turns and replies at their longest."""
    return max_turns * (rules.turn_tokens + rules.observation_len)


def max_target_calls(*, max_turns: int, init_branches: int, branch: int, width: int, top_k: int) -> int:
    """The most target calls one goal's tree can make (every turn well-formed, no success)."""
    calls, parents = 0, 1
    for t in range(max_turns):
        children = init_branches if t == 0 else parents * branch
        calls += children
        parents = min(min(children, (1 if t == 0 else parents) * top_k), width)
    return calls


def dialogue_tree_rollout(attacker, target, rules, prompt_bp, prompt_valid_bp, rng, sampling: SamplingConfig, *,
                          max_turns: int, init_branches: int, branch: int, width: int, top_k: int,
                          pad_id: int) -> DialogueTree:
    """The program of the module docstring for B goals (jittable). ``attacker`` and ``target``
    are models (``nnx.merge`` of a graphdef and parameters); ``rules`` an ``AttackRules``."""
    b, p = prompt_bp.shape
    c = width * branch
    k = b * c
    w = row_width(rules, max_turns)
    if p + w > attacker.max_len:
        raise ValueError(f"dialogue_tree: the goal ({p} tokens) + max_turns × (turn + reply) = {w} tokens exceed the "
                         f"attacker's model.max_len={attacker.max_len}; raise model.max_len or lower max_turns")
    slots = engine.extend(attacker, engine.init_slots(attacker, b, p + w), prompt_bp, prompt_valid_bp)
    slots = engine.repeat(slots, c)
    transcript = Transcript.empty(k, w, pad_id, wide(attacker.config.dtype))
    prompt_kp = repeat_rows(prompt_bp, c)
    attack = dataclasses.replace(sampling, max_new_tokens=rules.turn_tokens)
    answer = SamplingConfig(max_new_tokens=rules.reply_tokens, eos_id=sampling.eos_id, pad_id=pad_id, temperature=0.0)
    target_width = 1 + rules.turn_tokens + rules.reply_tokens
    live_gc = jnp.broadcast_to(jnp.arange(c) < init_branches, (b, c))
    slot_parent = jnp.arange(c) // branch
    leaves, calls, malformed = [], jnp.zeros((b,), jnp.int32), jnp.zeros((b,), jnp.int32)
    for t in range(max_turns):
        last = t == max_turns - 1
        live_k = live_gc.reshape(k)
        gen, slots = engine.generate(attacker, slots, jax.random.fold_in(rng, t), attack, active_s=live_k,
                                     stop_sequences=rules.stop_sequences, commit_last=not last)
        turn_valid = gen.mask_sn > 0
        transcript = transcript.append(gen.tokens_sn, turn_valid, t, gen.logp_sn)
        ok_k = live_k & rules.check_turn(prompt_kp, gen.tokens_sn, turn_valid)
        asked, asked_valid = rules.target_prompt(gen.tokens_sn, turn_valid)
        target_slots = engine.extend(target, engine.init_slots(target, k, target_width), asked,
                                     asked_valid & ok_k[:, None])
        reply, _ = engine.generate(target, target_slots, jax.random.fold_in(rng, TARGET_SEED + t), answer,
                                   active_s=ok_k, commit_last=False)
        reply_valid = reply.mask_sn > 0
        score_k = jnp.where(ok_k, rules.score(prompt_kp, reply.tokens_sn, reply_valid), 0.0)
        success_k = ok_k & (score_k >= 1.0)
        obs, obs_valid = rules.observation(reply.tokens_sn, reply_valid)
        transcript = transcript.append(obs, obs_valid & ok_k[:, None], t)
        if not last:
            slots = engine.extend(attacker, slots, obs, obs_valid & ok_k[:, None])
        going_on = (ok_k & ~success_k).reshape(b, c)
        parent = jnp.zeros((c,), jnp.int32) if t == 0 else slot_parent
        if last:
            keep, order = jnp.zeros_like(going_on), jnp.full((b, c), -1, jnp.int32)
        else:
            keep, order = select_survivors(score_k.reshape(b, c), going_on, parent, top_k=top_k, width=width)
        ended_k = live_k & ~keep.reshape(k)
        leaves.append((transcript, ended_k, success_k & ended_k, t + 1))
        calls += ok_k.reshape(b, c).sum(axis=1, dtype=jnp.int32)
        malformed += (live_k & ~ok_k).reshape(b, c).sum(axis=1, dtype=jnp.int32)
        if not last:
            src_gw, live_gw = next_parents(order, width)
            src_k = (jnp.arange(b)[:, None] * c + src_gw[:, slot_parent]).reshape(k)
            slots = engine.fork(slots, src_k, jnp.arange(k))
            transcript = jax.tree.map(lambda x: x[src_k], transcript)
            live_gc = live_gw[:, slot_parent]

    def rows(x_tk):  # [T, B·C, …] → [B·T·C, …]: goal-major, then turn, then slot
        x = x_tk.reshape(max_turns, b, c, *x_tk.shape[2:])
        return jnp.moveaxis(x, 0, 1).reshape(b * max_turns * c, *x_tk.shape[2:])

    leaf = rows(jnp.stack([e for _, e, _, _ in leaves]))
    field = lambda name: rows(jnp.stack([getattr(tr, name) for tr, _, _, _ in leaves]))
    return DialogueTree(
        tokens_rw=jnp.where(leaf[:, None], field("tokens_kt"), pad_id),
        generated_rw=jnp.where(leaf[:, None], field("generated_kt"), 0.0),
        logp_rw=jnp.where(leaf[:, None], field("logp_kt"), 0.0),
        turn_rw=jnp.where(leaf[:, None], field("turn_kt"), -1),
        leaf_r=leaf.astype(jnp.float32),
        success_r=rows(jnp.stack([s for _, _, s, _ in leaves])).astype(jnp.float32),
        turns_r=jnp.where(leaf, rows(jnp.stack([jnp.full((k,), n, jnp.int32) for _, _, _, n in leaves])), 0),
        calls_b=calls, malformed_b=malformed)


def tree_batch(data: dict, tree: DialogueTree, rows_per_goal: int, step) -> tuple[Batch, dict]:
    """The leaves as a Batch (module docstring) and the rollout's metrics: over dialogues (leaves)
    ``reward_mean`` / ``accuracy`` (success rate), ``response_length`` (attacker tokens),
    ``dialogue_turns``; per goal ``goal_success`` (a goal with a successful dialogue),
    ``dialogues``, ``target_calls``; ``malformed_frac`` (attacker turns pruned by format ÷ turns)."""
    n = tree.leaf_r.shape[0]
    goals = n // rows_per_goal
    batch = Batch(
        prompt_bp=repeat_rows(data["prompt_bp"], rows_per_goal),
        prompt_valid_bp=repeat_rows(data["prompt_valid_bp"], rows_per_goal),
        response_bt=tree.tokens_rw,
        mask_bt=tree.generated_rw.astype(jnp.float32),
        reward_b=tree.success_r,
        group_b=jnp.arange(n, dtype=jnp.int32) // rows_per_goal,
        behavior_logp_bt=tree.logp_rw.astype(jnp.float32),
        version_b=jnp.full((n,), step, jnp.int32),
        aux={TURN_FIELD: tree.turn_rw, LEAF_FIELD: tree.leaf_r},
        group_size=rows_per_goal,
    )
    leaves = jnp.maximum(tree.leaf_r.sum(), 1.0)
    per_goal = lambda x: x.reshape(goals, rows_per_goal).sum(axis=1)
    turns = tree.turns_r.sum()
    metrics = {
        "reward_mean": tree.success_r.sum() / leaves,
        "accuracy": tree.success_r.sum() / leaves,
        "response_length": batch.mask_bt.sum() / leaves,
        "dialogue_turns": turns / leaves,
        "goal_success": (per_goal(tree.success_r) > 0).mean(dtype=jnp.float32),
        "dialogues": per_goal(tree.leaf_r).mean(),
        "target_calls": tree.calls_b.mean(dtype=jnp.float32),
        "malformed_frac": tree.malformed_b.sum() / jnp.maximum(tree.calls_b.sum() + tree.malformed_b.sum(), 1),
        "reward_finite": jnp.isfinite(tree.success_r).all(),
    }
    return batch, metrics


def attack_rules_of(task):
    """The dialogue rules of ``task``: ``attack_rules(tokenizer)`` in ``polrl.tasks.<task.name>``."""
    try:
        module = importlib.import_module(f"polrl.tasks.{task.name}")
    except ImportError:
        module = None
    make = getattr(module, "attack_rules", None)
    if not callable(make):
        raise ValueError(f"dialogue_tree: task {task.name!r} defines no attack_rules (polrl.tasks.{task.name}."
                         f"attack_rules(tokenizer)); use a red-teaming task such as 'target_says'")
    return make(task.tokenizer)


def dialogue_tree(ctx: Context, *, target: str = "target", max_turns: int = 3, branch: int = 4, width: int = 4,
                  top_k: int | None = None, init_branches: int | None = None) -> Collector:
    """Dialogue trees against the frozen model ``target`` (module docstring).

    Args:
      target: the name of the target model (``config.models``; or "reference" / "policy").
      max_turns: T, attacker turns per dialogue at most.
      branch: n, the children of every live dialogue at each turn.
      width: W, live dialogues per goal at most after a turn.
      top_k: children of one parent kept at most (default ``branch``: no per-parent limit).
      init_branches: children of the goal at turn 0 (default ``branch``), at most W·n.

    Rows per goal: T·W·n (``group_size``); the rollout's sampling options other than the budget
    are the run's (``ctx.sampling``); the turn budget and stop sequences are the task's rules.
    """
    check_named_model(ctx, target, "collector_kwargs.target")
    top_k = branch if top_k is None else top_k
    init_branches = branch if init_branches is None else init_branches
    for name, value in (("max_turns", max_turns), ("branch", branch), ("width", width), ("top_k", top_k),
                        ("init_branches", init_branches)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"dialogue_tree: collector_kwargs.{name}={value!r} must be an int >= 1")
    if init_branches > width * branch:
        raise ValueError(f"dialogue_tree: collector_kwargs.init_branches={init_branches} exceeds width × branch = "
                         f"{width * branch} slots per goal; lower it or raise width")
    rules = attack_rules_of(ctx.task)
    per_goal = max_turns * width * branch
    w = row_width(rules, max_turns)
    merge = lambda graphdef, params: nnx.merge(graphdef, sharding.reshard_for_rollout(params))

    def collect(cstate, state, data, rng):
        attacker = merge(ctx.graphdef, state.params)
        victim = merge(*named_model(ctx, state, target, "dialogue_tree"))
        prompt_bp, valid_bp = sharding.constrain_batch((data["prompt_bp"], data["prompt_valid_bp"]), rollout=True)
        tree = dialogue_tree_rollout(attacker, victim, rules, prompt_bp, valid_bp, rng, ctx.sampling,
                                     max_turns=max_turns, init_branches=init_branches, branch=branch, width=width,
                                     top_k=top_k, pad_id=ctx.pad_id)
        batch, metrics = tree_batch(data, tree, per_goal, state.step)
        return batch, cstate, metrics

    def example(prompts):
        f32, i32 = jnp.float32, jnp.int32
        return shapes(prompts * per_goal, ctx.task.max_prompt_len, w, per_goal, reward_b=f32, group_b=i32,
                      behavior_logp_bt=f32, version_b=i32, aux={TURN_FIELD: ((w,), i32), LEAF_FIELD: ((), f32)})

    return Collector(init=lambda prompts: (), collect=collect, example=example, needs=reads_reference(target))

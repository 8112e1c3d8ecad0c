"""TreePO's tree rollouts: segment-wise sampling that forks paths where they are uncertain.

"TreePO: Bridging the Gap of Policy Optimization and Efficacy and Inference Efficiency with
Heuristic Tree-based Modeling" (Li et al. 2025, arXiv 2508.17445), §2.2. Each prompt grows a
tree of at most L leaves (the static leaf budget, one Batch row each). Decoding runs in
segments of ``segment_len`` = l tokens, D = ⌈N / l⌉ of them (N = the rollout's
``max_new_tokens``); before segment d (d = 0 … D−1) the tree may hold

    W_d = min(init_branches · branching^d, L)                       paths,

the paper's N-ary budget N^d (``branching`` = N) with its initial divergence. The program, over
one KV cache (``polrl.rollout.engine``):

    prefill every prompt once (a root slot per prompt)
    for d in 0 … D−1:
        boundary: fill free leaf slots up to W_d active paths —
          forks of active paths (``engine.fork``: the copy shares the prefix's cache and
          tokens), allotted round-robin over the active paths in priority order;
          with no active path left, forks of the root (fallback)
        segment: ``engine.generate`` ≤ l tokens in the active paths; a path that emits EOS
          (or reaches N tokens) ends: early termination, it is a leaf

Priorities (``branch_on``): "uniform" — the paper's even budget transfer (slot order); or
"uncertainty" — the paths whose last segment had the highest mean surprise −log π_T (the
sampler's log-probs, a Monte-Carlo estimate of the local entropy; the paper's §4.4 steers
branching with the same log-probs) branch first.

Randomness: one draw ``u = uniform(rng, (N, L·B))`` shaped like the flat ``generate``'s; the
path in leaf slot s draws its token t with ``u[t, s]`` (each segment passes its slice as
``uniform_ns``). With ``init_branches = L`` every path leaves the root at once and nothing
ever forks: the rollout draws exactly the samples of ``polrl.rollout.sample(…, num_samples=L)``
with the same rng. Until the tree is L wide, a segment decodes only W_d paths per prompt (the
active ones gathered into a smaller slot block), so shared prefixes are decoded once; from then
on a segment runs all L·B slots in lockstep, finished ones included (as the flat ``generate``
does), until every path of the batch has ended.

Rows: leaf slot k·L + j is row k·L + j (prompt k): the whole path's tokens and the sampler's
log-probs (a shared prefix appears in every row that descends from it). The tree is in
``aux["tree_node_bd"]`` int32 [B, D]: entry d names the row's node at depth d + 1 (the path's
segment d; −1 after the leaf's end) by the leaf j ∈ [0, L) of the prompt whose slot decoded
it, so two rows of one group share their ancestor at depth d + 1 iff their entries d are
equal (depth 0, the prompt, is ``group_b``). A path restarted from the root at depth d decodes
at most D − d segments.

INFERRED (the paper does not fix them): fallback restarts from the root (the paper forks a
random segment boundary of a finished path, which needs that path's intermediate cache); the
priority order is a deterministic rank (the paper samples budgets from a softmax of log-probs
at temperature 2); early stopping is EOS only (the paper also prunes repetitive segments).
"""
from __future__ import annotations

import dataclasses
import math

import flax
import jax
import jax.numpy as jnp
from flax import nnx

from polrl import sharding
from polrl.collectors.context import Context, group_rows, repeat_rows, shapes
from polrl.collectors.group_samples import device_reward, rollout_metrics
from polrl.core import Collector
from polrl.models.layers import wide
from polrl.rollout import SamplingConfig, engine

FIELD = "tree_node_bd"
BRANCH_ON = ("uniform", "uncertainty")


def widths(num_segments: int, leaves: int, init_branches: int, branching: int) -> tuple[int, ...]:
    """W_d = min(init_branches · branching^d, leaves) for d = 0 … num_segments − 1."""
    return tuple(min(init_branches * branching ** d, leaves) for d in range(num_segments))


def check_tree(max_new_tokens: int, *, leaves: int, segment_len: int, init_branches: int, branching: int) -> None:
    """Errors naming the field when the tree cannot be built or cannot reach ``leaves`` paths."""
    checks = [("leaves", leaves, leaves >= 1, "an int >= 1"),
              ("segment_len", segment_len, 1 <= segment_len <= max_new_tokens,
               f"an int in [1, rollout.max_new_tokens={max_new_tokens}]"),
              ("init_branches", init_branches, 1 <= init_branches <= leaves, f"an int in [1, leaves={leaves}]"),
              ("branching", branching, branching >= 1, "an int >= 1")]
    for field, value, ok, expected in checks:
        if not ok:
            raise ValueError(f"tree: {field}={value!r} must be {expected}")
    d = math.ceil(max_new_tokens / segment_len)
    reach = widths(d, leaves, init_branches, branching)[-1]
    if reach < leaves:
        raise ValueError(f"tree: {d} segments of segment_len={segment_len} tokens with init_branches={init_branches} "
                         f"and branching={branching} reach {reach} of leaves={leaves} paths; raise branching or "
                         f"init_branches, or lower segment_len")


@flax.struct.dataclass
class TreeRollout:
    """What ``tree_rollout`` returns for B prompts × L leaves (rows k·L + j), N tokens each.

    tokens_bn, logp_bn, mask_bn: the paths (as ``engine.Generation``); node_bd: the tree, each
    node named by the leaf slot k·L + j that decoded it (the collector keeps j); sampled: tokens
    decoded (shared prefixes once); row_steps: decode forward rows run (Σ over segments of the
    slots in the block × decode steps); fallbacks: paths restarted from the root after depth 0.
    """

    tokens_bn: jax.Array
    logp_bn: jax.Array
    mask_bn: jax.Array
    node_bd: jax.Array
    sampled: jax.Array
    row_steps: jax.Array
    fallbacks: jax.Array


def allot_forks(active_pl: jax.Array, used_pl: jax.Array, surprise_pl: jax.Array, width: int,
                branch_on: str) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Which free leaf slot copies which path, per prompt (rows of the [P, L] inputs).

    A prompt with a active paths and f free slots fills n = min(f, max(width − a, 0)) free
    slots (in slot order); fork j copies the active path of rank j mod a, ranks by priority
    (``branch_on``: slot order, or highest ``surprise`` first, ties by slot order). With a = 0
    it fills n = min(f, width) slots from the root. Returns (take_pl, src_pl, from_root_p):
    free slots that fork, the slot (within the prompt) each copies, and whether the prompt's
    forks copy its root.
    """
    if branch_on not in BRANCH_ON:
        raise ValueError(f"tree: branch_on={branch_on!r}; use one of {BRANCH_ON}")
    a = active_pl.sum(axis=1, dtype=jnp.int32)
    free_pl = ~used_pl
    f = free_pl.sum(axis=1, dtype=jnp.int32)
    from_root = a == 0
    n = jnp.where(from_root, jnp.minimum(f, width), jnp.minimum(f, jnp.maximum(width - a, 0)))
    key = jnp.where(active_pl, -surprise_pl if branch_on == "uncertainty" else 0.0, jnp.inf)
    order_pl = jnp.argsort(key, axis=1, stable=True)
    rank_pl = jnp.cumsum(free_pl, axis=1, dtype=jnp.int32) - 1
    take_pl = free_pl & (rank_pl < n[:, None])
    src_pl = jnp.take_along_axis(order_pl, rank_pl % jnp.maximum(a, 1)[:, None], axis=1)
    return take_pl, src_pl.astype(jnp.int32), from_root


class _Tree(flax.struct.PyTreeNode):
    slots: engine.Slots     # L·B leaf slots
    tokens: jax.Array       # [S, N]
    logp: jax.Array
    mask: jax.Array
    offset: jax.Array       # [S] tokens so far
    active: jax.Array       # [S] may decode the next segment
    used: jax.Array         # [S] holds a path
    surprise: jax.Array     # [S] mean −log π of its last segment
    node: jax.Array         # [S, D]
    sampled: jax.Array
    row_steps: jax.Array
    fallbacks: jax.Array


def _boundary(tree: _Tree, roots: engine.Slots, depth, width: int, leaves: int, branch_on: str) -> _Tree:
    """Forks free leaf slots (``allot_forks``) before segment ``depth`` of ``width`` paths per
    prompt (at depth 0 every path forks the root; later root forks are fallbacks)."""
    s = tree.offset.shape[0]
    p = s // leaves
    view = lambda x: x.reshape(p, leaves)
    take_pl, src_pl, from_root = allot_forks(view(tree.active), view(tree.used), view(tree.surprise), width, branch_on)
    slot_ids = jnp.arange(s, dtype=jnp.int32)
    prompt_s = slot_ids // leaves
    take = take_pl.reshape(-1)
    root = take & from_root[prompt_s]
    src = jnp.where(take & ~root, src_pl.reshape(-1) + prompt_s * leaves, slot_ids)
    # Copies of the cache only where a boundary forks (none once the tree is full).
    slots = jax.lax.cond((take & ~root).any(), lambda x: engine.fork(x, src, jnp.where(take & ~root, slot_ids, s)),
                         lambda x: x, tree.slots)  # destination s: dropped
    slots = jax.lax.cond(root.any(), lambda x: engine.place(x, jnp.where(root, slot_ids, s), engine.select(roots, prompt_s)),
                         lambda x: x, slots)
    copy = lambda x, fresh: jnp.where(root.reshape((-1,) + (1,) * (x.ndim - 1)), fresh, x[src])
    return tree.replace(
        slots=slots,
        tokens=copy(tree.tokens, 0), logp=copy(tree.logp, 0.0), mask=copy(tree.mask, 0.0),
        offset=copy(tree.offset, 0), surprise=copy(tree.surprise, 0.0), node=copy(tree.node, -1),
        active=tree.active | take, used=tree.used | take,
        fallbacks=tree.fallbacks + jnp.where(depth > 0, root.sum(dtype=jnp.int32), 0),
    )


def _segment(model, tree: _Tree, width: int, leaves: int, uniform_sn: jax.Array,
             config: SamplingConfig) -> _Tree:
    """Decodes ≤ l tokens in the active paths; ``width`` < L decodes a block of ``width`` slots
    per prompt (the active ones first) instead of all L."""
    s, n = tree.tokens.shape
    l = config.max_new_tokens
    if width < leaves:
        p = s // leaves
        order = jnp.argsort(~tree.active.reshape(p, leaves), axis=1, stable=True)[:, :width]
        ids = (order + jnp.arange(p, dtype=jnp.int32)[:, None] * leaves).reshape(-1).astype(jnp.int32)
        block = engine.select(tree.slots, ids)
    else:
        ids = jnp.arange(s, dtype=jnp.int32)
        block = tree.slots
    offset, active = tree.offset[ids], tree.active[ids]
    cols = offset[:, None] + jnp.arange(l, dtype=jnp.int32)
    uniform = jnp.take_along_axis(uniform_sn[ids], jnp.minimum(cols, n - 1), axis=1).T
    gen, block = engine.generate(model, block, None, config, active_s=active,
                                 max_new_s=jnp.clip(n - offset, 0, l), uniform_ns=uniform)
    slots = block if width >= leaves else engine.place(tree.slots, ids, block)
    put = lambda buf, x: buf.at[ids[:, None], cols].set(x.astype(buf.dtype), mode="drop")
    offset = offset + gen.length_s
    surprise = -gen.logp_sn.sum(axis=1) / jnp.maximum(gen.length_s, 1)
    going = active & (gen.finish_s == engine.LENGTH) & (offset < n)
    return tree.replace(
        slots=slots, tokens=put(tree.tokens, gen.tokens_sn), logp=put(tree.logp, gen.logp_sn),
        mask=put(tree.mask, gen.mask_sn), offset=tree.offset.at[ids].set(offset),
        active=tree.active.at[ids].set(going),
        surprise=tree.surprise.at[ids].set(jnp.where(active, surprise, tree.surprise[ids])),
        node=tree.node.at[ids, jnp.where(active, tree.offset[ids] // l, tree.node.shape[1])].set(ids, mode="drop"),
        sampled=tree.sampled + gen.length_s.sum(dtype=jnp.int32),
        row_steps=tree.row_steps + ids.shape[0] * gen.length_s.max().astype(jnp.int32),
    )


def tree_rollout(model, prompt_bp: jax.Array, prompt_valid_bp: jax.Array, rng: jax.Array,
                 config: SamplingConfig, *, leaves: int, segment_len: int, init_branches: int,
                 branching: int, branch_on: str = "uniform") -> TreeRollout:
    """The tree program of the module docstring for B left-padded prompts. Pure and jittable."""
    check_tree(config.max_new_tokens, leaves=leaves, segment_len=segment_len, init_branches=init_branches,
               branching=branching)
    b, p = prompt_bp.shape
    n, s = config.max_new_tokens, b * leaves
    d = math.ceil(n / segment_len)
    plan = widths(d, leaves, init_branches, branching)
    segment_config = dataclasses.replace(config, max_new_tokens=segment_len)
    uniform_sn = jax.random.uniform(rng, (n, s)).T
    roots = engine.extend(model, engine.init_slots(model, b, p + n), prompt_bp, prompt_valid_bp)
    real = wide(model.config.dtype)
    zero = jnp.zeros((), jnp.int32)
    tree = _Tree(slots=engine.init_slots(model, s, p + n), tokens=jnp.full((s, n), config.pad_id, jnp.int32),
                 logp=jnp.zeros((s, n), real), mask=jnp.zeros((s, n), real), offset=jnp.zeros((s,), jnp.int32),
                 active=jnp.zeros((s,), bool), used=jnp.zeros((s,), bool), surprise=jnp.zeros((s,), real),
                 node=jnp.full((s, d), -1, jnp.int32), sampled=zero, row_steps=zero, fallbacks=zero)

    def step(depth, tree, width):
        tree = _boundary(tree, roots, depth, width, leaves, branch_on)
        return _segment(model, tree, width, leaves, uniform_sn, segment_config)

    full = plan.index(leaves)
    for depth in range(full):  # the tree grows: blocks of W_d < L paths per prompt
        tree = step(depth, tree, plan[depth])
    tree = jax.lax.fori_loop(full, d, lambda depth, t: step(depth, t, leaves), tree)
    return TreeRollout(tokens_bn=tree.tokens, logp_bn=tree.logp, mask_bn=tree.mask, node_bd=tree.node,
                       sampled=tree.sampled, row_steps=tree.row_steps, fallbacks=tree.fallbacks)


def tree(ctx: Context, *, segment_len: int, leaves: int | None = None, init_branches: int = 2,
         branching: int = 2, branch_on: str = "uniform") -> Collector:
    """TreePO's tree rollouts (module docstring): L = ``leaves`` (default the run's
    ``rollout.group_size``) rows per prompt, one per leaf, scored by the task's device reward.

    Rows ``[k·L, (k+1)·L)`` are prompt k's leaves (``group_b`` = k, ``group_size`` = L), with
    the sampler's log-probs (``behavior_logp_bt``), ``version_b`` = the policy's step and the
    tree in ``aux["tree_node_bd"]``. Metrics: those of ``group_samples`` (``response_tokens``
    counts every row's tokens, shared prefixes once per row) and ``sampled_tokens`` (tokens
    decoded), ``tree/row_steps`` (decode forward rows run), ``tree/fallback_paths``,
    ``tree/mean_depth`` (segments per leaf).
    """
    g = ctx.group_size if leaves is None else leaves
    n = ctx.sampling.max_new_tokens
    check_tree(n, leaves=g, segment_len=segment_len, init_branches=init_branches, branching=branching)
    if branch_on not in BRANCH_ON:
        raise ValueError(f"tree: branch_on={branch_on!r}; use one of {BRANCH_ON}")
    if ctx.task.device_reward is None:
        raise ValueError(f"tree: task {ctx.task.name!r} has only a host reward; tree rollouts are scored inside "
                         f"the compiled step and need a task with a device reward")
    depth = math.ceil(n / segment_len)

    def collect(cstate, state, data, rng):
        model = nnx.merge(ctx.graphdef, sharding.reshard_for_rollout(state.params))
        prompt_bp, valid_bp = sharding.constrain_batch((data["prompt_bp"], data["prompt_valid_bp"]), rollout=True)
        out = tree_rollout(model, prompt_bp, valid_bp, rng, ctx.sampling, leaves=g, segment_len=segment_len,
                           init_branches=init_branches, branching=branching, branch_on=branch_on)
        batch = group_rows(data, out.tokens_bn, out.mask_bn, out.logp_bn, g, state.step,
                           aux={FIELD: jnp.where(out.node_bd >= 0, out.node_bd % g, -1)})
        answers = repeat_rows(data["answer_ba"], g), repeat_rows(data["answer_valid_ba"], g)
        batch = batch.replace(reward_b=device_reward(ctx, batch.response_bt, batch.mask_bt, *answers))
        metrics = {**rollout_metrics(batch), "sampled_tokens": out.sampled.astype(jnp.float32),
                   "tree/row_steps": out.row_steps.astype(jnp.float32),
                   "tree/fallback_paths": out.fallbacks.astype(jnp.float32),
                   "tree/mean_depth": (out.node_bd >= 0).sum(axis=1).mean(dtype=jnp.float32)}
        return batch, cstate, metrics

    def example(prompts):
        f32, i32 = jnp.float32, jnp.int32
        return shapes(prompts * g, ctx.task.max_prompt_len, n, g, reward_b=f32, group_b=i32,
                      behavior_logp_bt=f32, version_b=i32, aux={FIELD: ((depth,), i32)})

    return Collector(init=lambda prompts: (), collect=collect, example=example)

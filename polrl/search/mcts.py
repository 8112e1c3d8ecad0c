"""Monte-Carlo tree search over reasoning steps, as one compiled program over the rollout engine.

"Monte Carlo Tree Search Boosts Reasoning via Iterative Preference Learning" (Xie et al. 2024,
arXiv 2405.00451), §2: the tree's nodes are partial responses that end at a step boundary, its
edges the policy's steps. For each of B prompts the program runs S simulations, all prompts in
lockstep; simulation i:

1. Selection — from the root, while the node is expanded and not terminal, move to its child

       c* = argmax_c  Q(c) + c_puct · p(c) · √N(s) / (1 + N(c))                       (PUCT)

   (s the node, N visit counts, ties to the first child), with the step's prior

       p(c) = exp( Σ_{t ∈ step(c)} log π_T(y_t | ·) / |step(c)|^λ ),

   the sampler's log-probs length-normalised with exponent λ (``length_penalty``; the paper's
   code uses 1.25). The walk ends at a leaf ℓ.
2. Expansion — if ℓ is not terminal and its depth is < D (``max_depth``), k (``branching``)
   children are added: the leaf's engine slot is forked into k slots and each ``generate``s one
   step, stopping after the step separator, at EOS, after ``step_tokens`` tokens or at the
   response budget N. A child is terminal when its step ends with EOS or its response reaches N
   tokens.
3. Evaluation — each new child c is evaluated once: its slot is continued by the policy to the
   end (EOS or N tokens) and the completed response y scored,

       v(c) = (1 − w) · outcome(y) + w · prefix_score(c)                   (w = ``prefix_weight``),

   ``outcome`` the verifier and ``prefix_score`` an optional process reward model's score of the
   partial response (``prm_prefix_score``: ``polrl.search.scoring.prefix_scores``). A leaf that is not expanded is
   evaluated again instead: a terminal leaf by its own v (its response is complete), a leaf at
   depth D by a fresh rollout.
4. Backup — a new child starts at N(c) = 1, W(c) = v(c); the leaf and each of its ancestors get
   N += n and W += Σ v over the simulation's n evaluations (k after an expansion, else 1), so
   Q(s) = W(s) / N(s) is the mean of every evaluation in the subtree of s.

Nodes per prompt: M = 1 + S·k (node 0 the root; an expansion appends k consecutive nodes).
Every node keeps its sequence in engine slot b·M + m (B·M slots of P + N cache columns), so a
later expansion forks it without recomputing the prefix.

Randomness: simulation i draws u_step = uniform(k_s, (step_tokens, B·k)) and
u_roll = uniform(k_r, (N, B·k)) with (k_s, k_r) = split(fold_in(rng, i)); row b·k + j is child
j of prompt b (a re-evaluated leaf uses row b·k), token t of its step draws u_step[t, row] and
token t of its rollout u_roll[t, row].

INFERRED (the paper is silent or differs): the evaluation is a policy rollout scored by the
verifier (the paper blends outcome correctness with the model's self-evaluation, and its code
backs up V(s) = Σ_c max(1, N(c)) Q(c) / Σ_c max(1, N(c)) with Q(c) = r(c) + γ V(c)); every
expanded child is evaluated at once, so that each child has a Q for step-level pairs; a leaf at
the depth limit is re-evaluated by a fresh rollout.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import flax
import jax
import jax.numpy as jnp

from polrl.models.layers import wide
from polrl.rollout import SamplingConfig, engine
from polrl.search.scoring import prefix_scores


@flax.struct.dataclass
class Tree:
    """The search trees of B prompts, M = 1 + S·k nodes each (node 0 the root; unused nodes have
    parent −1 and no visits). Per node: ``parent_bm`` (−1 for the root), ``depth_bm``,
    ``child_bm`` (the first of its k consecutive children, −1 while unexpanded),
    ``tokens_bmn`` / ``logp_bmn`` (its whole response so far — its ancestors' steps, then its own —
    and the sampler's log-probs, pad / 0 after), ``start_bm`` / ``length_bm`` (the columns
    [start, length) of its own step), ``prior_bm`` (p), ``terminal_bm``, ``value_bm`` (its first
    evaluation v), ``visits_bm`` (N), ``total_bm`` (W); ``size_b`` nodes in use; ``sampled``
    tokens decoded (steps and rollouts)."""

    parent_bm: jax.Array
    depth_bm: jax.Array
    child_bm: jax.Array
    tokens_bmn: jax.Array
    logp_bmn: jax.Array
    start_bm: jax.Array
    length_bm: jax.Array
    prior_bm: jax.Array
    terminal_bm: jax.Array
    value_bm: jax.Array
    visits_bm: jax.Array
    total_bm: jax.Array
    size_b: jax.Array
    sampled: jax.Array

    @property
    def q_bm(self) -> jax.Array:
        """Q = W / N (0 for unvisited nodes)."""
        return self.total_bm / jnp.maximum(self.visits_bm, 1)


def check_search(max_new_tokens: int, *, simulations: int, branching: int, max_depth: int, step_tokens: int,
                 c_puct: float, length_penalty: float, prefix_weight: float, who: str = "mcts") -> None:
    """One-line errors naming the field when the search cannot run."""
    checks = [("simulations", simulations, isinstance(simulations, int) and simulations >= 1, "an int >= 1"),
              ("branching", branching, isinstance(branching, int) and branching >= 1, "an int >= 1"),
              ("max_depth", max_depth, isinstance(max_depth, int) and max_depth >= 1, "an int >= 1"),
              ("step_tokens", step_tokens, isinstance(step_tokens, int) and 1 <= step_tokens <= max_new_tokens,
               f"an int in [1, rollout.max_new_tokens={max_new_tokens}]"),
              ("c_puct", c_puct, c_puct >= 0, "a number >= 0"),
              ("length_penalty", length_penalty, length_penalty >= 0, "a number >= 0"),
              ("prefix_weight", prefix_weight, 0 <= prefix_weight <= 1, "a number in [0, 1]")]
    for field, value, ok, expected in checks:
        if not ok:
            raise ValueError(f"{who}: {field}={value!r} must be {expected}")


def _take(x_bm, idx_bj):
    """x_bm[b, idx_bj[b, j]] (indices clipped into range)."""
    return jnp.take_along_axis(x_bm, jnp.clip(idx_bj, 0, x_bm.shape[1] - 1), axis=1)


def _take_rows(x_bmn, idx_b1):
    """x_bmn[b, idx_b1[b, 0]] as [B, 1, N]."""
    return jnp.take_along_axis(x_bmn, idx_b1[:, :, None], axis=1)


def _write(base_bkn, cols_bkl, x_bkl, live_bkl):
    """``base_bkn`` with ``x_bkl`` written at columns ``cols_bkl`` where ``live_bkl`` (columns ≥ N dropped)."""
    cols = jnp.where(live_bkl, cols_bkl, base_bkn.shape[-1])
    return jax.vmap(jax.vmap(lambda r, c, v: r.at[c].set(v, mode="drop")))(base_bkn, cols, x_bkl.astype(base_bkn.dtype))


def _select(tree: Tree, c_puct: float, k: int, max_depth: int) -> jax.Array:
    """int32 [B]: the leaf each prompt's PUCT walk from the root ends at."""
    b = tree.size_b.shape[0]
    q, real = tree.q_bm, tree.total_bm.dtype

    def step(_, carry):
        node, done = carry
        first = _take(tree.child_bm, node[:, None])[:, 0]
        stop = done | (first < 0) | _take(tree.terminal_bm, node[:, None])[:, 0]
        kids = first[:, None] + jnp.arange(k, dtype=jnp.int32)
        n_parent = _take(tree.visits_bm, node[:, None]).astype(real)
        score = _take(q, kids) + c_puct * _take(tree.prior_bm, kids) * jnp.sqrt(n_parent) / (
            1 + _take(tree.visits_bm, kids).astype(real))
        best = first + jnp.argmax(score, axis=1).astype(jnp.int32)
        return jnp.where(stop, node, best), stop

    node, _ = jax.lax.fori_loop(0, max_depth, step, (jnp.zeros((b,), jnp.int32), jnp.zeros((b,), bool)))
    return node


def _simulate(model, tree: Tree, slots: engine.Slots, key, config: SamplingConfig, *, k: int, max_depth: int,
              step_tokens: int, c_puct: float, length_penalty: float, separator_id: int, outcome, prefix_score,
              prefix_weight: float):
    """One simulation (select → expand → evaluate → backup) for every prompt."""
    b, m, n = tree.tokens_bmn.shape
    real = tree.total_bm.dtype
    key_step, key_roll = jax.random.split(key)
    u_step = jax.random.uniform(key_step, (step_tokens, b * k), dtype=real)
    u_roll = jax.random.uniform(key_roll, (n, b * k), dtype=real)
    rows = jnp.arange(b, dtype=jnp.int32)[:, None]
    j = jnp.arange(k, dtype=jnp.int32)[None, :]
    col = jnp.arange(n, dtype=jnp.int32)
    leaf = _select(tree, c_puct, k, max_depth)[:, None]                           # [B, 1]
    leaf_len = _take(tree.length_bm, leaf)
    leaf_terminal = _take(tree.terminal_bm, leaf)
    expand = ~leaf_terminal & (_take(tree.depth_bm, leaf) < max_depth)          # [B, 1]
    new = tree.size_b[:, None] + j                                               # [B, k]

    # Expansion: k forks of the leaf's slot, one step each.
    dst = jnp.where(expand, rows * m + new, b * m).reshape(-1)                   # b·M: dropped
    slots = engine.fork(slots, jnp.broadcast_to(rows * m + leaf, (b, k)).reshape(-1), dst)
    step_config = dataclasses.replace(config, max_new_tokens=step_tokens)
    gen, block = engine.generate(model, engine.select(slots, jnp.minimum(dst, b * m - 1)), None, step_config,
                                 active_s=jnp.broadcast_to(expand, (b, k)).reshape(-1),
                                 max_new_s=jnp.broadcast_to(n - leaf_len, (b, k)).reshape(-1),
                                 stop_sequences=((separator_id,),), uniform_ns=u_step)
    slots = engine.place(slots, dst, block)
    step_len = gen.length_s.reshape(b, k)
    step_cols = leaf_len[:, :, None] + jnp.arange(step_tokens, dtype=jnp.int32)  # [B, k, L]
    write = lambda base, x: _write(base, step_cols, x.reshape(b, k, -1), gen.mask_sn.reshape(b, k, -1) > 0)
    parent_tokens = jnp.broadcast_to(_take_rows(tree.tokens_bmn, leaf), (b, k, n))
    parent_logp = jnp.broadcast_to(_take_rows(tree.logp_bmn, leaf), (b, k, n))
    kid_tokens, kid_logp = write(parent_tokens, gen.tokens_sn), write(parent_logp, gen.logp_sn)
    kid_len = leaf_len + step_len
    kid_terminal = (gen.finish_s.reshape(b, k) == engine.EOS) | (kid_len >= n)
    kid_prior = jnp.exp(gen.logp_sn.sum(axis=1).reshape(b, k).astype(real)
                        / jnp.maximum(step_len, 1).astype(real) ** length_penalty)

    # Evaluation: the new children, or the leaf again (row 0 of its prompt).
    again = ~expand & (j == 0)                                                  # [B, k]
    src = jnp.where(expand, new, leaf)
    src_tokens = jnp.where(expand[:, :, None], kid_tokens, parent_tokens)
    src_len = jnp.where(expand, kid_len, leaf_len)
    roll = (expand & ~kid_terminal) | (again & ~leaf_terminal)
    full_config = dataclasses.replace(config, max_new_tokens=n)
    out, _ = engine.generate(model, engine.select(slots, (rows * m + jnp.clip(src, 0, m - 1)).reshape(-1)), None,
                             full_config, active_s=roll.reshape(-1), max_new_s=(n - src_len).reshape(-1),
                             commit_last=False, uniform_ns=u_roll)
    roll_cols = src_len[:, :, None] + jnp.arange(n, dtype=jnp.int32)
    response = _write(src_tokens, roll_cols, out.tokens_sn.reshape(b, k, n), out.mask_sn.reshape(b, k, n) > 0)
    full_len = src_len + out.length_s.reshape(b, k)
    value = outcome(response, (col < full_len[:, :, None]).astype(real)).astype(real)
    if prefix_score is not None:
        prefix_mask = (col < src_len[:, :, None]).astype(real)
        value = (1 - prefix_weight) * value + prefix_weight * prefix_score(src_tokens, prefix_mask).astype(real)
    value = jnp.where(again & leaf_terminal, _take(tree.value_bm, leaf), value)
    counted = expand | again                                                    # [B, k]

    # Backup: the new children, then the leaf and its ancestors.
    put = lambda x, v: x.at[rows, jnp.where(expand, new, m)].set(v.astype(x.dtype), mode="drop")
    tree = tree.replace(
        parent_bm=put(tree.parent_bm, jnp.broadcast_to(leaf, (b, k))),
        depth_bm=put(tree.depth_bm, jnp.broadcast_to(_take(tree.depth_bm, leaf) + 1, (b, k))),
        child_bm=tree.child_bm.at[rows[:, 0], jnp.where(expand[:, 0], leaf[:, 0], m)].set(tree.size_b, mode="drop"),
        tokens_bmn=put(tree.tokens_bmn, kid_tokens), logp_bmn=put(tree.logp_bmn, kid_logp),
        start_bm=put(tree.start_bm, jnp.broadcast_to(leaf_len, (b, k))), length_bm=put(tree.length_bm, kid_len),
        prior_bm=put(tree.prior_bm, kid_prior), terminal_bm=put(tree.terminal_bm, kid_terminal),
        value_bm=put(tree.value_bm, value), visits_bm=put(tree.visits_bm, jnp.ones((b, k), jnp.int32)),
        total_bm=put(tree.total_bm, value),
        size_b=tree.size_b + jnp.where(expand[:, 0], k, 0),
        sampled=tree.sampled + jnp.sum(gen.length_s, dtype=jnp.int32) + jnp.sum(out.length_s, dtype=jnp.int32),
    )
    n_add, w_add = counted.sum(axis=1, dtype=jnp.int32), jnp.where(counted, value, 0).sum(axis=1)

    def up(_, carry):
        node, visits, total = carry
        live = node >= 0
        at = jnp.where(live, node, m)
        visits = visits.at[rows[:, 0], at].add(n_add, mode="drop")
        total = total.at[rows[:, 0], at].add(w_add, mode="drop")
        return jnp.where(live, _take(tree.parent_bm, node[:, None])[:, 0], -1), visits, total

    _, visits, total = jax.lax.fori_loop(0, max_depth + 1, up, (leaf[:, 0], tree.visits_bm, tree.total_bm))
    return tree.replace(visits_bm=visits, total_bm=total), slots


def mcts(model, prompt_bp: jax.Array, prompt_valid_bp: jax.Array, rng: jax.Array, config: SamplingConfig, *,
         outcome: Callable, separator_id: int, simulations: int, branching: int, max_depth: int, step_tokens: int,
         c_puct: float = 1.0, length_penalty: float = 1.25, prefix_score: Callable | None = None,
         prefix_weight: float = 0.0) -> Tree:
    """The search of the module docstring for B left-padded prompts; returns the trees. Pure and
    jittable (the simulations are a ``fori_loop``).

    ``config``: the sampling options, N = ``config.max_new_tokens`` tokens per response.
    ``outcome(response_bkn, mask_bkn) -> [B, k]``: the score of completed responses (row j of
    prompt b answers prompt b), e.g. the task's verifier against b's answer; ``prefix_score``
    (same signature, on partial responses) is blended in with weight ``prefix_weight``.
    """
    check_search(config.max_new_tokens, simulations=simulations, branching=branching, max_depth=max_depth,
                 step_tokens=step_tokens, c_puct=c_puct, length_penalty=length_penalty, prefix_weight=prefix_weight)
    if prefix_weight > 0 and prefix_score is None:
        raise ValueError(f"mcts: prefix_weight={prefix_weight} blends a prefix score in; pass prefix_score or set "
                         f"prefix_weight=0")
    b, p = prompt_bp.shape
    n, k = config.max_new_tokens, branching
    m = 1 + simulations * k
    real = wide(model.config.dtype)
    slots = engine.init_slots(model, b * m, p + n)
    slots = engine.extend(model, slots, prompt_bp, prompt_valid_bp, jnp.arange(b, dtype=jnp.int32) * m)
    zeros = lambda dtype: jnp.zeros((b, m), dtype)
    tree = Tree(parent_bm=jnp.full((b, m), -1, jnp.int32), depth_bm=zeros(jnp.int32),
                child_bm=jnp.full((b, m), -1, jnp.int32), tokens_bmn=jnp.full((b, m, n), config.pad_id, jnp.int32),
                logp_bmn=jnp.zeros((b, m, n), real), start_bm=zeros(jnp.int32), length_bm=zeros(jnp.int32),
                prior_bm=zeros(real).at[:, 0].set(1), terminal_bm=zeros(bool), value_bm=zeros(real),
                visits_bm=zeros(jnp.int32), total_bm=zeros(real), size_b=jnp.ones((b,), jnp.int32),
                sampled=jnp.zeros((), jnp.int32))
    options = dict(k=k, max_depth=max_depth, step_tokens=step_tokens, c_puct=c_puct, length_penalty=length_penalty,
                   separator_id=separator_id, outcome=outcome, prefix_score=prefix_score, prefix_weight=prefix_weight)

    def body(i, carry):
        return _simulate(model, *carry, jax.random.fold_in(rng, i), config, **options)

    tree, _ = jax.lax.fori_loop(0, simulations, body, (tree, slots))
    return tree


def prm_prefix_score(graphdef, params, prompt_bp: jax.Array, prompt_valid_bp: jax.Array) -> Callable:
    """``prefix_score`` for ``mcts``: a process reward model's p(x, y_{≤t}) after each partial
    response of prompt b's rows (``polrl.search.scoring.prefix_scores``; ``graphdef`` / ``params``
    a model with a value head)."""

    def score(tokens_bkn, mask_bkn):
        b, k, n = tokens_bkn.shape
        repeat = lambda x: jnp.repeat(x, k, axis=0)
        return prefix_scores(graphdef, params, repeat(prompt_bp), repeat(prompt_valid_bp), tokens_bkn.reshape(b * k, n),
                             mask_bkn.reshape(b * k, n)).reshape(b, k)

    return score

"""Step-level search guided by a process reward model: beam search, DVTS and (as a special case)
best-of-N, one program over the rollout engine.

Beam search over steps ("Scaling LLM Test-Time Compute Optimally can be More Effective than
Scaling Model Parameters", Snell et al., arXiv 2408.03314, §5.2; also "Can 1B LLM Surpass 405B
LLM? Rethinking Compute-Optimal Test-Time Scaling", Liu et al., arXiv 2502.06703, §2.2), with N
beams and beam width M: sample N first steps; score every prefix with the PRM; keep the N/M
best; expand each kept prefix with M sampled next steps (N prefixes again); repeat until every
beam has ended or a step limit (Snell et al.: 40 rounds); the N final candidates are judged by
(weighted) best-of-N (``polrl.search.best_of_n``).

DVTS, diverse verifier tree search (Beeching, Tunstall & Rush, "Scaling test-time compute with
open models", Hugging Face 2024; Liu et al. §2.2): split the N beams into N/M independent
subtrees of width M; each subtree is a beam search that keeps only its best prefix per round
and expands it with M next steps.

Both are one program over K subtrees of W slots each (N = K·W slots per prompt), each subtree
keeping its ``keep`` best prefixes per round:

    beam search      K = 1,   W = N, keep = N/M
    DVTS             K = N/M, W = M, keep = 1
    best-of-N        K = N,   W = 1, keep = 1   (N independent samples, scored step by step)

One round, for the S = B·N slots of B prompts (``engine``: generate, extend, fork):

    expand   every live slot draws one step: ``engine.generate`` until the step separator
             (``stop_sequences=((sep_id,),)``), EOS, ``step_len`` tokens or the response budget
             T = ``config.max_new_tokens``;
    score    the PRM's own slots (forked with the policy's) are extended with the step's tokens:
             p = σ(value head after the step's last token) (``polrl.search.scoring``), recorded
             as the slot's score after that step;
    finish   a slot ends when its step holds EOS, its response reaches T tokens, or the round
             is the last (``max_steps``); an ended slot is offered to the prompt's pool;
    select   in each subtree, the live slots ranked by their aggregated score (ties: slot order)
             and the best a = min(keep, live) kept; a kept prefix stays in its slot (its child
             0); every other slot of the subtree becomes a copy (``engine.fork``: no recompute)
             of a kept prefix, round-robin by rank, so the parent ranked r gets
             ⌊W/a⌋ + [r < W mod a] children and every round expands W steps per subtree.

The pool holds, per prompt, the N ended candidates with the highest aggregated score (an ended
candidate enters when it beats the pool's worst; ties keep the earlier one). Aggregated score
of a candidate with step scores p_1 … p_H (``aggregate``): "last" p_H, "min" min_h p_h, "mean"
(1/H) Σ_h p_h, "prod" Π_h p_h. The default is "last": Snell et al. (§5.1) score an answer by the
PRM's prediction at its last step (it beat min and product for their PRM), and Liu et al.'s
search ranks steps by the PRM's last score, while their evaluation reports PRM-Min, PRM-Last and
PRM-Avg, each with PRM-Max and PRM-Vote (weighted best-of-N) selection.

Expansion (``expand``): "sample" — the step is drawn from π_T; slot s draws response column t
with ``u[t, s]`` of ``uniform(rng, (T, B·N))``, the draw of the flat ``generate`` over B·N slots,
so best-of-N draws exactly ``polrl.rollout.sample(…, num_samples=N)`` with the same rng;
"top" — deterministic: child c of a prefix starts with the (c+1)-th most likely next token
under the policy and continues greedily to the step's end (with one-token steps, the M most
likely distinct next steps), for tests and ablations.

FLOPs (``SearchOutput``): each token a model forwards is counted once with the number of keys
it attends: a prompt of p tokens is prefilled once per prompt per model (p tokens, p(p+1)/2
keys); a step of k tokens after c real tokens costs k tokens and k·c + k(k+1)/2 keys, for the
policy and for the PRM; forks are free (a copied prefix is not recomputed). Then
FLOPs = ``transformer_forward_flops(config, tokens, keys / tokens)`` = 2·P_matmul·tokens +
4·L·H·e·keys per model (``search_flops``). Slots idle in the lockstep decode are not counted.

INFERRED (the papers leave them open): an ended beam leaves the search and its slot is refilled
by a copy of a kept prefix, so every round expands N steps while any beam lives (Hugging Face's
search-and-learn duplicates live beams to N likewise; Liu et al.'s beam search instead shrinks
the beam by one per ended beam and stops at N ended ones); ended beams of all
rounds compete for the N places of the pool by aggregated score; beams alive at the step limit
end there, unfinished, and enter the pool; pruning ranks prefixes by the same aggregate as the
final choice; a step longer than ``step_len`` tokens is cut and scored there (the next round
continues it); DVTS subtrees share the pool (their ended beams compete for its N places).
"""
from __future__ import annotations

import dataclasses

import flax
import jax
import jax.numpy as jnp
import numpy as np

from polrl.models.flops import transformer_forward_flops
from polrl.models.layers import wide
from polrl.rollout import SamplingConfig, engine

AGGREGATES = ("last", "min", "mean", "prod")
EXPANDS = ("sample", "top")


@flax.struct.dataclass
class SearchOutput:
    """The pool of N final candidates per prompt for B prompts (T = response budget, D = step limit).

    tokens_bnt int32 / mask_bnt float: the candidates' responses (pad / 0 after the last token);
    step_scores_bnd: the PRM's p after each step (0 past the last); steps_bn: steps taken;
    value_bn: the aggregated score (−inf for an empty place); source_bn: the slot (within the
    prompt, 0 … N−1) whose last step ended the candidate. Counts per prompt, float: tokens the
    policy forwarded (``policy_tokens_b``) and the keys they attended (``policy_keys_b``), the same
    for the PRM (``prm_tokens_b``, ``prm_keys_b``).
    """

    tokens_bnt: jax.Array
    mask_bnt: jax.Array
    step_scores_bnd: jax.Array
    steps_bn: jax.Array
    value_bn: jax.Array
    source_bn: jax.Array
    policy_tokens_b: jax.Array
    policy_keys_b: jax.Array
    prm_tokens_b: jax.Array
    prm_keys_b: jax.Array


def aggregate(step_scores_nd: jax.Array, steps_n: jax.Array, how: str) -> jax.Array:
    """The aggregated score of each row's first ``steps_n`` step scores (module docstring);
    −inf for a row with no step."""
    if how not in AGGREGATES:
        raise ValueError(f"search: aggregate={how!r}; use one of {AGGREGATES}")
    has = jnp.arange(step_scores_nd.shape[-1]) < steps_n[..., None]
    last = jnp.take_along_axis(step_scores_nd, jnp.maximum(steps_n - 1, 0)[..., None], axis=-1)[..., 0]
    value = {"last": lambda: last,
             "min": lambda: jnp.min(jnp.where(has, step_scores_nd, jnp.inf), axis=-1),
             "mean": lambda: jnp.sum(jnp.where(has, step_scores_nd, 0.0), axis=-1) / jnp.maximum(steps_n, 1),
             "prod": lambda: jnp.prod(jnp.where(has, step_scores_nd, 1.0), axis=-1)}[how]()
    return jnp.where(steps_n > 0, value, -jnp.inf)


def check_search(n: int, *, subtrees: int, keep: int, step_len: int, max_steps: int, max_new_tokens: int,
                 expand: str, aggregate: str, vocab_size: int) -> None:
    """One-line errors naming the argument when the search cannot be built."""
    if subtrees < 1 or n % subtrees:
        raise ValueError(f"search: subtrees={subtrees!r} must divide the budget n={n}; pick a divisor of n")
    width = n // subtrees
    checks = [("keep", keep, 1 <= keep <= width, f"an int in [1, n / subtrees = {width}]"),
              ("step_len", step_len, 1 <= step_len <= max_new_tokens,
               f"an int in [1, max_new_tokens={max_new_tokens}]"),
              ("max_steps", max_steps, max_steps >= 1, "an int >= 1"),
              ("expand", expand, expand in EXPANDS, f"one of {EXPANDS}"),
              ("aggregate", aggregate, aggregate in AGGREGATES, f"one of {AGGREGATES}")]
    for name, value, ok, expected in checks:
        if not ok:
            raise ValueError(f"search: {name}={value!r} must be {expected}")
    if expand == "top" and width > vocab_size:
        raise ValueError(f"search: expand='top' gives each slot of a subtree a distinct next token, but "
                         f"n / subtrees = {width} > vocab_size={vocab_size}; use expand='sample' or more subtrees")


def allot(alive_gw: jax.Array, value_gw: jax.Array, keep: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The selection of one round in each subtree (rows of the [G, W] inputs; module docstring).

    Returns (src_gw, child_gw, live_gw): the slot (within the subtree) each slot continues
    (itself for a kept prefix), its child index under that parent (0 for the kept prefix itself,
    then 1, 2, … for its copies) and whether the slot lives next round (none do in a subtree
    without a live prefix).
    """
    w = alive_gw.shape[1]
    order = jnp.argsort(jnp.where(alive_gw, -value_gw, jnp.inf), axis=1, stable=True)  # best live first
    rank = jnp.argsort(order, axis=1, stable=True)
    a = jnp.minimum(alive_gw.sum(axis=1, dtype=jnp.int32), keep)[:, None]
    kept = alive_gw & (rank < a)
    free = ~kept
    j = jnp.cumsum(free, axis=1, dtype=jnp.int32) - 1
    parents = jnp.maximum(a, 1)
    stay = kept | (a == 0)
    src = jnp.where(stay, jnp.arange(w, dtype=jnp.int32), jnp.take_along_axis(order, j % parents, axis=1))
    child = jnp.where(kept, 0, 1 + j // parents)
    return src.astype(jnp.int32), child.astype(jnp.int32), kept | (free & (a > 0))


class _State(flax.struct.PyTreeNode):
    policy: engine.Slots
    prm: engine.Slots
    tokens: jax.Array       # [S, T]
    mask: jax.Array         # [S, T]
    offset: jax.Array       # [S] response tokens so far
    scores: jax.Array       # [S, D] PRM score after each step
    steps: jax.Array        # [S]
    alive: jax.Array        # [S]
    child: jax.Array        # [S] child index under its parent ("top")
    pool: tuple             # tokens [S, T], mask, scores [S, D], steps, value, source (S = B·N places)
    counts: jax.Array       # [4, B] policy tokens, policy keys, PRM tokens, PRM keys
    round: jax.Array


def _expand(policy, state: _State, uniform_st, config: SamplingConfig, step_len: int, sep_id: int, expand: str):
    """One step in every live slot: (step tokens [S, l], step mask [S, l], policy slots)."""
    s, t = state.tokens.shape
    room = jnp.clip(t - state.offset, 0, step_len)
    stops = ((sep_id,),)
    if expand == "sample":
        cols = state.offset[:, None] + jnp.arange(step_len, dtype=jnp.int32)
        uniform = jnp.take_along_axis(uniform_st, jnp.minimum(cols, t - 1), axis=1).T
        gen, slots = engine.generate(policy, state.policy, None, dataclasses.replace(config, max_new_tokens=step_len),
                                     active_s=state.alive, max_new_s=room, stop_sequences=stops, uniform_ns=uniform)
        return gen.tokens_sn, gen.mask_sn, slots
    ranked = jnp.argsort(-policy.logits(state.policy.hidden_sd), axis=-1, stable=True)
    first = jnp.where(state.alive[:, None], jnp.take_along_axis(ranked, state.child[:, None], axis=1), config.pad_id)
    first = first.astype(jnp.int32)
    slots = engine.extend(policy, state.policy, first, state.alive[:, None])
    first_mask = state.alive[:, None].astype(state.mask.dtype)
    if step_len == 1:
        return first, first_mask, slots
    going = state.alive & (first[:, 0] != sep_id) & (first[:, 0] != config.eos_id)
    greedy = dataclasses.replace(config, max_new_tokens=step_len - 1, temperature=0.0)
    gen, slots = engine.generate(policy, slots, None, greedy, active_s=going, max_new_s=jnp.maximum(room - 1, 0),
                                 stop_sequences=stops, uniform_ns=jnp.zeros((step_len - 1, s)))
    return (jnp.concatenate([first, gen.tokens_sn], axis=1),
            jnp.concatenate([first_mask, gen.mask_sn.astype(first_mask.dtype)], axis=1), slots)


def _round(policy, prm, state: _State, uniform_st, config: SamplingConfig, *, n: int, width: int, keep: int,
           step_len: int, max_steps: int, sep_id: int, expand: str, how: str) -> _State:
    s, t = state.tokens.shape
    b = s // n
    tokens_sl, mask_sl, policy_slots = _expand(policy, state, uniform_st, config, step_len, sep_id, expand)
    k = mask_sl.sum(axis=1).astype(wide(state.scores.dtype))
    context = state.policy.position_s.astype(k.dtype)
    keys = k * context + k * (k + 1) / 2
    per_prompt = lambda x: x.reshape(b, n).sum(axis=1)
    counts = state.counts + jnp.stack([per_prompt(k), per_prompt(keys)] * 2)
    prm_slots = engine.extend(prm, state.prm, tokens_sl, mask_sl > 0)
    p = jax.nn.sigmoid(prm.value(prm_slots.hidden_sd)).astype(state.scores.dtype)

    cols = state.offset[:, None] + jnp.arange(step_len, dtype=jnp.int32)
    rows = jnp.arange(s)[:, None]
    tokens = state.tokens.at[rows, cols].set(tokens_sl, mode="drop")  # columns past a slot's offset hold pads
    mask = state.mask.at[rows, cols].set(mask_sl.astype(state.mask.dtype), mode="drop")
    offset = state.offset + k.astype(jnp.int32)
    scores = state.scores.at[:, state.round].set(jnp.where(state.alive, p, state.scores[:, state.round]))
    steps = state.steps + state.alive.astype(jnp.int32)
    eos = jnp.any((tokens_sl == config.eos_id) & (mask_sl > 0), axis=1)
    done = state.alive & (eos | (offset >= t) | (state.round + 1 >= max_steps))
    value = aggregate(scores, steps, how)

    # The pool keeps the N best ended candidates per prompt (the pool's own first on ties).
    view = lambda x: x.reshape((b, n) + x.shape[1:])
    fresh = (tokens, mask, scores, steps, jnp.where(done, value, -jnp.inf), jnp.tile(jnp.arange(n, dtype=jnp.int32), b))
    merged = jax.tree.map(lambda old, new: jnp.concatenate([view(old), view(new)], axis=1), state.pool, fresh)
    best = jnp.argsort(-merged[4], axis=1, stable=True)[:, :n]
    pool = jax.tree.map(lambda x: jnp.take_along_axis(x, best.reshape(best.shape + (1,) * (x.ndim - 2)), axis=1)
                        .reshape((s,) + x.shape[2:]), merged)

    alive = state.alive & ~done
    g = s // width
    src_gw, child_gw, live_gw = allot(alive.reshape(g, width), value.reshape(g, width), keep)
    src = (src_gw + (jnp.arange(g, dtype=jnp.int32) * width)[:, None]).reshape(-1)
    ids = jnp.arange(s, dtype=jnp.int32)
    moved = src != ids
    dst = jnp.where(moved, ids, s)  # s: dropped
    copy = lambda slots: jax.lax.cond(moved.any(), lambda x: engine.fork(x, src, dst), lambda x: x, slots)
    return state.replace(policy=copy(policy_slots), prm=copy(prm_slots), tokens=tokens[src], mask=mask[src],
                         offset=offset[src], scores=scores[src], steps=steps[src], alive=live_gw.reshape(-1),
                         child=child_gw.reshape(-1), pool=pool, counts=counts, round=state.round + 1)


def search(policy, prm, prompt_bp: jax.Array, prompt_valid_bp: jax.Array, rng: jax.Array, config: SamplingConfig, *,
           n: int, subtrees: int, keep: int, sep_id: int, step_len: int | None = None, max_steps: int = 40,
           expand: str = "sample", aggregate: str = "last") -> SearchOutput:
    """The program of the module docstring for B left-padded prompts, N = ``n`` slots per prompt
    in ``subtrees`` subtrees, the policy and the PRM (a model with a value head) as nnx modules.
    ``step_len`` (default T = ``config.max_new_tokens``) bounds a step's tokens. Pure and jittable.
    """
    t = config.max_new_tokens
    step_len = t if step_len is None else step_len
    check_search(n, subtrees=subtrees, keep=keep, step_len=step_len, max_steps=max_steps, max_new_tokens=t,
                 expand=expand, aggregate=aggregate, vocab_size=policy.config.vocab_size)
    b, p = prompt_bp.shape
    s, width = b * n, n // subtrees
    real = wide(policy.config.dtype)

    def root(model):
        slots = engine.extend(model, engine.init_slots(model, b, p + t), prompt_bp, prompt_valid_bp)
        return engine.repeat(slots, n)

    prompt_len = prompt_valid_bp.sum(axis=1).astype(real)
    prefill = jnp.stack([prompt_len, prompt_len * (prompt_len + 1) / 2] * 2)
    tokens, mask = jnp.full((s, t), config.pad_id, jnp.int32), jnp.zeros((s, t), real)
    scores, steps = jnp.zeros((s, max_steps), real), jnp.zeros((s,), jnp.int32)
    state = _State(policy=root(policy), prm=root(prm), tokens=tokens, mask=mask, offset=steps, scores=scores,
                   steps=steps, alive=jnp.ones((s,), bool),
                   child=jnp.tile(jnp.arange(width, dtype=jnp.int32), s // width),
                   pool=(tokens, mask, scores, steps, jnp.full((s,), -jnp.inf, real), steps),
                   counts=prefill, round=jnp.zeros((), jnp.int32))
    uniform_st = jax.random.uniform(rng, (t, s)).T
    state = jax.lax.while_loop(
        lambda st: (st.round < max_steps) & st.alive.any(),
        lambda st: _round(policy, prm, st, uniform_st, config, n=n, width=width, keep=keep, step_len=step_len,
                          max_steps=max_steps, sep_id=sep_id, expand=expand, how=aggregate),
        state)
    tokens, mask, scores, steps, value, source = jax.tree.map(lambda x: x.reshape((b, n) + x.shape[1:]), state.pool)
    return SearchOutput(tokens_bnt=tokens, mask_bnt=mask, step_scores_bnd=scores, steps_bn=steps, value_bn=value,
                        source_bn=source, policy_tokens_b=state.counts[0], policy_keys_b=state.counts[1],
                        prm_tokens_b=state.counts[2], prm_keys_b=state.counts[3])


def search_flops(policy_config, prm_config, *, policy_tokens_b, policy_keys_b, prm_tokens_b,
                 prm_keys_b) -> dict[str, np.ndarray]:
    """Per-prompt inference FLOPs from a search's counts (``SearchOutput``'s fields; module
    docstring), float64 [B] each: ``{"policy": …, "prm": …, "total": …}``."""
    counted = {}
    for name, config, tokens, keys in (("policy", policy_config, policy_tokens_b, policy_keys_b),
                                       ("prm", prm_config, prm_tokens_b, prm_keys_b)):
        tokens, keys = np.asarray(tokens, np.float64), np.asarray(keys, np.float64)
        counted[name] = transformer_forward_flops(config, tokens, keys / tokens)
    counted["total"] = counted["policy"] + counted["prm"]
    return counted

"""The rollout engine: sequence slots over one KV cache, and the primitives rollout programs use.

Every rollout (group sampling, multi-turn dialogue with tools, tree search, truncated
generation that continues later) is a program over four pure, jittable primitives:

* ``extend(model, slots, tokens_kt, valid_kt, ids_k)`` — append tokens to the sequences in
  slots ``ids_k`` with one batched forward: a prompt, a tool's output, a hint, a dialogue turn;
* ``generate(model, slots, rng, config, ...)`` — decode in the active slots until each meets an
  EOS, a stop sequence, its budget or the end of the cache; returns the tokens, the sampler's
  log-probs and a finish reason per slot;
* ``fork(slots, src_k, dst_k)`` — copy sequences into other slots without recomputing them:
  group members share one prompt prefill, tree branches share their prefix;
* ``release(slots, ids_k)`` — empty slots for reuse.

``serve`` (continuous batching) is a fifth program, built on the same cache, that refills a
finished slot with the next pending request inside the compiled decode loop.

Layout of slot s: its tokens sit in cache columns [0, index_s) in order (``cache.index`` is
per row); a padded column inside an extended block is an invalid hole that attention skips.
RoPE positions count real tokens only (``position_s``), so a sequence computes what its
unpadded tokens would, wherever its columns are. Every token of a sequence is in the cache and
``hidden_sd`` is the final hidden state after its last token: the next-token logits are
``model.logits(hidden_sd)``. Invariant: columns ≥ index_s hold no valid key.

Under a mesh (``polrl.sharding``) the slots are split over the batch axes and the weights are
in the rollout layout; outside one the constraints are identities.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import flax
import jax
import jax.numpy as jnp

from polrl import sharding
from polrl.models.layers import wide
from polrl.models.transformer import KVCache
from polrl.rollout.sampling import SamplingConfig, draw

# Why a slot stopped generating (``Generation.finish_s``).
RUNNING, EOS, STOP, LENGTH, CAPACITY = 0, 1, 2, 3, 4
FINISH_NAMES = ("running", "eos", "stop", "length", "capacity")


@flax.struct.dataclass
class Slots:
    """S sequences and their KV cache (see the module docstring for the layout).

    cache:      KVCache over S rows and L columns, ``cache.index`` [S] = columns used.
    position_s: int32 [S], RoPE position of each sequence's next token (= real tokens so far).
    hidden_sd:  [S, d], final hidden state after each sequence's last token.
    """

    cache: KVCache
    position_s: jax.Array
    hidden_sd: jax.Array

    @property
    def num_slots(self) -> int:
        return self.position_s.shape[0]

    @property
    def capacity(self) -> int:
        """Cache columns per slot (L)."""
        return self.cache.valid_bs.shape[1]


@flax.struct.dataclass
class Generation:
    """What ``generate`` produced in each of the S slots (N = ``config.max_new_tokens``).

    tokens_sn: int32 [S, N], pad after the last token; logp_sn: float32 [S, N], the sampler's
    log π_T(token), 0 where the mask is 0; mask_sn: float32 [S, N], 1 for generated tokens;
    length_s: int32 [S]; finish_s: int32 [S], why the slot stopped (``EOS``, ``STOP``,
    ``LENGTH`` = its budget, ``CAPACITY`` = the cache is full; ``RUNNING`` for inactive slots).
    hook_carry: the final carry of ``generate``'s ``logits_hook`` (None without one).
    """

    tokens_sn: jax.Array
    logp_sn: jax.Array
    mask_sn: jax.Array
    length_s: jax.Array
    finish_s: jax.Array
    hook_carry: Any = None


class LogitsHook(NamedTuple):
    """A change of the next-token logits before every draw of ``generate``, with a state of its own.

    ``apply(carry, i, token_s, drew_s, logits_sv) -> (logits_sv, carry)`` runs at every step i
    before the draw, given the token each slot drew at step i − 1 and whether it drew one
    (``drew_s``: all False at i = 0), which is what a second model needs to follow the sequences
    (e.g. a mask model's own slots, extended by those tokens). The draw and the recorded log-probs
    use the returned logits; the final carry is ``Generation.hook_carry``.
    """

    apply: Callable
    carry: Any


def init_slots(model, num_slots: int, length: int) -> Slots:
    """``num_slots`` empty slots of ``length`` cache columns each (≤ the model's max_len)."""
    cfg = model.config
    return Slots(cache=model.init_cache(num_slots, length),
                 position_s=jnp.zeros((num_slots,), jnp.int32),
                 hidden_sd=jnp.zeros((num_slots, cfg.d_model), cfg.dtype))


def constrain(slots: Slots) -> Slots:
    """The slots split over the batch axes (KV heads over ``tensor``) under a mesh."""
    heads = lambda x: sharding.constrain(x, ("batch", "kv_heads", None, None), rollout=True)
    cache = slots.cache.replace(k=tuple(map(heads, slots.cache.k)), v=tuple(map(heads, slots.cache.v)),
                                valid_bs=sharding.constrain_batch(slots.cache.valid_bs, rollout=True),
                                position_bs=sharding.constrain_batch(slots.cache.position_bs, rollout=True),
                                index=sharding.constrain_batch(slots.cache.index, rollout=True))
    return slots.replace(cache=cache, position_s=sharding.constrain_batch(slots.position_s, rollout=True),
                         hidden_sd=sharding.constrain_batch(slots.hidden_sd, rollout=True))


def select(slots: Slots, ids_k: jax.Array) -> Slots:
    """Slots ``ids_k`` as a Slots of K rows (a copy)."""
    return jax.tree.map(lambda x: x[ids_k], slots)


def place(slots: Slots, ids_k: jax.Array, part: Slots) -> Slots:
    """``slots`` with rows ``ids_k`` replaced by the K rows of ``part`` (ids out of range: dropped)."""
    return jax.tree.map(lambda x, y: x.at[ids_k].set(y, mode="drop"), slots, part)


def extend(model, slots: Slots, tokens_kt: jax.Array, valid_kt: jax.Array,
           ids_k: jax.Array | None = None) -> Slots:
    """Appends ``tokens_kt`` (where ``valid_kt``) to the sequences of slots ``ids_k``.

    One forward over the K×T block, written at each slot's own next column; pads may sit
    anywhere in a row (left-padded prompts, right-padded observations): they become invalid
    holes, positions count the valid tokens only, and the slot's hidden state becomes the one
    after its last valid token. A row with no valid token is unchanged. ``ids_k=None``: all
    slots (K = S). Columns past the cache's end are dropped: size the cache for the program.
    """
    part = slots if ids_k is None else select(slots, ids_k)
    t = tokens_kt.shape[1]
    assert tokens_kt.shape == valid_kt.shape == (part.num_slots, t), (tokens_kt.shape, valid_kt.shape)
    assert valid_kt.dtype == jnp.bool_, valid_kt.dtype
    count_kt = jnp.cumsum(valid_kt, axis=1, dtype=jnp.int32)
    positions_kt = part.position_s[:, None] + jnp.maximum(count_kt - 1, 0)
    start_k = part.cache.index
    hidden_ktd, cache = model.forward(tokens_kt.astype(jnp.int32), positions_kt, valid_kt, part.cache)
    n_k = count_kt[:, -1]
    last_k = t - 1 - jnp.argmax(valid_kt[:, ::-1], axis=1).astype(jnp.int32)  # last valid column
    grew_k = n_k > 0
    hidden_kd = jnp.take_along_axis(hidden_ktd, last_k[:, None, None], axis=1)[:, 0]
    part = Slots(cache=cache.replace(index=jnp.where(grew_k, start_k + last_k + 1, start_k)),
                 position_s=part.position_s + n_k,
                 hidden_sd=jnp.where(grew_k[:, None], hidden_kd, part.hidden_sd))
    return constrain(part if ids_k is None else place(slots, ids_k, part))


def repeat(slots: Slots, copies: int) -> Slots:
    """S·``copies`` slots: each slot forked into ``copies`` consecutive slots (``jnp.repeat``
    order), e.g. a group's samples from one prompt prefill."""
    return constrain(jax.tree.map(lambda x: jnp.repeat(x, copies, axis=0), slots))


def fork(slots: Slots, src_k: jax.Array, dst_k: jax.Array) -> Slots:
    """Slot ``dst_k[i]`` becomes a copy of slot ``src_k[i]`` (its cache row, length, position
    and hidden state); the sources are read before any destination is written."""
    return constrain(place(slots, dst_k, select(slots, src_k)))


def release(slots: Slots, ids_k: jax.Array) -> Slots:
    """Empties slots ``ids_k``: no valid column, length 0, position 0."""
    empty = jax.tree.map(jnp.zeros_like, select(slots, ids_k))
    return place(slots, ids_k, empty)


def _commit(model, slots: Slots, token_s: jax.Array, drew_s: jax.Array) -> Slots:
    """Runs each slot's last drawn token through the model (where ``drew_s``): writes its key
    and value at the slot's next column and updates the hidden state."""
    cache = slots.cache
    hidden, new_cache = model.forward(token_s[:, None], slots.position_s[:, None], drew_s[:, None], cache)
    new_cache = new_cache.replace(index=cache.index + drew_s.astype(jnp.int32))
    return constrain(Slots(cache=new_cache, position_s=slots.position_s + drew_s.astype(jnp.int32),
                           hidden_sd=jnp.where(drew_s[:, None], hidden[:, 0], slots.hidden_sd)))


def _stop_match(window_sm: jax.Array, stop_sequences: Sequence[Sequence[int]]) -> jax.Array:
    """Whether the last tokens of each row (``window_sm``, newest last) end with a stop sequence."""
    hit = jnp.zeros(window_sm.shape[:1], bool)
    for seq in stop_sequences:
        tail = window_sm[:, window_sm.shape[1] - len(seq):]
        hit = hit | jnp.all(tail == jnp.asarray(seq, jnp.int32), axis=1)
    return hit


class _Loop(NamedTuple):
    i: jax.Array
    token_s: jax.Array      # the token drawn at step i − 1 (pad where none)
    drew_s: jax.Array       # a token was drawn at step i − 1 and is not in the cache yet
    live_s: jax.Array       # may draw at step i
    finish_s: jax.Array
    window_sm: jax.Array    # last drawn tokens, for stop sequences
    slots: Slots
    out: tuple
    hook: Any = None        # the logits hook's carry


def generate(model, slots: Slots, rng: jax.Array, config: SamplingConfig, *,
             active_s: jax.Array | None = None, max_new_s: jax.Array | None = None,
             stop_sequences: Sequence[Sequence[int]] = (), commit_last: bool = True,
             uniform_ns: jax.Array | None = None,
             logits_hook: LogitsHook | None = None) -> tuple[Generation, Slots | None]:
    """Decodes in every active slot (lockstep: step i of every slot draws column i).

    A slot draws until it emits ``config.eos_id`` (finish ``EOS``), its last tokens equal one
    of ``stop_sequences`` (static tuples of token ids; ``STOP``), it has drawn ``max_new_s``
    tokens (default ``config.max_new_tokens``; ``LENGTH``) or its cache is full (``CAPACITY``).
    Randomness: ``uniform = jax.random.uniform(rng, (N, S))``, step i of slot s uses
    ``uniform[i, s]``, so a slot's samples do not depend on which other slots are active; a
    program that splits one draw over several calls (tree segments) passes its slice as
    ``uniform_ns`` [N, S] instead (``rng`` is then unused).

    Every drawn token is run through the model (its key/value cached) when the next one is
    drawn; ``commit_last`` also runs the final one, so the returned slots can be continued
    (``extend``, ``generate``). With ``commit_last=False`` the last forward is skipped and no
    slots are returned (a program that ends here).
    """
    s, n = slots.num_slots, config.max_new_tokens
    live_s = jnp.ones((s,), bool) if active_s is None else active_s.astype(bool)
    budget_s = jnp.full((s,), n, jnp.int32) if max_new_s is None else jnp.minimum(max_new_s, n)
    if uniform_ns is None:
        uniform_ns = jax.random.uniform(rng, (n, s))
    assert uniform_ns.shape == (n, s), (uniform_ns.shape, (n, s))
    m = max((len(q) for q in stop_sequences), default=1)
    slots = constrain(slots)

    def draw_step(loop: _Loop, logits_sv) -> _Loop:
        i = loop.i
        hook = loop.hook
        if logits_hook is not None:
            logits_sv, hook = logits_hook.apply(hook, i, loop.token_s, loop.drew_s, logits_sv)
        room_s = loop.slots.cache.index < loop.slots.capacity
        finish_s = jnp.where(loop.live_s & ~room_s, CAPACITY, loop.finish_s)
        finish_s = jnp.where(loop.live_s & room_s & (i >= budget_s), LENGTH, finish_s)
        live_s = loop.live_s & room_s & (i < budget_s)
        token_s, logp_s = draw(logits_sv, uniform_ns[i], config)
        token_s = jnp.where(live_s, token_s, config.pad_id)
        tokens, logp, mask = loop.out
        at = (jnp.zeros_like(i), i)
        tokens = jax.lax.dynamic_update_slice(tokens, token_s[:, None], at)
        logp = jax.lax.dynamic_update_slice(logp, jnp.where(live_s, logp_s, 0.0).astype(logp.dtype)[:, None], at)
        mask = jax.lax.dynamic_update_slice(mask, live_s.astype(mask.dtype)[:, None], at)
        ended_s = live_s & (token_s == config.eos_id)
        finish_s = jnp.where(ended_s, EOS, finish_s)
        window = loop.window_sm
        if stop_sequences:
            window = jnp.concatenate([window[:, 1:], jnp.where(live_s, token_s, -1)[:, None]], axis=1)
            stopped_s = live_s & ~ended_s & _stop_match(window, stop_sequences)
            finish_s = jnp.where(stopped_s, STOP, finish_s)
            ended_s = ended_s | stopped_s
        finish_s = jnp.where(live_s & ~ended_s & (i + 1 >= budget_s), LENGTH, finish_s)
        return loop._replace(i=i + 1, token_s=token_s, drew_s=live_s, live_s=live_s & (finish_s == RUNNING),
                             finish_s=finish_s, window_sm=window, out=(tokens, logp, mask), hook=hook)

    real = wide(model.config.dtype)  # float32 (float64 for a float64 model)
    empty = (jnp.full((s, n), config.pad_id, jnp.int32), jnp.zeros((s, n), real), jnp.zeros((s, n), real))
    loop = _Loop(i=jnp.zeros((), jnp.int32), token_s=jnp.full((s,), config.pad_id, jnp.int32),
                 drew_s=jnp.zeros((s,), bool), live_s=live_s, finish_s=jnp.full((s,), RUNNING, jnp.int32),
                 window_sm=jnp.full((s, m), -1, jnp.int32), slots=slots, out=empty,
                 hook=None if logits_hook is None else logits_hook.carry)
    loop = draw_step(loop, model.logits(slots.hidden_sd))

    can_stop = (0 <= config.eos_id < model.config.vocab_size or bool(stop_sequences)
                or max_new_s is not None or active_s is not None)

    def cond(loop: _Loop):
        if not can_stop:
            return loop.i < n
        check = (loop.i % config.eos_check_every) == 0
        return (loop.i < n) & ~(check & ~jnp.any(loop.live_s))

    def body(loop: _Loop) -> _Loop:
        committed = _commit(model, loop.slots, loop.token_s, loop.drew_s)
        return draw_step(loop._replace(slots=committed), model.logits(committed.hidden_sd))

    loop = jax.lax.while_loop(cond, body, loop)
    tokens, logp, mask = loop.out
    finish_s = jnp.where(loop.live_s, LENGTH, loop.finish_s)  # stopped by the end of the buffer
    out = Generation(tokens_sn=tokens, logp_sn=logp, mask_sn=mask,
                     length_s=mask.sum(axis=1).astype(jnp.int32), finish_s=finish_s, hook_carry=loop.hook)
    if not commit_last:
        return out, None
    return out, _commit(model, loop.slots, loop.token_s, loop.drew_s)


class _Serve(NamedTuple):
    token_s: jax.Array      # the token drawn at the previous step (pad where none)
    drew_s: jax.Array       # ... and it must be committed
    request_s: jax.Array    # the request each slot serves (R = free)
    step_s: jax.Array       # tokens the slot's request has drawn
    next_r: jax.Array       # the next pending request
    iteration: jax.Array
    slots: Slots
    out: tuple              # tokens [R, N], logp [R, N], mask [R, N], finish [R]


def serve(model, bank: Slots, prompt_r: jax.Array, rng: jax.Array, config: SamplingConfig, *,
          num_slots: int, max_new_r: jax.Array | None = None, refill_every: int = 1,
          min_slots: int | None = None) -> Generation:
    """Continuous batching: R requests decoded through ``num_slots`` slots, a finished slot
    refilled with the next pending request inside the compiled loop.

    Request r continues the prefilled sequence ``bank`` row ``prompt_r[r]`` (e.g. a prompt,
    shared by the G requests of its group: its prefill was done once) and draws up to
    ``max_new_r[r]`` tokens (default ``config.max_new_tokens`` = N) until EOS. Each loop step
    commits the tokens drawn at the previous step, hands free slots (every ``refill_every``
    steps) the next requests in order — copying their bank row into the slot, no recompute —
    and draws one token in every busy slot. The decode batch therefore stays full while
    requests remain, however long-tailed their lengths, unlike a static batch that waits for
    its longest row.

    Once no request is pending, the busy slots are compacted into a batch half as wide
    whenever they fit (down to ``min_slots``, default ``num_slots // 8``), so the last, longest
    requests do not pay for a full batch of idle rows (one compiled loop per width).

    Randomness is per request: step i of request r uses ``uniform[r, i]`` of
    ``jax.random.uniform(rng, (R, N))``, so a request's tokens do not depend on the slot or
    time it was served in. Returns a Generation over the R requests (``finish_s`` per request:
    ``EOS``, ``LENGTH`` or ``CAPACITY``).
    """
    r, n = prompt_r.shape[0], config.max_new_tokens
    s, width = num_slots, bank.capacity + n
    budget_r = jnp.full((r,), n, jnp.int32) if max_new_r is None else jnp.minimum(max_new_r, n)
    uniform_rn = jax.random.uniform(rng, (r, n))
    slots = init_slots(model, s, width)
    bank_valid = jnp.pad(bank.cache.valid_bs, ((0, 0), (0, width - bank.capacity)))
    bank_position = jnp.pad(bank.cache.position_bs, ((0, 0), (0, width - bank.capacity)))

    def refill(loop: _Serve) -> _Serve:
        s = loop.request_s.shape[0]
        free_s = loop.request_s == r
        rank_s = jnp.cumsum(free_s, dtype=jnp.int32) - 1
        new_s = jnp.where(free_s, loop.next_r + rank_s, r)
        take_s = free_s & (new_s < r)
        new_s = jnp.where(take_s, new_s, r)
        src_s = prompt_r[jnp.minimum(new_s, r - 1)]
        dst_s = jnp.where(take_s, jnp.arange(s, dtype=jnp.int32), s)  # s: dropped
        cache = loop.slots.cache
        p = bank.capacity
        write = lambda x, b, axis: x.at[(dst_s,) + (slice(None),) * (axis - 1) + (slice(0, p),)].set(
            b[src_s], mode="drop")
        cache = cache.replace(
            k=tuple(write(x, b, 3) for x, b in zip(cache.k, bank.cache.k)),
            v=tuple(write(x, b, 2) for x, b in zip(cache.v, bank.cache.v)),
            valid_bs=cache.valid_bs.at[dst_s].set(bank_valid[src_s], mode="drop"),
            position_bs=cache.position_bs.at[dst_s].set(bank_position[src_s], mode="drop"),
            index=cache.index.at[dst_s].set(bank.cache.index[src_s], mode="drop"))
        new = loop.slots.replace(cache=cache,
                                 position_s=loop.slots.position_s.at[dst_s].set(bank.position_s[src_s], mode="drop"),
                                 hidden_sd=loop.slots.hidden_sd.at[dst_s].set(bank.hidden_sd[src_s], mode="drop"))
        return loop._replace(slots=constrain(new), request_s=jnp.where(take_s, new_s, loop.request_s),
                             step_s=jnp.where(take_s, 0, loop.step_s), next_r=loop.next_r + take_s.sum(dtype=jnp.int32))

    def body(loop: _Serve) -> _Serve:
        loop = loop._replace(slots=_commit(model, loop.slots, loop.token_s, loop.drew_s))
        pending = (loop.next_r < r) & jnp.any(loop.request_s == r)
        due = (loop.iteration % refill_every) == 0
        loop = jax.lax.cond(pending & due, refill, lambda x: x, loop)
        busy_s = loop.request_s < r
        req_s = jnp.minimum(loop.request_s, r - 1)
        room_s = loop.slots.cache.index < loop.slots.capacity
        budget_s = budget_r[req_s]
        live_s = busy_s & room_s & (loop.step_s < budget_s)
        token_s, logp_s = draw(model.logits(loop.slots.hidden_sd), uniform_rn[req_s, jnp.minimum(loop.step_s, n - 1)], config)
        token_s = jnp.where(live_s, token_s, config.pad_id)
        tokens, logp, mask, finish = loop.out
        row_s, col_s = jnp.where(live_s, loop.request_s, r), loop.step_s
        tokens = tokens.at[row_s, col_s].set(token_s, mode="drop")
        logp = logp.at[row_s, col_s].set(logp_s, mode="drop")
        mask = mask.at[row_s, col_s].set(1.0, mode="drop")
        eos_s = live_s & (token_s == config.eos_id)
        full_s = live_s & ~eos_s & (loop.step_s + 1 >= budget_s)
        reason_s = jnp.where(eos_s, EOS, jnp.where(full_s, LENGTH, jnp.where(busy_s & ~room_s, CAPACITY, LENGTH)))
        done_s = busy_s & (eos_s | full_s | ~live_s)
        finish = finish.at[jnp.where(done_s, loop.request_s, r)].set(reason_s, mode="drop")
        return _Serve(token_s=token_s, drew_s=live_s & ~done_s, request_s=jnp.where(done_s, r, loop.request_s),
                      step_s=loop.step_s + live_s.astype(jnp.int32), next_r=loop.next_r, iteration=loop.iteration + 1,
                      slots=loop.slots, out=(tokens, logp, mask, finish))

    def busy(loop: _Serve):
        return (loop.next_r < r) | jnp.any(loop.request_s < r)

    def fits(loop: _Serve, width: int):
        return (loop.next_r >= r) & (jnp.sum(loop.request_s < r) <= width)

    def compact(loop: _Serve, width: int) -> _Serve:
        """The busy slots first, then the first ``width`` of them."""
        keep = jnp.argsort(loop.request_s == r, stable=True)[:width]
        per_slot = (loop.token_s, loop.drew_s, loop.request_s, loop.step_s, loop.slots)
        token_s, drew_s, request_s, step_s, slots = jax.tree.map(lambda x: x[keep], per_slot)
        return loop._replace(token_s=token_s, drew_s=drew_s, request_s=request_s, step_s=step_s,
                             slots=constrain(slots))

    real = wide(model.config.dtype)
    out = (jnp.full((r, n), config.pad_id, jnp.int32), jnp.zeros((r, n), real),
           jnp.zeros((r, n), real), jnp.full((r,), RUNNING, jnp.int32))
    loop = _Serve(token_s=jnp.full((s,), config.pad_id, jnp.int32), drew_s=jnp.zeros((s,), bool),
                  request_s=jnp.full((s,), r, jnp.int32), step_s=jnp.zeros((s,), jnp.int32),
                  next_r=jnp.zeros((), jnp.int32), iteration=jnp.zeros((), jnp.int32), slots=slots, out=out)
    widths = [s]
    while widths[-1] // 2 >= max(min_slots or s // 8, 1):
        widths.append(widths[-1] // 2)
    for width, narrower in zip(widths, widths[1:] + [None]):
        if width < s:
            loop = compact(loop, width)
        if narrower is None:
            loop = jax.lax.while_loop(busy, body, loop)
        else:
            loop = jax.lax.while_loop(lambda x, w=narrower: busy(x) & ~fits(x, w), body, loop)
    tokens, logp, mask, finish = loop.out
    return Generation(tokens_sn=tokens, logp_sn=logp, mask_sn=mask,
                      length_s=mask.sum(axis=1).astype(jnp.int32), finish_s=finish)

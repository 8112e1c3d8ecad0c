"""Replay of past rollout groups, mixed into every batch (a collector with a ring buffer).

Off-policy methods that reuse data from past policies (ReMix, arXiv 2507.06892) train on fresh
rollouts mixed with replayed ones, each row with its *own* behaviour log-probs, so the
importance ratio of a replayed token is π_θ / π_behaviour of the policy that sampled it.

``with_replay`` keeps the last ``capacity`` groups of the inner collector's rows (whole groups:
rows that answer one prompt) in the collector state (``PolicyState.collector_state``, so they
are checkpointed and restored with the rest of the run). Per step of B = groups·G fresh rows it

1. draws ``num_replay`` (R) distinct slots uniformly among the slots filled *before* this step
   (Gumbel top-k: no replacement; a batch never replays itself);
2. writes the fresh groups into the ring, oldest first overwritten — except, with
   ``skip_zero_variance``, groups whose rewards are all equal (no signal for group-relative
   advantages);
3. returns the batch grown to B + R·G rows: the fresh rows, then the R replayed groups with
   ``source_b = REPLAY``, their stored rewards, version stamps and behaviour log-probs (the
   sampler's, when they were fresh). Replayed slots that were never filled (the first steps of
   a run) keep ``mask_bt = 0``, so they add nothing to any loss.

Advantages, reference log-probs and π_old are computed for replayed rows like for fresh ones
by the algorithm (a group's relative advantage depends only on its own rewards, so it is what
it was when the group was fresh).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import ops
from polrl.core import ON_POLICY, REPLAY, Batch, Collector

STORED = ("prompt_bp", "prompt_valid_bp", "response_bt", "mask_bt", "reward_b", "behavior_logp_bt", "version_b")
_REPLAY_STREAM = 1


def with_replay(*, capacity: int, num_replay: int, skip_zero_variance: bool = False):
    """``(collector, context) -> collector``: a ring buffer of the last ``capacity`` groups that
    appends ``num_replay`` replayed groups to every batch (see the module docstring).

    Logs ``replay/filled_frac`` (filled slots after the write), ``replay/valid_frac`` (replayed
    groups that were filled) and ``replay/staleness_mean`` (step − version over the valid
    replayed rows).
    """
    if capacity < 1:
        raise ValueError(f"with_replay: capacity={capacity} must be >= 1 (groups kept)")
    if not 1 <= num_replay <= capacity:
        raise ValueError(f"with_replay: num_replay={num_replay} must be in [1, capacity={capacity}]")

    def wrap(inner: Collector, ctx) -> Collector:
        del ctx

        def init(prompts):
            ex = inner.example(prompts)
            g = ex.group_size
            groups = ex.batch_size // g
            missing = [f for f in STORED if getattr(ex, f) is None]
            if missing:
                raise ValueError(f"with_replay: the inner collector's rows have no {missing}; replay needs sampled "
                                 f"rows with rewards, behaviour log-probs and versions")
            if capacity < groups:
                raise ValueError(f"with_replay: capacity={capacity} groups cannot hold one batch of {groups} groups; "
                                 f"raise capacity to at least {groups}")
            state = {f: jnp.zeros((capacity, g) + getattr(ex, f).shape[1:], getattr(ex, f).dtype) for f in STORED}
            state["filled_c"] = jnp.zeros((capacity,), jnp.bool_)
            state["cursor"] = jnp.zeros((), jnp.int32)
            return {"buffer": state, "inner": inner.init(prompts)}

        def collect(cstate, policy_state, data, rng):
            batch, inner_state, metrics = inner.collect(cstate["inner"], policy_state, data, rng)
            state = cstate["buffer"]
            g, n = batch.group_size, batch.batch_size
            groups = n // g
            if state["mask_bt"].shape[1:] != (g, batch.response_bt.shape[1]):
                raise ValueError(
                    f"with_replay was initialised for groups of {state['mask_bt'].shape[1]} rows × "
                    f"{state['mask_bt'].shape[2]} tokens, got groups of {g} × {batch.response_bt.shape[1]}")
            step = policy_state.step

            # 1. R distinct slots, uniform among those filled before this batch.
            key = jax.random.fold_in(rng, _REPLAY_STREAM)
            scores = jnp.where(state["filled_c"], jax.random.gumbel(key, (capacity,)), -jnp.inf)
            _, slots = jax.lax.top_k(scores, num_replay)
            valid_r = state["filled_c"][slots]
            replayed = {f: state[f][slots].reshape((num_replay * g,) + state[f].shape[2:]) for f in STORED}
            valid_b = jnp.repeat(valid_r, g)

            # 2. Write the fresh groups (in batch order, those kept first), oldest slots first.
            kept_g = (batch.mask_bt.reshape(groups, -1) > 0).any(-1)
            if skip_zero_variance:
                kept_g = kept_g & ~ops.zero_variance_groups(batch.reward_b, batch.group_b, n)[::g]
            order = jnp.argsort(~kept_g, stable=True)
            num_kept = kept_g.sum(dtype=jnp.int32)
            write = (state["cursor"] + jnp.arange(groups)) % capacity
            is_new = jnp.arange(groups) < num_kept

            def store(f):
                x = jnp.asarray(getattr(batch, f)).reshape((groups, g) + state[f].shape[2:])[order].astype(state[f].dtype)
                keep = is_new.reshape((groups,) + (1,) * (x.ndim - 1))
                return state[f].at[write].set(jnp.where(keep, x, state[f][write]))

            new_state = {f: store(f) for f in STORED}
            new_state["filled_c"] = state["filled_c"].at[write].set(state["filled_c"][write] | is_new)
            new_state["cursor"] = (state["cursor"] + num_kept) % capacity

            # 3. Fresh rows, then the replayed groups (masked where the slot was empty).
            cat = lambda a, b: jnp.concatenate([a, b.astype(a.dtype)], axis=0)
            source_b = batch.source_b if batch.source_b is not None else jnp.full((n,), ON_POLICY, jnp.int32)
            grown = batch.replace(
                **{f: cat(getattr(batch, f), replayed[f]) for f in STORED if f != "mask_bt"},
                mask_bt=cat(batch.mask_bt, replayed["mask_bt"] * valid_b[:, None]),
                group_b=cat(batch.group_b, groups + jnp.arange(num_replay * g, dtype=jnp.int32) // g),
                source_b=cat(source_b, jnp.full((num_replay * g,), REPLAY, jnp.int32)),
                aux={},
            )
            if batch.aux:
                raise ValueError(f"with_replay does not store Batch.aux fields {sorted(batch.aux)}; wrap the "
                                 f"replaying collector inside the one that adds them")
            stale_b = (step - replayed["version_b"]).astype(jnp.float32)
            metrics = {**metrics, "replay/filled_frac": new_state["filled_c"].mean(),
                       "replay/valid_frac": valid_r.mean(),
                       "replay/staleness_mean": ops.masked_mean(stale_b, valid_b)}
            return grown, {"buffer": new_state, "inner": inner_state}, metrics

        def example(prompts):
            ex = inner.example(prompts)
            rows = ex.batch_size + num_replay * ex.group_size
            grown = jax.tree.map(lambda x: jax.ShapeDtypeStruct((rows,) + x.shape[1:], x.dtype), ex)
            return grown.replace(source_b=jax.ShapeDtypeStruct((rows,), jnp.int32))

        return inner._replace(init=init, collect=collect, example=example)

    return wrap

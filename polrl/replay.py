"""Replay of past rollout groups: a prepare-transform whose state is a ring buffer.

Off-policy methods that reuse data from past policies (ReMix, arXiv 2507.06892) train on
fresh rollouts mixed with replayed ones, each row with its *own* behaviour log-probs, so the
importance ratio of a replayed token is π_θ / π_behaviour of the policy that generated it.

``replay_buffer`` keeps the last ``capacity`` rollout groups (whole groups: rows that answer one
prompt) in ``PolicyState.prepare_state``, so they are checkpointed and restored with the rest of
the run. Per rollout batch of B = groups·G rows it

1. draws ``num_replay`` (R) distinct slots uniformly among the slots filled *before* this batch
   (Gumbel top-k: no replacement; a batch never replays itself);
2. writes the batch's groups into the ring, oldest first overwritten — except groups whose
   rows are all masked (e.g. zero-variance groups a filter dropped), which carry no signal;
3. returns the batch grown to B + R·G rows: the fresh rows, then the R replayed groups with
   ``source_b = REPLAY``, their stored advantages, rewards and version stamps, and
   ``old_logp_bt = behavior_logp_bt =`` the log-probs their policy gave them when they were
   fresh (the trainer's ``old_logp_bt`` of that step). Replayed slots that were never filled
   (the first batches of a run) keep ``mask_bt = 0``, so they add nothing to any loss.

A stored row's advantage is the one computed when it was fresh (chain the buffer after the
advantage transform); its ``ref_logp_bt`` too when ``with_ref_logp`` (the reference is frozen
within a phase, so stored values stay exact). Critic fields (``old_value_bt``, ``return_bt``)
and greedy baselines are not stored: the buffer serves group-relative advantages.

Shapes are static: the state's arrays come from ``init(example)``, a Batch (arrays or
``jax.ShapeDtypeStruct``) shaped like the rollout batches (``Trainer._example_batch``).
The update splits the grown batch into minibatches of whole groups, so ``num_minibatches`` must
divide B/G + R; ``init`` checks it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import ops
from polrl.core import ON_POLICY, REPLAY, Batch, Transform

# Row fields stored per slot, besides the optional ``ref_logp_bt``.
_STORED = ("prompt_bp", "prompt_valid_bp", "response_bt", "mask_bt", "reward_b", "adv_bt",
           "behavior_logp_bt", "version_b")


def replay_buffer(
    *, capacity: int, num_replay: int, with_ref_logp: bool = False, num_minibatches: int = 1
) -> Transform:
    """A ring buffer of past rollout groups that appends ``num_replay`` replayed groups per batch.

    Args:
      capacity: C, number of groups kept (at least the groups of one batch).
      num_replay: R, groups replayed per batch (1 ≤ R ≤ C).
      with_ref_logp: also store and replay ``ref_logp_bt`` (needed when the objective has a KL
        to the reference).
      num_minibatches: the algorithm's minibatches per epoch; must divide B/G + R.

    State (a dict, per slot c of C, G rows each): the stored row fields as ``[C, G, …]``,
    ``filled_c`` (bool [C]) and ``cursor`` (the next slot to write). Declares the need
    ``old_logp`` (the behaviour log-probs it stores). Logs ``replay/filled_frac`` (filled slots
    after the write), ``replay/valid_frac`` (replayed groups that were filled) and
    ``replay/staleness_mean`` (step − version over the valid replayed rows).
    """
    if capacity < 1:
        raise ValueError(f"replay_buffer: capacity={capacity} must be >= 1 (groups kept)")
    if not 1 <= num_replay <= capacity:
        raise ValueError(f"replay_buffer: num_replay={num_replay} must be in [1, capacity={capacity}]")
    fields = _STORED + (("ref_logp_bt",) if with_ref_logp else ())

    def init(example: Batch | None = None):
        if example is None:
            raise ValueError(
                "replay_buffer needs the shape of the rollout batches: pass example=Batch(...) "
                "to Transform.init (steps.init_state(..., example=...); the trainer does)"
            )
        n, g = example.response_bt.shape[0], example.group_size
        if n % g:
            raise ValueError(f"replay_buffer: batch of {n} rows is not made of whole groups of {g}")
        groups = n // g
        if capacity < groups:
            raise ValueError(
                f"replay_buffer: capacity={capacity} groups cannot hold one batch of {groups} groups; "
                f"raise capacity to at least {groups}"
            )
        if (groups + num_replay) % num_minibatches:
            raise ValueError(
                f"replay_buffer: the batch grows to {groups} fresh + {num_replay} replayed = "
                f"{groups + num_replay} groups, not divisible by num_minibatches={num_minibatches}; "
                f"change num_replay or num_minibatches so that num_minibatches divides it"
            )
        p, t = example.prompt_bp.shape[1], example.response_bt.shape[1]
        shape = {"prompt_bp": (p,), "prompt_valid_bp": (p,), "response_bt": (t,), "mask_bt": (t,),
                 "adv_bt": (t,), "behavior_logp_bt": (t,), "ref_logp_bt": (t,), "reward_b": (),
                 "version_b": ()}
        dtype = {"prompt_bp": example.prompt_bp.dtype, "prompt_valid_bp": jnp.bool_,
                 "response_bt": example.response_bt.dtype, "version_b": jnp.int32}
        state = {f: jnp.zeros((capacity, g) + shape[f], dtype.get(f, jnp.float32)) for f in fields}
        state["filled_c"] = jnp.zeros((capacity,), jnp.bool_)
        state["cursor"] = jnp.zeros((), jnp.int32)
        return state

    def apply(batch: Batch, state, **extra):
        if "rng" not in extra or "step" not in extra:
            raise ValueError("replay_buffer needs the extras rng and step (steps.prepare passes them)")
        batch.require("adv_bt", "old_logp_bt", "reward_b", by="replay_buffer")
        unsupported = [f for f in ("old_value_bt", "return_bt", "baseline_b") if getattr(batch, f) is not None]
        if unsupported:
            raise ValueError(
                f"replay_buffer does not store {unsupported}: it replays group-relative "
                f"advantages; use it with an algorithm without a critic or greedy baseline"
            )
        if with_ref_logp:
            batch.require("ref_logp_bt", by="replay_buffer(with_ref_logp=True)")
        elif batch.ref_logp_bt is not None:
            raise ValueError("replay_buffer: the batch has ref_logp_bt; build the buffer with "
                             "with_ref_logp=True so replayed rows carry it too")
        g, n = batch.group_size, batch.batch_size
        groups = n // g
        if state["mask_bt"].shape[1:] != (g, batch.response_bt.shape[1]) or n % g:
            raise ValueError(
                f"replay_buffer was initialised for groups of {state['mask_bt'].shape[1]} rows × "
                f"{state['mask_bt'].shape[2]} tokens, got a batch of {n} rows in groups of {g} × "
                f"{batch.response_bt.shape[1]} tokens"
            )
        step, rng = extra["step"], extra["rng"]

        # 1. R distinct slots, uniform among those filled before this batch.
        scores = jnp.where(state["filled_c"], jax.random.gumbel(rng, (capacity,)), -jnp.inf)
        _, slots = jax.lax.top_k(scores, num_replay)
        valid_r = state["filled_c"][slots]
        replayed = {f: state[f][slots].reshape((num_replay * g,) + state[f].shape[2:]) for f in fields}
        valid_b = jnp.repeat(valid_r, g)

        # 2. Write the fresh groups that have a valid token (in batch order), oldest slots first.
        fresh = {
            "prompt_bp": batch.prompt_bp, "prompt_valid_bp": batch.prompt_valid_bp,
            "response_bt": batch.response_bt, "mask_bt": batch.mask_bt, "reward_b": batch.reward_b,
            "adv_bt": batch.adv_bt, "behavior_logp_bt": batch.old_logp_bt,
            "ref_logp_bt": batch.ref_logp_bt,
            "version_b": batch.version_b if batch.version_b is not None else jnp.full((n,), step, jnp.int32),
        }
        kept_g = (batch.mask_bt.reshape(groups, -1) > 0).any(-1)
        order = jnp.argsort(~kept_g, stable=True)  # kept groups first, in batch order
        num_kept = kept_g.sum()
        write = (state["cursor"] + jnp.arange(groups)) % capacity
        is_new = jnp.arange(groups) < num_kept

        def store(f):
            x = jnp.asarray(fresh[f]).reshape((groups, g) + state[f].shape[2:])[order].astype(state[f].dtype)
            keep = is_new.reshape((groups,) + (1,) * (x.ndim - 1))
            return state[f].at[write].set(jnp.where(keep, x, state[f][write]))

        new_state = {f: store(f) for f in fields}
        new_state["filled_c"] = state["filled_c"].at[write].set(state["filled_c"][write] | is_new)
        new_state["cursor"] = (state["cursor"] + num_kept.astype(jnp.int32)) % capacity

        # 3. Fresh rows, then the replayed groups (masked where the slot was empty).
        mask_r = replayed["mask_bt"] * valid_b[:, None]
        cat = lambda a, b: jnp.concatenate([a, b.astype(a.dtype)], axis=0)
        source_b = batch.source_b if batch.source_b is not None else jnp.full((n,), ON_POLICY, jnp.int32)
        behavior = batch.behavior_logp_bt if batch.behavior_logp_bt is not None else batch.old_logp_bt
        group_b = batch.group_b if batch.group_b is not None else jnp.arange(n, dtype=jnp.int32) // g
        version_b = fresh["version_b"]
        grown = batch.replace(
            prompt_bp=cat(batch.prompt_bp, replayed["prompt_bp"]),
            prompt_valid_bp=cat(batch.prompt_valid_bp, replayed["prompt_valid_bp"]),
            response_bt=cat(batch.response_bt, replayed["response_bt"]),
            mask_bt=cat(batch.mask_bt, mask_r),
            reward_b=cat(batch.reward_b, replayed["reward_b"]),
            group_b=cat(group_b, groups + jnp.arange(num_replay * g, dtype=jnp.int32) // g),
            behavior_logp_bt=cat(behavior, replayed["behavior_logp_bt"]),
            old_logp_bt=cat(batch.old_logp_bt, replayed["behavior_logp_bt"]),
            adv_bt=cat(batch.adv_bt, replayed["adv_bt"] * mask_r),
            source_b=cat(source_b, jnp.full((num_replay * g,), REPLAY, jnp.int32)),
            version_b=cat(version_b, replayed["version_b"]),
            ref_logp_bt=cat(batch.ref_logp_bt, replayed["ref_logp_bt"]) if with_ref_logp else None,
        )
        stale_b = (step - replayed["version_b"]).astype(jnp.float32)
        grown = grown.add_metrics(**{
            "replay/filled_frac": new_state["filled_c"].mean(),
            "replay/valid_frac": valid_r.mean(),
            "replay/staleness_mean": ops.masked_mean(stale_b, valid_b),
        })
        return grown, new_state

    return Transform(init, apply, frozenset({"old_logp"}))

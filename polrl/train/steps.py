"""Pure step functions: scoring forward, prepare, and the epochs × minibatches update.

Nothing here calls ``jit``, ``device_put`` or mesh APIs; the trainer does (batch axes are
constrained through ``polrl.sharding.constrain_batch``, an identity without a mesh). The model's graphdef
is static and passed by closure (``functools.partial``); parameters travel in ``PolicyState``.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from polrl import diagnostics, ops, sharding
from polrl.train import packing
from polrl.train import update as update_lib
from polrl.core import Algorithm, Batch, Collector, PolicyState, total_loss


# RNG streams folded out of ``PolicyState.rng`` for transforms (their ``rng`` extra); folding
# leaves the splits the update itself draws unchanged.
_PREPARE_STREAM, _OBJECTIVE_STREAM = 1, 2


def sequence_inputs(prompt_bp, prompt_valid_bp, response_bt):
    """The model inputs for ``prompt ++ response``: tokens, RoPE positions, key validity."""
    tokens = jnp.concatenate([prompt_bp, response_bt], axis=1)
    valid = jnp.concatenate([prompt_valid_bp, jnp.ones(response_bt.shape, bool)], axis=1)
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0).astype(jnp.int32)
    return tokens, positions, valid


def _hidden_full(model, batch: Batch):
    """Hidden states predicting each response token, from one forward over prompt ++ response."""
    tokens, positions, valid = sequence_inputs(batch.prompt_bp, batch.prompt_valid_bp, batch.response_bt)
    hidden, _ = model.forward(tokens, positions, valid)
    return hidden[:, batch.prompt_bp.shape[1] - 1 : -1]


def _hidden_shared_prompt(model, batch: Batch):
    """The same hidden states, running each group's (shared) prompt once.

    Rows ``[k·G, (k+1)·G)`` answer one prompt, and a prompt's hidden states and keys/values do
    not depend on the responses (causal attention), so the prompt is encoded once per group into
    a KV cache, the cache is repeated G times, and only the response tokens run per row. The
    gradient reaches the prompt's keys/values through the repeat (summed over the group).
    """
    g = batch.group_size
    prompt_bp, valid_bp = batch.prompt_bp[::g], batch.prompt_valid_bp[::g]
    (b, p), t = batch.response_bt.shape[0:1] + prompt_bp.shape[1:], batch.response_bt.shape[1]
    cache = model.init_cache(b // g, p + t - 1)
    positions_bp = jnp.maximum(jnp.cumsum(valid_bp, axis=1, dtype=jnp.int32) - 1, 0)
    hidden_p, cache = model.forward(prompt_bp, positions_bp, valid_bp, cache)
    cache = jax.tree.map(lambda x: jnp.repeat(x, g, axis=0) if x.ndim else x, cache)
    last = jnp.repeat(hidden_p[:, -1:], g, axis=0)
    if t == 1:
        return last
    positions_bt = jnp.repeat(positions_bp[:, -1:], g, axis=0) + 1 + jnp.arange(t - 1, dtype=jnp.int32)
    hidden_r, _ = model.forward(batch.response_bt[:, :-1], positions_bt, jnp.ones((b, t - 1), bool), cache)
    return jnp.concatenate([last, hidden_r], axis=1)


def _hidden_packed(model, batch: Batch, length: int, rows: int, fallback: bool):
    """The hidden states predicting each response token from a packed forward (``polrl.train.packing``:
    the batch's real tokens in ``rows`` rows of ``length``) and which positions were scored [B, T].
    With ``fallback`` the unpacked forward runs when the sequences do not fit (``lax.cond``); without,
    the caller has checked that they fit (``fits_packed``)."""
    tokens, _, valid = sequence_inputs(batch.prompt_bp, batch.prompt_valid_bp, batch.response_bt)
    real_len_b, response_len_b = packing.sequence_lengths(batch.prompt_valid_bp, batch.mask_bt)
    (tokens_rl, positions_rl, segments_rl), (row_bs, col_bs, _), fits = packing.pack(
        tokens, valid, real_len_b, length, rows)
    p = batch.prompt_bp.shape[1]

    def packed():
        hidden, _ = model.forward(tokens_rl, positions_rl, segments_rl > 0, segment_bt=segments_rl)
        return packing.unpack(hidden, row_bs[:, p - 1 : -1], col_bs[:, p - 1 : -1])

    hidden = jax.lax.cond(fits, packed, lambda: _hidden_full(model, batch)) if fallback else packed()
    scored_bt = jnp.arange(batch.response_bt.shape[1]) < response_len_b[:, None]
    return hidden, scored_bt


def split_micro(x: jax.Array, group_size: int, micro: int) -> jax.Array:
    """[rows, …] → [micro, rows / micro, …]: micro-batch i holds groups i, i + micro, …"""
    rows = x.shape[0]
    x = x.reshape(rows // (group_size * micro), micro, group_size, *x.shape[1:])
    return jnp.swapaxes(x, 0, 1).reshape(micro, rows // micro, *x.shape[3:])


def merge_micro(x: jax.Array, group_size: int, micro: int) -> jax.Array:
    """The inverse of ``split_micro``."""
    rows = x.shape[0] * x.shape[1]
    x = x.reshape(micro, rows // (group_size * micro), group_size, *x.shape[2:])
    return jnp.swapaxes(x, 0, 1).reshape(rows, *x.shape[3:])


def fallback_micro_batches(config, rows: int, group_size: int) -> int:
    """Micro-batches for the unpacked forward of a minibatch of ``rows`` that does not fit the packed
    layout: ``micro_batches`` · k, with k the least divisor of a micro-batch's groups that leaves at
    most ``pack_rows`` rows per micro-batch (the packed forward's row count, each row of length
    ``prompt + response`` ≤ ``pack_length``)."""
    groups = rows // config.micro_batches // group_size
    for k in range(1, groups + 1):
        if groups % k == 0 and groups // k * group_size <= config.pack_rows:
            return config.micro_batches * k
    raise ValueError(f"model.pack_rows={config.pack_rows} is smaller than a group of {group_size} rows: the unpacked "
                     f"fallback could not run in micro-batches of at most pack_rows rows; set pack_rows >= {group_size}")


def fits_packed(config, batch: Batch) -> jax.Array:
    """Whether every micro-batch's sequences fit ``config``'s packed layout (``pack_rows`` rows of
    ``pack_length``)."""
    real_len_b, _ = packing.sequence_lengths(batch.prompt_valid_bp, batch.mask_bt)
    parts = split_micro(real_len_b, batch.group_size, config.micro_batches)
    return jnp.all(jax.vmap(lambda n: packing.next_fit(n, config.pack_length, config.pack_rows)[2])(parts))


def score(graphdef, params, batch: Batch, *, temperature: float = 1.0, values: bool = False,
          detach_values: bool = False, full_logits: bool = False, chunk_size: int | None = None,
          mean_logp: bool = False, micro_batches: int | None = None,
          pack: bool = False, pack_fallback: bool = True) -> dict:
    """One forward: per-response-token log-prob, entropy and (optionally) value and logits.

    The LM head runs only on the positions that predict response tokens (hidden states
    P−1 … P+T−2), so no logits are computed for the prompt; when rows come in groups sharing a
    prompt (``batch.group_size > 1``) the prompt is encoded once per group. Log-probs use
    ``log_softmax(logits / temperature)``, the sampler's convention.

    ``chunk_size`` (None → ``model.config.logits_chunk_size``; 0 → off) runs the LM head on that
    many positions at a time (``ops.token_logp_and_entropy``), so [B, T, V] float32 logits never
    exist; same values and gradients. Ignored when ``full_logits`` asks for the whole array.

    ``detach_values`` computes ``value_bt`` from the hidden states under ``stop_gradient``: a loss on
    the values then trains the value head's own parameters only, never the trunk the policy shares.

    ``mean_logp`` also returns ``mean_logp_bt``, the vocabulary mean of the log-probs at each
    position (``ops.mean_log_prob_from_logits``; the need ``"old_mean_logp"``), from the same LM-head
    pass (chunked as above when chunking is on).

    ``micro_batches`` (None → ``model.config.micro_batches``; 1 → off) = m splits the rows into m
    micro-batches of whole groups and scores them one after another (``jax.lax.map``), each under
    ``jax.checkpoint``: the backward pass recomputes one micro-batch's forward at a time, so the
    activations held are one micro-batch's. Every output row is the same function of the same
    inputs, so values and gradients equal the unsplit forward's (up to summation order).
    Micro-batch i holds groups i, i + m, i + 2m, …, so under a data-sharded mesh each spans
    every device.

    ``pack`` (the trainer's scoring forwards set it; collectors' auxiliary scorings do not)
    with ``model.config.pack_length`` L > 0 runs the forward on the batch's real tokens packed into
    ``pack_rows`` rows of L (``polrl.train.packing``; per micro-batch with ``micro_batches``): the
    same values and gradients at every position up to a row's last ``mask_bt`` token, 0 past it.
    When the sequences do not fit, the unpacked forward runs (``lax.cond``); ``pack_fallback=False``
    leaves that choice to the caller (``update`` takes it around the whole gradient computation, since
    differentiating through the ``lax.cond`` would keep both branches' residuals).
    """
    model = nnx.merge(graphdef, params)
    config = getattr(model, "config", None)  # models without a config: no chunking, no micro-batches
    micro = getattr(config, "micro_batches", 1) if micro_batches is None else micro_batches
    kwargs = dict(temperature=temperature, values=values, detach_values=detach_values, full_logits=full_logits,
                  chunk_size=chunk_size, mean_logp=mean_logp, pack=pack, pack_fallback=pack_fallback)
    if micro > 1:
        return _score_micro_batches(graphdef, params, batch, micro, kwargs)
    pack_length = getattr(config, "pack_length", 0) if pack else 0
    if pack_length:
        h, scored_bt = _hidden_packed(model, batch, pack_length, config.pack_rows, pack_fallback)
    elif batch.group_size > 1:
        h = _hidden_shared_prompt(model, batch)
    else:
        h = _hidden_full(model, batch)
    if chunk_size is None:
        chunk_size = getattr(config, "logits_chunk_size", 0)
    if chunk_size and not full_logits:
        scores = ops.token_logp_and_entropy(
            h, model.logits, batch.response_bt, chunk_size=chunk_size, temperature=temperature, with_mean=mean_logp)
        out = dict(zip(("logp_bt", "entropy_bt", "mean_logp_bt"), scores))
    else:
        logits = model.logits(h) / temperature
        out = {
            "logp_bt": ops.log_softmax_at(logits, batch.response_bt),
            "entropy_bt": ops.entropy_from_logits(logits),
        }
        if mean_logp:
            out["mean_logp_bt"] = ops.mean_log_prob_from_logits(logits)
    if values:
        out["value_bt"] = model.value(jax.lax.stop_gradient(h) if detach_values else h)
    if full_logits:
        out["logits_btv"] = logits
    if pack_length:  # positions past a row's last masked-in token are not scored
        out = {k: jnp.where(scored_bt.reshape(scored_bt.shape + (1,) * (v.ndim - 2)), v, 0) for k, v in out.items()}
    return out


def _score_micro_batches(graphdef, params, batch: Batch, micro: int, kwargs: dict) -> dict:
    """``score`` of ``batch`` in ``micro`` rematerialised micro-batches of whole groups (see there)."""
    rows, g = batch.response_bt.shape[0], batch.group_size
    if rows % (g * micro):
        raise ValueError(f"model.micro_batches={micro} does not split the {rows // g} groups of {g} rows being "
                         f"scored into equal micro-batches; pick a divisor of {rows // g} groups")

    @jax.checkpoint
    def one(params, prompt_bp, prompt_valid_bp, response_bt, mask_bt):
        part = Batch(prompt_bp=prompt_bp, prompt_valid_bp=prompt_valid_bp, response_bt=response_bt,
                     mask_bt=mask_bt, group_size=g)
        return score(graphdef, params, part, micro_batches=1, **kwargs)

    split = functools.partial(split_micro, group_size=g, micro=micro)
    parts = jax.lax.map(lambda xs: one(params, *xs), (split(batch.prompt_bp), split(batch.prompt_valid_bp),
                                                      split(batch.response_bt), split(batch.mask_bt)))
    return {k: merge_micro(v, g, micro) for k, v in parts.items()}


def prepare(state: PolicyState, batch: Batch, *, algorithm: Algorithm, graphdef, temperature: float = 1.0):
    """Fills what the algorithm declared it needs, then runs ``algorithm.prepare``.

    * ``ref_logp`` → one reference forward;
    * ``values`` → the value head at rollout parameters (``old_value_bt``);
    * more than one update per batch, or the ``old_logp`` need → recomputed ``old_logp_bt``
      (else π_old = π_θ and the objective uses ``stop_gradient(logp)``, no forward pass);
    * ``old_mean_logp``, when ``old_logp_bt`` is recomputed → π_old's vocabulary-mean log-prob per
      position in ``aux["old_mean_logp_bt"]``, from that same forward.
    Then logs the on/off-policy diagnostics of the batch (``polrl.diagnostics``).
    Returns ``(batch, prepare_state)``.
    """
    needs = algorithm.needs
    if "ref_logp" in needs:
        if state.ref_params is None:
            raise ValueError("the algorithm needs reference log-probs but PolicyState.ref_params is None")
        ref = score(graphdef, state.ref_params, batch, temperature=temperature, pack=True)
        batch = batch.replace(ref_logp_bt=ref["logp_bt"])
    want_values = "values" in needs
    # π_old provided by the collector (``collectors.stale``: the behaviour policy) is kept as is.
    want_old = (algorithm.updates_per_batch > 1 or "old_logp" in needs) and batch.old_logp_bt is None
    want_mean = want_old and "old_mean_logp" in needs
    if want_values or want_old:
        cur = score(graphdef, state.params, batch, temperature=temperature, values=want_values, mean_logp=want_mean,
                    pack=True)
        if want_old:
            batch = batch.replace(old_logp_bt=cur["logp_bt"])
        if want_mean:
            batch = batch.replace(aux={**batch.aux, "old_mean_logp_bt": cur["mean_logp_bt"]})
        if want_values:
            batch = batch.replace(old_value_bt=cur["value_bt"] * batch.mask_bt)
    batch = jax.tree.map(jax.lax.stop_gradient, batch)
    batch = batch.add_metrics(**diagnostics.batch_diagnostics(batch, state.step))
    return algorithm.prepare.apply(
        batch, state.prepare_state, step=state.step, rng=jax.random.fold_in(state.rng, _PREPARE_STREAM)
    )


def _row_fields(batch: Batch) -> Batch:
    """The batch with scores and objective outputs cleared (what a minibatch slices)."""
    return batch.replace(logp_bt=None, entropy_bt=None, value_bt=None, logits_btv=None, terms={}, losses={}, metrics={})


def update(state: PolicyState, batch: Batch, *, algorithm: Algorithm, graphdef, temperature: float = 1.0):
    """``num_epochs`` passes of ``num_minibatches`` gradient steps over a prepared batch
    (``polrl.train.update.epochs``, with the LLM scoring forward ``score``).

    Minibatches are random partitions into whole groups (``batch.group_size`` consecutive rows),
    drawn anew each epoch from the state's RNG. Returns ``(state, metrics)`` with metrics
    averaged over the minibatch steps: every loss, every objective metric, ``loss``,
    ``grad_norm``, the mean token ``entropy``, the ratio diagnostics and ``skipped_nonfinite``
    (minibatches with a non-finite loss or gradient are skipped; ``step`` and the RNG still
    advance: the batch counts as consumed). With the ``old_mean_logp`` need and a recomputed
    π_old, the scoring forward also fills ``aux["mean_logp_bt"]``: π_θ's vocabulary-mean log-prob
    per position, without gradient.
    """
    want_values, want_logits = "values" in algorithm.needs, "logits" in algorithm.needs
    detach_values = "detached_values" in algorithm.needs
    want_mean = "old_mean_logp" in algorithm.needs and batch.old_logp_bt is not None
    rng, perm_rng = jax.random.split(state.rng)

    config = getattr(nnx.merge(graphdef, state.params), "config", None)
    packs = bool(getattr(config, "pack_length", 0))

    def scored(params, mb: Batch, pack: bool = packs, micro_batches: int | None = None) -> Batch:
        out = score(graphdef, params, mb, temperature=temperature, values=want_values, detach_values=detach_values,
                    full_logits=want_logits, mean_logp=want_mean, pack=pack, pack_fallback=False,
                    micro_batches=micro_batches)
        if want_mean:
            mean = jax.lax.stop_gradient(out.pop("mean_logp_bt"))
            mb = mb.replace(aux={**mb.aux, "mean_logp_bt": mean})
        return mb.replace(**out)

    def llm_metrics(mb: Batch) -> dict:
        entropy = ops.masked_mean(jax.lax.stop_gradient(mb.entropy_bt), mb.mask_bt)
        packed = {"pack/fits": fits_packed(config, mb).astype(jnp.float32)} if packs else {}
        return {**diagnostics.ratio_diagnostics(mb), "entropy": entropy, **packed}

    # A minibatch whose sequences do not fit the packed layout takes the unpacked gradient, in
    # micro-batches of at most pack_rows rows, so that it needs no more memory than the packed one.
    fallback = None
    if packs:
        micro = fallback_micro_batches(config, batch.response_bt.shape[0] // algorithm.num_minibatches, batch.group_size)
        fallback = (lambda mb: ~fits_packed(config, mb), functools.partial(scored, pack=False, micro_batches=micro))

    params, opt_state, objective_state, metrics = update_lib.epochs(
        state.params, state.opt_state, state.objective_state, _row_fields(batch), algorithm=algorithm,
        score=scored, key=perm_rng, step=state.step, objective_key=jax.random.fold_in(state.rng, _OBJECTIVE_STREAM),
        unit=batch.group_size, metrics_fn=llm_metrics, fallback=fallback)
    new_state = state.replace(
        step=state.step + 1, rng=rng, params=params, opt_state=opt_state, objective_state=objective_state
    )
    return new_state, metrics


def train_on_batch(state: PolicyState, batch: Batch, *, algorithm: Algorithm, graphdef, temperature: float = 1.0):
    """``prepare`` then ``update``: one full algorithm iteration on a rollout batch.

    Adds ``update_tokens`` / ``update_prompt_tokens``: the response and prompt tokens of the
    batch the update trains on (each epoch passes over them once), for counting compute."""
    batch = sharding.constrain_batch(batch)
    sizes = {"update_tokens": batch.mask_bt.sum(), "update_prompt_tokens": batch.prompt_valid_bp.sum().astype(jnp.float32)}
    batch, prepare_state = prepare(state, batch, algorithm=algorithm, graphdef=graphdef, temperature=temperature)
    state = state.replace(prepare_state=prepare_state)
    state, metrics = update(state, batch, algorithm=algorithm, graphdef=graphdef, temperature=temperature)
    return state, {**batch.metrics, **metrics, **sizes}


def init_state(params: Any, algorithm: Algorithm, rng, *, ref_params: Any = None, example: Batch | None = None,
               collector: Collector | None = None, prompts: int | None = None) -> PolicyState:
    """A fresh PolicyState for ``algorithm`` (and ``collector``, reading ``prompts`` per step).

    The reference is kept only when a transform needs reference log-probs or the collector
    samples from the reference (``"reference"`` in its needs), and as a copy, so the state never
    holds one buffer twice (it is donated to jit). ``example`` (a Batch of arrays or shape
    structs like the rollout batches) is handed to the transforms' ``init`` for those whose
    state depends on shapes.
    """
    keep_ref = "ref_logp" in algorithm.needs or (collector is not None and "reference" in collector.needs)
    if keep_ref:
        ref_params = jax.tree.map(jnp.copy, ref_params)
    return PolicyState(
        step=jnp.zeros((), jnp.int32),
        rng=rng,
        params=params,
        opt_state=algorithm.optimizer.init(params),
        ref_params=ref_params if keep_ref else None,
        prepare_state=algorithm.prepare.init(example),
        objective_state=algorithm.objective.init(example),
        collector_state=() if collector is None else collector.init(prompts),
    )

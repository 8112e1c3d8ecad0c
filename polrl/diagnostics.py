"""On/off-policy diagnostics, logged with every step's metrics (keys ``offpolicy/…``).

Two pure functions the update step calls for every algorithm (no per-algorithm code):

* ``batch_diagnostics(batch, step)`` once per rollout batch, before ``prepare``:
    - ``zero_variance_frac``: fraction of groups whose rewards are all equal (no learning signal
      for group-relative advantages);
    - ``staleness_mean`` / ``staleness_max``: policy versions behind, ``step − version_b``, over
      the policy's unaided rows (``core.own_rows``: 0 for fresh rollouts, > 0 for replayed rows);
      with per-token versions (``aux["version_bt"]``, −1 where no token: partial rollouts, whose
      rows span several policies) ``step − version_bt`` over those rows' ``mask_bt`` tokens, and
      ``context_staleness_mean`` / ``_max`` over every token of their responses so far (the
      context the trained tokens were drawn in);
    - ``mismatch_k1`` / ``mismatch_abs``: sampler vs trainer log-probs of the same tokens,
      mean of ``behavior_logp − old_logp`` and of its absolute value, on those rows (needs
      the trainer's ``old_logp_bt``; the sampler and the training forward differ only by
      numerics for fresh rows, by the policy change for replayed ones);
    - ``expert_frac`` / ``replay_frac`` / ``teacher_frac`` / ``guided_frac``: row mix by
      ``source_b``; with ``source_b``, ``guided_staleness_mean`` too (guided rows are the
      policy's samples, of its version, under guidance).
* ``ratio_diagnostics(batch)`` per minibatch inside the update, for the importance ratio of the
  current policy to the behaviour policy, ``w_t = π_θ(y_t)/μ(y_t)`` (``μ`` = ``behavior_logp_bt``),
  on the policy's unaided rows:
    - ``is_ratio_mean`` / ``is_ratio_max`` / ``is_ratio_min`` over tokens;
    - ``ess``: the normalised effective sample size of the sequence weights
      ``W_b = exp(Σ_t log w_t)``,  ``ESS/N = (Σ_b W_b)² / (N Σ_b W_b²)`` ∈ (0, 1] (Kong 1992),
      computed in log space: ``exp(2·lse(log W) − lse(2·log W) − log N)``. 1 means on-policy.
    A minibatch without loss-bearing tokens reports 1 for all four (the on-policy values).
    With ``source_b`` the same four are reported apart for teacher rows (``teacher_is_ratio_mean``
    …: π_θ against the teacher that sampled them) and guided rows (``guided_…``: π_θ as the update
    scores them, in the context the collector gave them, against the policy that sampled them).

Clip and gate fractions come from the objectives themselves (``clip_frac``, ``gate_frac`` …).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import ops
from polrl.core import EXPERT, GUIDED, REPLAY, SOURCE_NAMES, TEACHER, Batch, own_rows

PREFIX = "offpolicy/"
TOKEN_VERSION = "version_bt"  # aux: the policy version that drew each token (int32 [B, T], −1: none)
APART = (TEACHER, GUIDED)  # sources whose ratios are reported apart from the policy's own rows


def batch_diagnostics(batch: Batch, step) -> dict:
    """Per-batch diagnostics (see the module docstring); keys present only when computable."""
    out = {}
    rows_b = own_rows(batch)
    if batch.reward_b is not None and batch.group_b is not None and batch.group_size > 1:
        n = batch.batch_size
        zero_b = ops.zero_variance_groups(batch.reward_b, batch.group_b, n).astype(jnp.float32)
        out["zero_variance_frac"] = zero_b.mean()
    if TOKEN_VERSION in batch.aux:
        version_bt = batch.aux[TOKEN_VERSION]
        stale_bt = (step - version_bt).astype(jnp.float32)
        trained, drawn = batch.mask_bt * rows_b[:, None], (version_bt >= 0) * rows_b[:, None]
        out["staleness_mean"] = ops.masked_mean(stale_bt, trained)
        out["staleness_max"] = ops.masked_max(stale_bt, trained)
        out["context_staleness_mean"] = ops.masked_mean(stale_bt, drawn)
        out["context_staleness_max"] = ops.masked_max(stale_bt, drawn)
    elif batch.version_b is not None:
        stale_b = (step - batch.version_b).astype(jnp.float32)
        out["staleness_mean"] = ops.masked_mean(stale_b, rows_b)
        out["staleness_max"] = ops.masked_max(stale_b, rows_b)
    if batch.behavior_logp_bt is not None and batch.old_logp_bt is not None:
        m = batch.mask_bt * rows_b[:, None]
        d = batch.behavior_logp_bt - batch.old_logp_bt
        out["mismatch_k1"] = ops.masked_mean(d, m)
        out["mismatch_abs"] = ops.masked_mean(jnp.abs(d), m)
    if batch.source_b is not None:
        for source in (EXPERT, REPLAY, TEACHER, GUIDED):
            out[f"{SOURCE_NAMES[source]}_frac"] = (batch.source_b == source).mean()
        if batch.version_b is not None:
            guided_b = (batch.source_b == GUIDED).astype(jnp.float32)
            out["guided_staleness_mean"] = ops.masked_mean((step - batch.version_b).astype(jnp.float32), guided_b)
    return {PREFIX + k: v for k, v in out.items()}


def ratio_diagnostics(batch: Batch) -> dict:
    """Importance-ratio distribution and ESS of π_θ against the behaviour log-probs: over the
    policy's own rows, and apart over teacher and guided rows when ``source_b`` is present."""
    if batch.behavior_logp_bt is None or batch.logp_bt is None:
        return {}
    out = _ratio_stats(batch, own_rows(batch))
    if batch.source_b is not None:
        for source in APART:
            rows_b = (batch.source_b == source).astype(jnp.float32)
            out |= {f"{SOURCE_NAMES[source]}_{k}": v for k, v in _ratio_stats(batch, rows_b).items()}
    return {PREFIX + k: v for k, v in out.items()}


def _ratio_stats(batch: Batch, rows_b) -> dict:
    """``is_ratio_mean`` / ``_max`` / ``_min`` and ``ess`` over the rows ``rows_b`` [B]."""
    m = batch.mask_bt * rows_b[:, None]
    log_w = ops.log_ratio(jax.lax.stop_gradient(batch.logp_bt), batch.behavior_logp_bt)
    w = jnp.exp(log_w)
    log_w_b = jnp.where(rows_b > 0, (log_w * m).sum(-1), -jnp.inf)
    num_rows = jnp.maximum(rows_b.sum(), 1.0)
    log_ess = 2 * jax.nn.logsumexp(log_w_b) - jax.nn.logsumexp(2 * log_w_b) - jnp.log(num_rows)
    out = {
        "is_ratio_mean": ops.masked_mean(w, m),
        "is_ratio_max": ops.masked_max(w, m),
        "is_ratio_min": ops.masked_min(w, m),
        "ess": jnp.exp(log_ess),
    }
    # A minibatch with no loss-bearing token (all its groups filtered) reports the on-policy
    # values, so averages over minibatches are not pulled towards 0.
    empty = m.sum() == 0
    return {k: jnp.where(empty, 1.0, v) for k, v in out.items()}

"""Objective transforms: run on each minibatch inside ``value_and_grad``.

The scoring forward has already filled ``logp_bt`` (differentiable), ``entropy_bt`` and, when
declared, ``value_bt``. Each transform adds a named per-token loss term (``batch.add_term``) or
a scalar loss (``batch.add_loss``) and logs metrics; ``aggregate(mode)`` turns the pending
per-token terms into scalars, so the loss-reduction choice is one explicit, visible parameter.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import ops
from polrl.core import Batch, Transform, stateless


def old_logp(batch: Batch) -> jax.Array:
    """π_old's log-probs: the recomputed ones when present, else ``stop_gradient(logp)``.

    ``old_logp_bt is None`` means the parameters have not moved since the rollout (one update
    per batch), so π_old = π_θ exactly and no extra forward pass is needed.
    """
    if batch.old_logp_bt is not None:
        return batch.old_logp_bt
    return jax.lax.stop_gradient(batch.logp_bt)


def clipped_policy_gradient(
    *,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    dual_clip: float | None = None,
    seq_mask_delta: float | None = None,
) -> Transform:
    """PPO's clipped surrogate per token (Schulman et al. 2017), term ``"pg"``.

        ρ_t = exp(clip(log π_θ − log π_old, −20, 20))
        L_t = max(−A_t ρ_t, −A_t clip(ρ_t, 1−ε_low, 1+ε_high))
        dual clip (Ye et al. 2020), for A_t < 0:  L_t = min(L_t, −c A_t)

    Off-policy sequence masking (``seq_mask_delta`` = δ; DeepSeek-V3.2, arXiv 2512.02556, and
    Trinity-RFT's PPO loss ``enable_sequence_masking`` / ``delta``):

        D_i   = 1/|y_i| Σ_t (log π_old(y_i,t) − log π_θ(y_i,t))    (the sequence's mean k1 of π_old ‖ π_θ)
        M_i,t = 0 if A_i,t < 0 and D_i > δ, else 1;     L_t ← M_i,t · L_t

    Negative-advantage tokens of sequences that the update has already moved away from (π_θ
    assigns them less probability than π_old did, on average over the sequence) stop pushing
    further; with a per-sequence advantage the whole row leaves the term. Off by default
    (``None``); Trinity's default δ when enabled is 0.1. Masked tokens keep counting in the
    aggregation's denominators and in the KL/entropy terms (Trinity multiplies the PPO loss by
    the mask; the paper's objective keeps its 1/|o_i|). With one update per batch π_old = π_θ,
    D_i = 0 and nothing is masked (δ ≥ 0).

    Logs ``clip_frac`` (clipped tokens), ``ratio_mean`` and ``ratio_max`` over valid tokens,
    ``dual_clip_frac`` (A < 0 and ρ > c) when the dual clip is on, and ``seq_mask_frac`` (valid
    tokens masked) and ``seq_kl_mean`` (mean D_i over sequences with a valid token) when the
    sequence mask is on.
    """
    if seq_mask_delta is not None and not seq_mask_delta >= 0.0:
        raise ValueError(f"clipped_policy_gradient: seq_mask_delta={seq_mask_delta} must be >= 0 (or None: off)")

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "adv_bt", by="clipped_policy_gradient")
        log_ratio = ops.log_ratio(batch.logp_bt, old_logp(batch))
        ratio = jnp.exp(log_ratio)
        loss_bt, clipped_bt = ops.clipped_surrogate(
            ratio, batch.adv_bt, eps_low=eps_low, eps_high=eps_high, dual_clip=dual_clip
        )
        m = batch.mask_bt
        sg_ratio = jax.lax.stop_gradient(ratio)
        metrics = dict(
            clip_frac=ops.masked_mean(clipped_bt, m),
            ratio_mean=ops.masked_mean(sg_ratio, m),
            ratio_max=ops.masked_max(sg_ratio, m),
        )
        if dual_clip is not None:
            dual = ((batch.adv_bt < 0) & (sg_ratio > dual_clip)).astype(jnp.float32)
            metrics["dual_clip_frac"] = ops.masked_mean(dual, m)
        if seq_mask_delta is not None:
            seq_kl_b = ops.masked_mean(-jax.lax.stop_gradient(log_ratio), m, axis=1)
            masked_bt = (batch.adv_bt < 0) & (seq_kl_b > seq_mask_delta)[:, None]
            loss_bt = jnp.where(masked_bt, 0.0, loss_bt)
            metrics["seq_mask_frac"] = ops.masked_mean(masked_bt.astype(jnp.float32), m)
            metrics["seq_kl_mean"] = ops.masked_mean(seq_kl_b, jnp.any(m != 0, axis=1))
        return batch.add_term("pg", loss_bt).add_metrics(**metrics)

    return stateless(fn)


_KL = ops.KL_ESTIMATORS


def kl_penalty(*, coef: float, estimator: str = "k3") -> Transform:
    """β · KL(π_θ ‖ π_ref) per token in the loss, term ``"kl"`` (GRPO: k3, β = 0.04).

        k1 = log π_θ − log π_ref,   k2 = ½ (log π_θ − log π_ref)²,
        k3 = exp(d) − d − 1 with d = log π_ref − log π_θ   (Schulman 2020; clamped to ±10)
        abs = |log π_θ − log π_ref|                         (verl's "abs")
        "k1+", "k3+", "abs+": that value, with k2's gradient (straight through, ``polrl.ops.kl``)

    Logs ``kl`` (the estimator's token mean). Needs ``ref_logp``.
    """
    if estimator not in _KL:
        raise ValueError(f"kl_penalty: unknown estimator {estimator!r}; use one of {sorted(_KL)}")
    kl_fn = _KL[estimator]

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "ref_logp_bt", by="kl_penalty")
        kl_bt = kl_fn(batch.logp_bt, batch.ref_logp_bt)
        batch = batch.add_metrics(kl=ops.masked_mean(jax.lax.stop_gradient(kl_bt), batch.mask_bt))
        return batch.add_term("kl", coef * kl_bt) if coef else batch

    return stateless(fn, needs=("ref_logp",))


def entropy_bonus(*, coef: float) -> Transform:
    """−c · H(π_θ(·|s_t)) per token, term ``"entropy"`` (maximizes entropy for c > 0)."""

    def fn(batch: Batch) -> Batch:
        batch.require("entropy_bt", by="entropy_bonus")
        return batch.add_term("entropy", -coef * batch.entropy_bt)

    return stateless(fn)


def value_loss(*, coef: float = 0.5, clip: float | None = 0.2) -> Transform:
    """Clipped value regression (PPO), term ``"value"``.

        L_t = c · ½ max((V_t − G_t)², (V_old,t + clip(V_t − V_old,t, −ε_v, ε_v) − G_t)²)
    """

    def fn(batch: Batch) -> Batch:
        batch.require("value_bt", "old_value_bt", "return_bt", by="value_loss")
        v, v_old, g = batch.value_bt, batch.old_value_bt, batch.return_bt
        err = (v - g) ** 2
        if clip is not None:
            err = jnp.maximum(err, (v_old + jnp.clip(v - v_old, -clip, clip) - g) ** 2)
        batch = batch.add_metrics(value_error=ops.masked_mean(jax.lax.stop_gradient(err), batch.mask_bt))
        return batch.add_term("value", 0.5 * coef * err)

    return stateless(fn, needs=("values",))


def nll() -> Transform:
    """Negative log-likelihood of the response tokens (SFT), term ``"nll"``: L_t = −log π_θ(y_t)."""

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", by="nll")
        return batch.add_term("nll", -batch.logp_bt)

    return stateless(fn)


def preference_loss(*, beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing: float = 0.0) -> Transform:
    """Pairwise preference loss (DPO, Rafailov et al. 2023; IPO, Azar et al. 2023), loss ``"dpo"``.

    Rows come in groups of two (``group_b``); within a group the row with the higher
    ``reward_b`` is the chosen one y_w, the other y_l. With sequence log-ratios
    s = Σ_t (log π_θ − log π_ref) over the response,

        h = s(y_w) − s(y_l)
        sigmoid: L = −(1−ε) log σ(β h) − ε log σ(−β h)      (ε = label smoothing, cDPO)
        ipo:     L = (h/|y| − 1/(2β))²  with length-normalised s (mean over tokens)

    averaged over the groups whose two rewards differ (ties carry no preference). Logs
    ``pref_accuracy`` (h > 0) and ``pref_margin`` (mean h).
    """
    if loss_type not in ("sigmoid", "ipo"):
        raise ValueError(f"preference_loss: loss_type must be 'sigmoid' or 'ipo', got {loss_type!r}")

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "ref_logp_bt", "reward_b", "group_b", by="preference_loss")
        m = batch.mask_bt
        s_b = ((batch.logp_bt - batch.ref_logp_bt) * m).sum(-1)
        if loss_type == "ipo":
            s_b = s_b / jnp.maximum(m.sum(-1), 1.0)
        n = batch.batch_size
        mean_b, _, _ = ops.group_stats(batch.reward_b, batch.group_b, n, ddof=0)
        sign_b = jnp.sign(batch.reward_b - mean_b)
        h_g = jax.ops.segment_sum(sign_b * s_b, batch.group_b, num_segments=n)
        valid_g = jax.ops.segment_sum(jnp.abs(sign_b), batch.group_b, num_segments=n) == 2
        if loss_type == "sigmoid":
            loss_g = -(1 - label_smoothing) * jax.nn.log_sigmoid(beta * h_g) - label_smoothing * jax.nn.log_sigmoid(-beta * h_g)
        else:
            loss_g = (h_g - 1.0 / (2.0 * beta)) ** 2
        w = valid_g.astype(jnp.float32)
        denom = jnp.maximum(w.sum(), 1.0)
        h_sg = jax.lax.stop_gradient(h_g)
        return batch.add_loss("dpo", (loss_g * w).sum() / denom).add_metrics(
            pref_accuracy=((h_sg > 0) * w).sum() / denom,
            pref_margin=(h_sg * w).sum() / denom,
            pref_pairs=w.sum(),
        )

    return stateless(fn, needs=("ref_logp",))


def aggregate(mode: str, *, max_len: int | None = None) -> Transform:
    """Reduces every pending per-token term to a scalar loss with ``polrl.ops.aggregate``.

    Modes: ``token_mean`` (DAPO), ``seq_mean_token_mean`` (GRPO, GSPO), ``seq_mean_token_sum``,
    ``seq_mean_token_sum_norm`` (Dr.GRPO: per-sequence token sum / constant ``max_len``).
    """
    ops.aggregate(jnp.zeros((1, 1)), jnp.ones((1, 1)), mode, max_len=max_len)  # validates now

    def fn(batch: Batch) -> Batch:
        losses = {
            name: ops.aggregate(term, batch.mask_bt, mode, max_len=max_len)
            for name, term in batch.terms.items()
        }
        for name in losses:
            if name in batch.losses:
                raise ValueError(f"loss {name!r} already exists; rename the term")
        return batch.replace(terms={}, losses={**batch.losses, **losses})

    return stateless(fn)

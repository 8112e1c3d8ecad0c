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


def value_loss(*, coef: float = 0.5, clip: float | None = 0.2, detached: bool = False) -> Transform:
    """Clipped value regression (PPO), term ``"value"``.

        L_t = c · ½ max((V_t − G_t)², (V_old,t + clip(V_t − V_old,t, −ε_v, ε_v) − G_t)²)

    ``detached`` asks for values computed on the hidden states under stop_gradient (the need
    ``"detached_values"``): the loss then trains the value head alone, not the shared trunk.
    """

    def fn(batch: Batch) -> Batch:
        batch.require("value_bt", "old_value_bt", "return_bt", by="value_loss")
        v, v_old, g = batch.value_bt, batch.old_value_bt, batch.return_bt
        err = (v - g) ** 2
        if clip is not None:
            err = jnp.maximum(err, (v_old + jnp.clip(v - v_old, -clip, clip) - g) ** 2)
        batch = batch.add_metrics(value_error=ops.masked_mean(jax.lax.stop_gradient(err), batch.mask_bt))
        return batch.add_term("value", 0.5 * coef * err)

    return stateless(fn, needs=("values", "detached_values") if detached else ("values",))


def nll() -> Transform:
    """Negative log-likelihood of the response tokens (SFT), term ``"nll"``: L_t = −log π_θ(y_t)."""

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", by="nll")
        return batch.add_term("nll", -batch.logp_bt)

    return stateless(fn)


PREFERENCE_LOSS_TYPES = ("sigmoid", "robust", "hinge", "ipo", "simpo", "orpo", "kto")
_REFERENCE_FREE = ("simpo", "orpo")


def _log1mexp(x: jax.Array) -> jax.Array:
    """log(1 − exp(x)) for x < 0, stable on both sides of −log 2."""
    t = -0.6931471805599453
    x = jnp.minimum(x, -1e-7)  # ā = 0 (P = 1) has infinite log odds; keep it finite
    low = x < t
    # each branch sees only its own range, so the unused one has a finite gradient under where
    return jnp.where(low, jnp.log1p(-jnp.exp(jnp.where(low, x, t))), jnp.log(-jnp.expm1(jnp.where(low, t, x))))


def preference_loss(
    *,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    simpo_gamma: float = 0.5,
    orpo_lambda: float = 0.1,
    kto_desirable_weight: float = 1.0,
    kto_undesirable_weight: float = 1.0,
    kto_threshold: float = 0.5,
) -> Transform:
    """The offline pair-loss family (DPO and relatives): one transform, one ``loss_type`` each.

    Rows come in groups of two (``group_b``); within a group the row with the higher
    ``reward_b`` is the chosen one y_w, the other y_l (groups whose two rewards tie carry no
    preference and are left out of every pair loss). With per-row sums over response tokens
    ``S(y) = Σ_t log π_θ``, ``S_ref(y) = Σ_t log π_ref``, lengths |y| and means ``ā(y) = S(y)/|y|``:

        h = [S(y_w) − S_ref(y_w)] − [S(y_l) − S_ref(y_l)]

    ``sigmoid`` — DPO, "Direct Preference Optimization: Your Language Model is Secretly a Reward
        Model" (Rafailov et al. 2023, arXiv 2305.18290), with conservative-DPO label smoothing ε
        (cDPO):  L = −(1−ε) log σ(βh) − ε log σ(−βh).  ε = 0 is plain DPO. (TRL 1.16's DPO
        ``sigmoid`` ignores ``label_smoothing``: equal to polrl only at ε = 0.) Loss ``"dpo"``.
    ``robust`` — "Provably Robust DPO" (Chowdhury et al. 2024, arXiv 2403.00409), the unbiased
        loss under label-flip rate ε:  L = [−(1−ε) log σ(βh) + ε log σ(−βh)] / (1 − 2ε).
        Loss ``"dpo"``.
    ``hinge`` — SLiC, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback" (Zhao et al.
        2023, arXiv 2305.10425), with DPO's log-ratios:  L = max(0, 1 − βh).  Loss ``"dpo"``.
    ``ipo`` — "A General Theoretical Paradigm to Understand Learning from Human Preferences"
        (Azar et al. 2023, arXiv 2310.12036):  L = (h̄ − 1/(2β))², where h̄ uses per-token MEAN
        log-ratios (TRL's length normalisation).  Loss ``"dpo"``.
    ``simpo`` — "SimPO: Simple Preference Optimization with a Reference-Free Reward" (Meng et al.
        2024, arXiv 2405.14734), reference-free and length-normalised:
        L = −log σ(β(ā(y_w) − ā(y_l)) − γ),  γ = ``simpo_gamma``. TRL's CPO ``simpo`` with
        ``cpo_alpha = 0`` writes it β·(Δā − γ/β), the same number. Loss ``"simpo"``.
    ``orpo`` — "ORPO: Monolithic Preference Optimization without Reference Model" (Hong et al.
        2024, arXiv 2403.07691), reference-free:
        log odds(y) = ā(y) − log(1 − exp(ā(y)))
        L = −ā(y_w) + λ·(−log σ(log odds(y_w) − log odds(y_l))),  λ = ``orpo_lambda``.
        Losses ``"nll"`` (the chosen's mean-token NLL averaged over pairs) and ``"orpo"`` (λ·OR).
    ``kto`` — "KTO: Model Alignment as Prospect Theoretic Optimization" (Ethayarajh et al. 2024,
        arXiv 2402.01306), UNPAIRED: each row is desirable when ``Batch.aux["label_b"]`` is true
        (when present) else when ``reward_b ≥ kto_threshold``; ``group_b`` is not used. With
        r = S(y) − S_ref(y) and the reference point
        z = stop_gradient(max(0, mean over the batch's rows of r))  (matched rows),
        L = λ_D (1 − σ(β(r − z))) for desirable rows, λ_U (1 − σ(β(z − r))) for undesirable,
        averaged over rows. TRL estimates z from MISMATCHED (prompt, other row's completion)
        pairs, as the paper suggests; the matched-row estimate here is polrl's choice. Loss ``"kto"``.

    Defaults are TRL's (β = 0.1, γ = 0.5, λ = 0.1, λ_D = λ_U = 1); the SimPO paper uses β ≈ 2–2.5
    (see the ``simpo`` noun). ``sigmoid`` / ``robust`` / ``hinge`` / ``ipo`` / ``kto`` need
    ``ref_logp``; ``simpo`` / ``orpo`` declare no need, so no reference forward runs. Logs
    ``pref_accuracy`` (margin > 0), ``pref_margin`` (mean margin: h, h̄, Δā or the log-odds
    difference) and ``pref_pairs``; ``kto`` logs ``kto_z`` and ``kto_desirable``.
    """
    if loss_type not in PREFERENCE_LOSS_TYPES:
        raise ValueError(f"preference_loss: loss_type must be one of {PREFERENCE_LOSS_TYPES}, got {loss_type!r}")
    if not beta > 0:
        raise ValueError(f"preference_loss: beta must be > 0, got {beta!r}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"preference_loss: label_smoothing must lie in [0, 0.5), got {label_smoothing!r}")
    if orpo_lambda < 0 or kto_desirable_weight < 0 or kto_undesirable_weight < 0:
        raise ValueError("preference_loss: orpo_lambda / kto_*_weight must be >= 0")
    eps = label_smoothing
    needs_ref = loss_type not in _REFERENCE_FREE

    def kto(batch: Batch) -> Batch:
        batch.require("logp_bt", "ref_logp_bt", "reward_b", by="preference_loss(kto)")
        m = batch.mask_bt
        r_b = ((batch.logp_bt - batch.ref_logp_bt) * m).sum(-1)
        row_b = (m.sum(-1) > 0).astype(r_b.dtype)
        n_rows = jnp.maximum(row_b.sum(), 1.0)
        if "label_b" in batch.aux:
            desirable_b = jnp.asarray(batch.aux["label_b"]).astype(bool)
        else:
            desirable_b = batch.reward_b >= kto_threshold
        z = jax.lax.stop_gradient(jnp.maximum((r_b * row_b).sum() / n_rows, 0.0))
        loss_b = jnp.where(
            desirable_b,
            kto_desirable_weight * (1.0 - jax.nn.sigmoid(beta * (r_b - z))),
            kto_undesirable_weight * (1.0 - jax.nn.sigmoid(beta * (z - r_b))),
        )
        r_sg = jax.lax.stop_gradient(r_b)
        correct_b = jnp.where(desirable_b, r_sg > z, r_sg < z)
        return batch.add_loss("kto", (loss_b * row_b).sum() / n_rows).add_metrics(
            kto_z=z,
            kto_desirable=(desirable_b * row_b).sum() / n_rows,
            pref_accuracy=(correct_b * row_b).sum() / n_rows,
        )

    def pairs(batch: Batch) -> Batch:
        fields = ("logp_bt", "ref_logp_bt", "reward_b", "group_b") if needs_ref else ("logp_bt", "reward_b", "group_b")
        batch.require(*fields, by=f"preference_loss({loss_type})")
        m = batch.mask_bt
        len_b = jnp.maximum(m.sum(-1), 1.0)
        n = batch.batch_size
        mean_b, _, _ = ops.group_stats(batch.reward_b, batch.group_b, n, ddof=0)
        sign_b = jnp.sign(batch.reward_b - mean_b)  # +1 chosen, −1 rejected, 0 tie
        chosen_b = (sign_b > 0).astype(m.dtype)

        def diff(x_b):  # x(y_w) − x(y_l) per group
            return jax.ops.segment_sum(sign_b * x_b, batch.group_b, num_segments=n)

        valid_g = jax.ops.segment_sum(jnp.abs(sign_b), batch.group_b, num_segments=n) == 2
        w = valid_g.astype(m.dtype)
        denom = jnp.maximum(w.sum(), 1.0)
        losses = {}
        if loss_type in ("sigmoid", "robust", "hinge", "ipo"):
            s_b = ((batch.logp_bt - batch.ref_logp_bt) * m).sum(-1)
            if loss_type == "ipo":
                s_b = s_b / len_b
            h_g = diff(s_b)
            if loss_type == "sigmoid":
                loss_g = -(1 - eps) * jax.nn.log_sigmoid(beta * h_g) - eps * jax.nn.log_sigmoid(-beta * h_g)
            elif loss_type == "robust":
                loss_g = (-(1 - eps) * jax.nn.log_sigmoid(beta * h_g) + eps * jax.nn.log_sigmoid(-beta * h_g)) / (1 - 2 * eps)
            elif loss_type == "hinge":
                loss_g = jax.nn.relu(1.0 - beta * h_g)
            else:
                loss_g = (h_g - 1.0 / (2.0 * beta)) ** 2
            losses["dpo"] = loss_g
        else:
            avg_b = (batch.logp_bt * m).sum(-1) / len_b
            if loss_type == "simpo":
                h_g = diff(avg_b)
                losses["simpo"] = -jax.nn.log_sigmoid(beta * h_g - simpo_gamma)
            else:  # orpo
                h_g = diff(avg_b - _log1mexp(avg_b))
                nll_g = jax.ops.segment_sum(-chosen_b * avg_b, batch.group_b, num_segments=n)
                losses["nll"] = nll_g
                losses["orpo"] = -orpo_lambda * jax.nn.log_sigmoid(h_g)
        for name, loss_g in losses.items():
            batch = batch.add_loss(name, (loss_g * w).sum() / denom)
        h_sg = jax.lax.stop_gradient(h_g)
        return batch.add_metrics(
            pref_accuracy=((h_sg > 0) * w).sum() / denom,
            pref_margin=(h_sg * w).sum() / denom,
            pref_pairs=w.sum(),
        )

    fn = kto if loss_type == "kto" else pairs
    return stateless(fn, needs=("ref_logp",) if needs_ref else ())


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

"""OPMD, AsymRE and the REC family: group-relative REINFORCE read as an off-policy method.

Yao et al. 2025, "Group-Relative REINFORCE Is Secretly an Off-Policy Algorithm" (arXiv
2509.24203), derive the group-mean REINFORCE loss without assuming where the data comes from,
and read two earlier methods as regularized forms of it: OPMD (online policy mirror descent, the
loss of Kimi k1.5, arXiv 2501.12599) and AsymRE (asymmetric REINFORCE, arXiv 2506.20520). REC
("REINFORCE with clipping") is the paper's family of masks and weights on that REINFORCE term.
Reference code: Trinity-RFT ``trinity/algorithm/advantage_fn/{opmd,asymre,rec}_advantage.py`` and
``policy_loss_fn/{opmd,rec}_policy_loss.py``.

Every loss here is a REINFORCE term with a *detached* importance ratio: the ratio ρ = π_θ/π_old
only masks tokens (REC's "clipping") or weights them; it is never differentiated. With one update
per batch π_old = π_θ, so ρ = 1 and every mask and weight is the identity.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import objectives, ops
from polrl.algorithms.policy_gradient import REWARD_SIDE_OPTIONS, check_options, pg_algorithm
from polrl.core import Algorithm, Batch, Transform, stateless

BASELINES = ("mean", "logavgexp")
CLIP_MODES = ("none", "one_side", "two_side", "ring", "gspo_one_side")
WEIGHTS = ("none", "importance_sampling", "truncated_importance_sampling", "gspo_importance_sampling", "advantage")
REGULARIZERS = ("none", "forward_kl", "k2")


def _choice(value: str, name: str, options) -> None:
    if value not in options:
        raise ValueError(f"{name}={value!r} is not one of {list(options)}")


# ----------------------------------------------------------------------------- advantages


def shifted_baseline_advantage(*, baseline: str = "mean", tau: float = 1.0, shift: float = 0.0) -> Transform:
    """A_i = r_i − (b_g + δ), broadcast over the response tokens (OPMD, AsymRE).

        b_g = mean_{j∈g} r_j                                   (baseline="mean")
        b_g = τ·log( (1/|g|) Σ_{j∈g} exp(r_j/τ) )             (baseline="logavgexp", a soft max)

    δ = ``shift``: AsymRE's baseline shift (δ < 0 puts the baseline below the group mean, so
    learning leans toward the positive samples). Groups of one get advantage 0 (polrl's
    convention, as GRPO/RLOO here; Trinity uses b = 0 there, i.e. A = r − δ). τ only enters the
    logavgexp baseline, which needs τ > 0; the mean baseline ignores it (any τ ≥ 0).
    """
    _choice(baseline, "baseline", BASELINES)
    if baseline == "logavgexp" and not tau > 0:
        raise ValueError(f"tau={tau} must be > 0 with baseline='logavgexp' (it divides the rewards)")
    if not tau >= 0:
        raise ValueError(f"tau={tau} must be >= 0")

    def fn(batch: Batch) -> Batch:
        batch.require("reward_b", "group_b", by="shifted_baseline_advantage")
        r, g, n = batch.reward_b, batch.group_b, batch.batch_size
        mean_b, _, count_b = ops.group_stats(r, g, n)
        if baseline == "mean":
            base_b = mean_b
        else:
            z = r / tau
            max_b = jax.ops.segment_max(z, g, num_segments=n)[g]
            sum_b = jax.ops.segment_sum(jnp.exp(z - max_b), g, num_segments=n)[g]
            base_b = tau * (max_b + jnp.log(sum_b) - jnp.log(count_b))
        adv_b = jnp.where(count_b > 1, r - (base_b + shift), 0.0)
        return batch.replace(adv_bt=adv_b[:, None] * batch.mask_bt)

    return stateless(fn)


def rec_advantage(*, std_normalize: bool = False, drop: str | None = None, eps: float = 1e-6) -> Transform:
    """REC's group advantage, optionally balancing negatives (Trinity ``rec_advantage``).

        A_i = r_i − mean_g r                         (std_normalize=False)
        A_i = (r_i − mean_g r) / (std_g r + ε)       (std_normalize=True, population std)

    ``drop="balance"``: in a group with more negatives (r < mean_g) than positives (r ≥ mean_g),
    a random subset of the surplus negatives gets advantage 0, and mean/std are recomputed over
    the kept rows. The subset is drawn with the ``rng`` extra (the trainer passes one to every
    prepare). Logs ``drop_frac``, the fraction of rows dropped. Groups of one (or with one kept
    row) get advantage 0 (Trinity: A = r there).
    """
    if drop not in (None, "balance"):
        raise ValueError(f"drop={drop!r}; use None or 'balance'")
    scale = "std" if std_normalize else "none"

    def fn(batch: Batch, *, rng=None) -> Batch:
        batch.require("reward_b", "group_b", by="rec_advantage")
        r, g, n = batch.reward_b, batch.group_b, batch.batch_size
        if drop is None:
            adv_b = ops.group_advantages(r, g, n, scale=scale, ddof=0, eps=eps)
            return batch.replace(adv_bt=adv_b[:, None] * batch.mask_bt)
        if rng is None:
            raise ValueError("rec_advantage(drop='balance') draws the dropped rows with the 'rng' extra; pass rng=…")
        mean_b, _, _ = ops.group_stats(r, g, n)
        neg_b = r < mean_b
        neg_count_b = jax.ops.segment_sum(neg_b.astype(jnp.int32), g, num_segments=n)[g]
        surplus_b = jnp.maximum(2 * neg_count_b - jax.ops.segment_sum(jnp.ones_like(g), g, num_segments=n)[g], 0)
        # a random order of the negatives within each group; the first `surplus` are dropped
        u_b = jax.random.uniform(rng, (n,))
        before_bc = (g[:, None] == g[None, :]) & neg_b[None, :] & (u_b[None, :] < u_b[:, None])
        dropped_b = neg_b & (before_bc.sum(axis=1) < surplus_b)
        kept_g = jnp.where(dropped_b, g + n, g)  # dropped rows: groups of their own
        adv_b = ops.group_advantages(r, kept_g, 2 * n, scale=scale, ddof=0, eps=eps)
        adv_b = jnp.where(dropped_b, 0.0, adv_b)
        batch = batch.replace(adv_bt=adv_b[:, None] * batch.mask_bt)
        return batch.add_metrics(drop_frac=dropped_b.astype(jnp.float32).mean())

    return stateless(fn)


# ----------------------------------------------------------------------------- objectives


def rec_policy_gradient(
    *,
    clip_mode: str = "none",
    weight: str = "none",
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    eps_low_prime: float = 0.6,
    eps_high_prime: float = 2.0,
    temp: float = 1.0,
    coef: float = 1.0,
) -> Transform:
    """REINFORCE with a detached ratio as mask and weight (REC), term ``"pg"``.

        ρ_t = sg(exp(log π_θ − log π_old)),    ρ̄_b = sg(exp(mean_t (log π_θ − log π_old)))
        L_t = −c · A_t · w_t · 1[in range]_t · log π_θ(y_t)

    in range (``clip_mode``):
        none           always
        one_side       (A ≥ 0 ∧ ρ ≤ 1+ε_h) ∨ (A ≤ 0 ∧ ρ ≥ 1−ε_l)
        two_side       1−ε_l ≤ ρ ≤ 1+ε_h
        ring           two_side ∨ (A ≥ 0 ∧ ρ ≤ 1−ε′_l) ∨ (A ≤ 0 ∧ ρ ≥ 1+ε′_h)
        gspo_one_side  one_side with the sequence ratio ρ̄ in place of ρ
    weight w (``weight``):
        none 1;  importance_sampling ρ;  truncated_importance_sampling clip(ρ, 1−ε′_l, 1+ε′_h);
        gspo_importance_sampling ρ̄;  advantage exp(A/temp)

    c = ``coef`` (OPMD's 1/(1+τ)). Defaults: ε_l = ε_h = 0.2, ε′_l = 0.6, ε′_h = 2.0 (Trinity's
    ``default_args``), temp = 1. REC-OneSide-NoIS is ``clip_mode="one_side"``; OPMD and AsymRE
    are ``none``/``none``. Logs ``clip_frac`` (tokens outside the range) and ``ratio_mean``.
    """
    _choice(clip_mode, "clip_mode", CLIP_MODES)
    _choice(weight, "weight", WEIGHTS)
    if not 0 < eps_low <= 1 or eps_high <= 0 or not 0 < eps_low_prime <= 1 or eps_high_prime <= 0:
        raise ValueError("rec_policy_gradient: need 0 < eps_low, eps_low_prime <= 1 and eps_high, eps_high_prime > 0")
    if temp <= 0:
        raise ValueError(f"temp must be > 0, got {temp}")

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "adv_bt", by="rec_policy_gradient")
        m, adv = batch.mask_bt, batch.adv_bt
        log_ratio = jax.lax.stop_gradient(ops.log_ratio(batch.logp_bt, objectives.old_logp(batch)))
        ratio = jnp.exp(log_ratio)
        seq_ratio = jnp.exp(ops.masked_mean(log_ratio, m, axis=1))[:, None] * jnp.ones_like(ratio)
        one_side = lambda r: ((adv >= 0) & (r <= 1 + eps_high)) | ((adv <= 0) & (r >= 1 - eps_low))
        two_side = (ratio >= 1 - eps_low) & (ratio <= 1 + eps_high)
        in_range = {
            "none": jnp.ones_like(ratio, bool),
            "one_side": one_side(ratio),
            "two_side": two_side,
            "ring": two_side | ((adv >= 0) & (ratio <= 1 - eps_low_prime)) | ((adv <= 0) & (ratio >= 1 + eps_high_prime)),
            "gspo_one_side": one_side(seq_ratio),
        }[clip_mode].astype(ratio.dtype)
        w = {
            "none": jnp.ones_like(ratio),
            "importance_sampling": ratio,
            "truncated_importance_sampling": jnp.clip(ratio, 1 - eps_low_prime, 1 + eps_high_prime),
            "gspo_importance_sampling": seq_ratio,
            "advantage": jnp.exp(adv / temp),
        }[weight]
        loss_bt = -coef * adv * w * in_range * batch.logp_bt
        return batch.add_term("pg", loss_bt).add_metrics(
            clip_frac=ops.masked_mean(1.0 - in_range, m), ratio_mean=ops.masked_mean(ratio, m)
        )

    return stateless(fn)


def rec_regularizer(*, kind: str, coef: float) -> Transform:
    """REC's optional regularizer on the policy update, term ``"reg"``.

        forward_kl:  L_t = −c · log π_θ(y_t)                   (pulls toward the data: KL(π_data ‖ π_θ))
        k2:          L_t =  c · (log π_θ(y_t) − log π_old(y_t))²   (Kimi's ½ absorbed into c, as Trinity)
    """
    _choice(kind, "regularizer", REGULARIZERS[1:])

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", by="rec_regularizer")
        if kind == "forward_kl":
            return batch.add_term("reg", -coef * batch.logp_bt)
        return batch.add_term("reg", coef * jnp.square(batch.logp_bt - objectives.old_logp(batch)))

    return stateless(fn)


# ----------------------------------------------------------------------------- nouns


def opmd(
    *, tau: float = 1.0, baseline: str = "mean", kl_coef: float = 0.001, kl_estimator: str = "k2", **options
) -> Algorithm:
    """Online Policy Mirror Descent (Kimi k1.5, arXiv 2501.12599; as in Trinity-RFT, arXiv 2509.24203).

        A_i = r_i − b_g,   b_g = mean_g r  or  τ·logavgexp_g(r/τ)
        L   = agg[ −A_i · log π_θ(y_t) / (1 + τ)  +  β · k2(π_θ, π_ref) ]

    No importance ratio: π_old is not used (the 1/(1+τ) factor is the mirror-descent step's
    regularization toward the current policy). τ = 0 is allowed with the mean baseline (the
    loss is then the plain group-mean REINFORCE term, Trinity's ``opmd`` with τ = 0); the
    logavgexp baseline needs τ > 0. Defaults: τ = 1, ``baseline="mean"``, k2 KL to
    the reference with β = 0.001 (Trinity's OPMD example runs ``kl_0.001``), ``token_mean``.
    INFERRED: Trinity has two τ's (advantage and loss) with the same default 1.0; polrl uses one
    τ for both, the regularization strength of the paper's mirror-descent step (checked against
    the paper's abstract, arXiv 2509.24203, and Trinity-RFT's code).

    Other keywords: see ``pg_algorithm`` (lr 1e-6, no entropy bonus, one update per batch), all
    but the prepare-side ``kl_in``, ``kl_target``, ``correction`` and ``correction_threshold``.
    """
    check_options("opmd", options, without=REWARD_SIDE_OPTIONS)
    return pg_algorithm(
        shifted_baseline_advantage(baseline=baseline, tau=tau), rec_policy_gradient(coef=1.0 / (1.0 + tau)),
        kl_coef=kl_coef, kl_estimator=kl_estimator, **options,
    )


def asymre(*, baseline_shift: float = -0.1, **options) -> Algorithm:
    """Asymmetric REINFORCE (Le Roux et al. 2025, arXiv 2506.20520; Trinity ``asymre``).

        A_i = r_i − (mean_g r + δ)
        L   = agg[ −A_i · log π_θ(y_t) ]

    δ = ``baseline_shift`` = −0.1 (a baseline under the group mean favours positive samples).
    No ratio, no clipping, no KL, no entropy (Trinity: the ``opmd`` loss with τ = 0);
    ``token_mean``. Trinity's example uses lr 6e-8 with sync_interval 250 (very off-policy);
    polrl's default lr is GRPO's.

    Other keywords: see ``pg_algorithm`` (its defaults are AsymRE's: lr 1e-6, β = 0,
    ``token_mean``, one update per batch), all but the prepare-side ``kl_in``, ``kl_target``,
    ``correction`` and ``correction_threshold``.
    """
    check_options("asymre", options, without=REWARD_SIDE_OPTIONS)
    return pg_algorithm(shifted_baseline_advantage(shift=baseline_shift), rec_policy_gradient(), **options)


def rec(
    *,
    clip_mode: str = "one_side",
    weight: str = "none",
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    eps_low_prime: float = 0.6,
    eps_high_prime: float = 2.0,
    temp: float = 1.0,
    std_normalize: bool = False,
    drop: str | None = None,
    regularizer: str = "none",
    regularizer_coef: float = 0.0,
    aggregation: str | None = None,
    **options,
) -> Algorithm:
    """REC: REINFORCE with clipping as a mask (Yao et al. 2025, arXiv 2509.24203).

        A_i = r_i − mean_g r   (÷ (std_g + ε) with ``std_normalize``; ``drop="balance"``)
        L   = agg[ −A_t · w_t · 1[in range]_t · log π_θ(y_t)  +  regularizer_t ]

    with the detached ratio ρ = π_θ/π_old selecting and weighting tokens (see
    ``rec_policy_gradient`` for every ``clip_mode`` and ``weight``). Paper variants:
    REC-OneSide-NoIS = ``clip_mode="one_side"`` (the default here, the paper's recommended
    variant), REC-Ring-NoIS = ``"ring"``, REC-TwoSide-IS ≈ PPO = ``"two_side"`` +
    ``weight="importance_sampling"``. ``regularizer``: ``"forward_kl"`` (−c·log π) or ``"k2"``
    (c·(log π − log π_old)²). ``aggregation=None`` → ``token_mean``, or ``seq_mean_token_mean``
    for ``gspo_one_side`` (Trinity forces it there). The masks act only when π_old ≠ π_θ, i.e.
    with ``num_epochs · num_minibatches > 1`` (the trainer then recomputes π_old).
    INFERRED: the mapping of the paper's variant names to these flags (checked against Trinity's
    ``rec_policy_loss.py`` and the paper's abstract); Trinity's
    ``fix_opd_advantage`` (on-policy distillation only) is not carried.

    Other keywords: see ``pg_algorithm`` (lr 1e-6, β = 0, one update per batch), all but the
    prepare-side ``kl_in``, ``kl_target``, ``correction`` and ``correction_threshold``.
    """
    check_options("rec", options, without=REWARD_SIDE_OPTIONS)
    if aggregation is None:
        aggregation = "seq_mean_token_mean" if clip_mode == "gspo_one_side" else "token_mean"
    _choice(regularizer, "regularizer", REGULARIZERS)
    terms = [rec_policy_gradient(
        clip_mode=clip_mode, weight=weight, eps_low=eps_low, eps_high=eps_high,
        eps_low_prime=eps_low_prime, eps_high_prime=eps_high_prime, temp=temp,
    )]
    if regularizer != "none":
        terms.append(rec_regularizer(kind=regularizer, coef=regularizer_coef))
    return pg_algorithm(
        rec_advantage(std_normalize=std_normalize, drop=drop), *terms, aggregation=aggregation, **options
    )

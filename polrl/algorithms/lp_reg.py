"""Lp-Reg: low-probability regularization (arXiv 2510.03222, "Low-probability Tokens Sustain
Exploration in Reinforcement Learning with Verifiable Reward").

Reference code: ``CarlanLark/Lp-Reg-dev`` ``verl/trainer/ppo/core_algos.py::
compute_policy_loss_lp_reg`` (the loss), ``verl/workers/actor/dp_actor.py::apply_min_p`` (the
proxy), ``recipe/lp_reg/*onpolicy*.sh`` (defaults).

GRPO's negative advantages keep pushing down rare but useful tokens ("reasoning sparks") until
exploration collapses. Lp-Reg protects them: among the negative-advantage tokens, the lowest-
probability fraction ρ that the min-p *proxy* distribution still keeps (so they are not noise)
and that the policy now rates below the proxy, are pulled toward the proxy by a KL term instead
of being clipped.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import advantages, objectives, ops
from polrl.algorithms.policy_gradient import REWARD_SIDE_OPTIONS, check_options, pg_algorithm
from polrl.core import Algorithm, Batch, Transform, stateless


def lowest_fraction(x_bt: jax.Array, candidates_bt: jax.Array, frac: float) -> jax.Array:
    """bool [B, T]: the k candidates with the smallest ``x``, k = max(1, ⌊frac · N⌋) over the N
    candidates of the whole batch, and none at all when k = 1 (Lp-Reg's rule: its top-k runs only
    for k > 1). Ties go to the earlier position (row-major), as a stable sort."""
    n = candidates_bt.sum()
    # ⌊N·frac⌋ as Python's int(N * frac); the 1e-4 absorbs float32 rounding just below an integer
    k = jnp.maximum(1, jnp.floor(n.astype(jnp.float32) * frac + 1e-4).astype(jnp.int32))
    order = jnp.argsort(jnp.where(candidates_bt, x_bt, jnp.inf).reshape(-1), stable=True)
    rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.size, dtype=order.dtype)).reshape(x_bt.shape)
    return candidates_bt & (rank < k) & (k > 1)


def lp_reg_policy_gradient(
    *,
    neg_frac: float = 0.01,
    pos_frac: float = 0.0,
    beta: float = 1.0,
    min_p: float = 0.02,
    min_p_mode: str = "relative",
    eps_low: float = 1.0,
    eps_high: float = 9.0,
) -> Transform:
    """PPO-clip per token, with selected low-probability tokens regularized toward a proxy; term ``"pg"``.

        π_proxy   = π_old filtered by min-p (keep p_v ≥ κ·max p) and renormalized (``ops.min_p_log_prob``)
        S⁻        = the ⌊ρ⁻·N⁻⌋ lowest-log-prob tokens among the N⁻ valid tokens with A < 0 (batch-wide)
        S⁺        = the same for A > 0 with ρ⁺ (off by default)
        R         = (S⁻ ∪ S⁺) ∩ {t : y_t kept by the filter ∧ log π_θ(y_t) < log π_proxy(y_t)}
        L_t       = −A_t ρ_t + β · k3(π_θ ‖ π_proxy)_t          for t ∈ R   (no clip)
        L_t       = max(−A_t ρ_t, −A_t clip(ρ_t, 1 − ε_l, 1 + ε_h))   otherwise

    with k3 = exp(d) − d − 1, d = log π_proxy − log π_θ (clamped as ``ops.kl_k3``). Selection and
    the proxy are computed without gradient. The proxy is π_old's: the transform reads the
    current (temperature-scaled) logits ``logits_btv`` and uses them as π_old, which is exact when
    the parameters have not moved since the rollout (one update per batch; ``lp_reg`` enforces
    it). Logs ``lp_reg_frac`` (regularized tokens / valid tokens), ``clip_frac`` and ``ratio_mean``.
    Defaults (on-policy recipe): ρ⁻ = 0.01, ρ⁺ = 0, β = 1, κ = 0.02 (relative min-p),
    clip range [0, 10] (ε_l = 1, ε_h = 9; inert on-policy where ρ = 1).
    """
    for name, frac in (("neg_frac", neg_frac), ("pos_frac", pos_frac)):
        if not 0.0 <= frac <= 1.0:
            raise ValueError(f"lp_reg_policy_gradient: {name}={frac} must be in [0, 1]")
    if min_p_mode not in ops.MIN_P_MODES:
        raise ValueError(f"lp_reg_policy_gradient: min_p_mode={min_p_mode!r} is not one of {ops.MIN_P_MODES}")
    if not 0.0 < min_p <= 1.0:
        raise ValueError(f"lp_reg_policy_gradient: min_p={min_p} must be in (0, 1]")

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "adv_bt", "logits_btv", by="lp_reg_policy_gradient")
        adv, valid = batch.adv_bt, batch.mask_bt > 0
        logp_sg = jax.lax.stop_gradient(batch.logp_bt)
        ratio = jnp.exp(ops.log_ratio(batch.logp_bt, objectives.old_logp(batch)))
        clip_loss, clipped = ops.clipped_surrogate(ratio, adv, eps_low=eps_low, eps_high=eps_high)
        proxy, kept = ops.min_p_log_prob(
            jax.lax.stop_gradient(batch.logits_btv), batch.response_bt, threshold=min_p, mode=min_p_mode
        )
        selected = lowest_fraction(logp_sg, valid & (adv < 0), neg_frac) | lowest_fraction(logp_sg, valid & (adv > 0), pos_frac)
        reg = selected & kept & (logp_sg < proxy)
        safe_proxy = jnp.where(reg, proxy, logp_sg)  # keeps −inf (filtered tokens) out of the graph
        reg_loss = -adv * ratio + beta * ops.kl_k3(batch.logp_bt, safe_proxy)
        loss_bt = jnp.where(reg, reg_loss, clip_loss)
        m = batch.mask_bt
        return batch.add_term("pg", loss_bt).add_metrics(
            lp_reg_frac=ops.masked_mean(reg.astype(jnp.float32), m),
            clip_frac=ops.masked_mean(clipped * (1.0 - reg), m),
            ratio_mean=ops.masked_mean(jax.lax.stop_gradient(ratio), m),
        )

    return stateless(fn, needs=("logits",))


def lp_reg(
    *,
    neg_frac: float = 0.01,
    pos_frac: float = 0.0,
    beta: float = 1.0,
    min_p: float = 0.02,
    min_p_mode: str = "relative",
    eps_low: float = 1.0,
    eps_high: float = 9.0,
    scale: str = "std",
    num_epochs: int = 1,
    num_minibatches: int = 1,
    **options,
) -> Algorithm:
    """Lp-Reg (arXiv 2510.03222): GRPO whose rare negative-advantage tokens are regularized
    toward a min-p proxy of π_old instead of being pushed down (``lp_reg_policy_gradient``).

        A_i = GRPO advantage (std-normalized, unbiased std)
        L   = agg_t[ −A ρ + β k3(π_θ‖π_proxy)  on the selected low-probability tokens,
                     PPO-clip elsewhere ]

    Defaults are the on-policy recipe's: ρ⁻ = ``neg_frac`` = 0.01, ρ⁺ = 0, β = 1, κ = 0.02
    (relative min-p), clip range [0, 10], no reference KL, no entropy bonus, ``token_mean``,
    one update per batch. Needs the full logits in the update (declared need ``logits``).
    Restriction: one update per batch. The proxy is π_old's min-p distribution, and the trainer
    keeps only π_old's log-probs of the taken tokens (``old_logp_bt``), not its vocabulary; with
    one update π_old = π_θ and the proxy is computed from the detached current logits.
    INFERRED: the min-p threshold is taken on the temperature-scaled distribution the update
    scores (the reference thresholds the raw logits; identical at temperature 1, the recipe's
    and polrl's arithmetic setting); the batch-wide top-k runs over the update minibatch
    (the reference: the micro-batch). Checked against ``compute_policy_loss_lp_reg`` in
    ``CarlanLark/Lp-Reg-dev``.

    Other keywords: see ``pg_algorithm`` (lr 1e-6, β = 0, k3, no entropy bonus, ``token_mean``),
    all but the prepare-side ``kl_in``, ``kl_target``, ``correction`` and ``correction_threshold``.
    """
    check_options("lp_reg", options, without=REWARD_SIDE_OPTIONS)
    if num_epochs * num_minibatches != 1:
        raise ValueError(
            f"lp_reg supports one update per batch (num_epochs={num_epochs}, num_minibatches="
            f"{num_minibatches}): its proxy is π_old's min-p distribution over the vocabulary, which "
            "the trainer does not keep; set num_epochs=num_minibatches=1"
        )
    return pg_algorithm(
        advantages.group_advantage(scale=scale),
        lp_reg_policy_gradient(
            neg_frac=neg_frac, pos_frac=pos_frac, beta=beta, min_p=min_p, min_p_mode=min_p_mode,
            eps_low=eps_low, eps_high=eps_high,
        ),
        num_epochs=num_epochs, num_minibatches=num_minibatches, **options,
    )

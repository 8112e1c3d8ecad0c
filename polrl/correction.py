"""Train/inference importance-sampling correction ("rollout correction"), a prepare transform.

Rows are drawn by the sampler μ (its log-probs are ``behavior_logp_bt``), but the objective's
π_old is the trainer's own recomputation (``old_logp_bt``): different kernels, precision or
staleness make the two differ, and the policy-gradient estimate is then off-policy by
ρ = π_old/μ (Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL
training"; verl's rollout correction, Liu, Li et al. 2025). With

    log ρ_t = clip(log π_old(y_t) − log μ(y_t), −20, 20)

the correction works at one of three levels:

    "token"      ρ_t                                    (per-token ratio)
    "sequence"   ρ_b = exp(clip(Σ_t log ρ_t, −20, 20))   (the product of the token ratios: the exact
                                                         sequence likelihood ratio; verl "sequence")
    "geometric"  ρ_b = exp(mean_t log ρ_t)               (geometric mean, length-normalised; verl's
                                                         "geometric" rejection level)

and in one of two modes, with threshold C > 1:

    "truncate"  (TIS)  adv_bt ← min(ρ, C) · adv_bt        (truncated importance sampling)
    "mask"      (MIS)  mask_bt ← mask_bt · [C_low ≤ ρ ≤ C]  (rejection: drop the tokens / whole
                                                           sequences outside; C_low = 1/C unless given)

Choices, checked against verl's ``rollout_corr_helper.py`` (read, not copied): the sequence ratio
is the product of the token ratios (verl's IS "sequence" level; the geometric mean is offered as
a separate level, as verl's rejection "geometric"); the default lower threshold of the mask is
1/C; the mask is applied to ``mask_bt`` so rejected tokens leave every loss term and every
token count, as verl's ``modified_response_mask``. The truncated weight scales the advantage
rather than the loss: every policy-gradient surrogate in polrl (PPO clip and dual clip, GSPO,
CISPO, SAPO) is positively homogeneous in A (L(w·A) = w·L(A) for w ≥ 0), so this equals
weighting the policy-gradient term, and leaves the KL and entropy terms unweighted, as verl.
Place it LAST in ``prepare`` (after advantages and any whitening).

Expert rows (``source_b = EXPERT``) have no sampler log-probs (``behavior_logp_bt = 0``): they
keep weight 1 and are never masked. On-policy batches (μ = π_old) make every level and mode the
identity. Needs ``old_logp`` (the trainer recomputes π_old even with one update per batch).
"""
from __future__ import annotations

import jax.numpy as jnp

from polrl import ops
from polrl.core import EXPERT, Batch, Transform, stateless

LEVELS = ("token", "sequence", "geometric")
MODES = ("truncate", "mask")
# The names nouns accept for their ``correction=`` keyword: "<level>_<mode>".
NAMED = {f"{level}_{mode}": (level, mode) for level in LEVELS for mode in MODES}

_LOG_LIMIT = 20.0  # exp(±20): the safety bound on every log-ratio, as verl


def log_importance_ratio(old_logp_bt, behavior_logp_bt, mask_bt, level: str):
    """log ρ at ``level``, per token [B, T] (sequence levels broadcast over the row's tokens)."""
    if level not in LEVELS:
        raise ValueError(f"correction level {level!r}; use one of {LEVELS}")
    log_rho_bt = ops.log_ratio(old_logp_bt, behavior_logp_bt, clamp=_LOG_LIMIT)
    if level == "token":
        return log_rho_bt
    if level == "sequence":
        log_b = jnp.clip(ops.masked_sum(log_rho_bt, mask_bt, axis=1), -_LOG_LIMIT, _LOG_LIMIT)
    else:
        log_b = ops.masked_mean(log_rho_bt, mask_bt, axis=1)
    return jnp.broadcast_to(log_b[:, None], log_rho_bt.shape)


def rollout_correction(
    *, level: str = "token", mode: str = "truncate", threshold: float = 2.0, threshold_low: float | None = None
) -> Transform:
    """Corrects the sampler/trainer mismatch ρ = π_old/μ, see the module docstring.

    Args:
      level: "token", "sequence" (product of token ratios) or "geometric" (their geometric mean).
      mode: "truncate" (TIS: advantage × min(ρ, C)) or "mask" (MIS: drop ρ ∉ [C_low, C]).
      threshold: C > 1 (verl's and ms-swift's default 2).
      threshold_low: C_low of the mask (default 1/C); must be < C.

    Logs ``correction/ratio_mean`` (mean ρ at the level over valid learner tokens) and
    ``correction/truncated_frac`` (ρ > C) or ``correction/masked_frac`` (tokens dropped).
    """
    if level not in LEVELS:
        raise ValueError(f"rollout_correction: level={level!r}; use one of {LEVELS}")
    if mode not in MODES:
        raise ValueError(f"rollout_correction: mode={mode!r}; use one of {MODES}")
    if threshold <= 1.0:
        raise ValueError(f"rollout_correction: threshold={threshold} must be > 1 (ρ = 1 must pass)")
    low = 1.0 / threshold if threshold_low is None else threshold_low
    if not 0.0 <= low < 1.0:
        raise ValueError(f"rollout_correction: threshold_low={low} must be in [0, 1) (ρ = 1 must pass)")

    def fn(batch: Batch) -> Batch:
        batch.require("old_logp_bt", "behavior_logp_bt", *(("adv_bt",) if mode == "truncate" else ()), by="rollout_correction")
        m = batch.mask_bt
        learner_b = jnp.ones((batch.batch_size,), bool) if batch.source_b is None else batch.source_b != EXPERT
        log_rho = log_importance_ratio(batch.old_logp_bt, batch.behavior_logp_bt, m, level)
        rho = jnp.exp(log_rho)
        learner_m = m * learner_b[:, None]
        metrics = {"correction/ratio_mean": ops.masked_mean(rho, learner_m)}
        if mode == "truncate":
            weight = jnp.where(learner_b[:, None], jnp.minimum(rho, threshold), 1.0)
            metrics["correction/truncated_frac"] = ops.masked_mean((rho > threshold).astype(jnp.float32), learner_m)
            batch = batch.replace(adv_bt=batch.adv_bt * weight)
        else:
            keep = ((rho >= low) & (rho <= threshold)) | ~learner_b[:, None]
            metrics["correction/masked_frac"] = ops.masked_mean((~keep).astype(jnp.float32), learner_m)
            batch = batch.replace(mask_bt=m * keep)
        return batch.add_metrics(**metrics)

    return stateless(fn, needs=("old_logp",))


def named_correction(name: str | None, threshold: float = 2.0) -> list[Transform]:
    """The nouns' ``correction=`` keyword: ``None`` → [], ``"<level>_<mode>"`` → [the transform].

    Names: token_truncate, sequence_truncate, geometric_truncate, token_mask, sequence_mask,
    geometric_mask (ms-swift's ``rollout_importance_sampling_mode`` names, plus "geometric").
    """
    if name is None:
        return []
    if name not in NAMED:
        raise ValueError(f"correction={name!r}; use None or one of {sorted(NAMED)}")
    level, mode = NAMED[name]
    return [rollout_correction(level=level, mode=mode, threshold=threshold)]

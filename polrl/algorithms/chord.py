"""CHORD: on-policy RL and SFT on expert answers in one loss, mixed by a scheduled μ.

Zhang et al. 2025, "On-Policy RL Meets Off-Policy Experts: Harmonizing Supervised Fine-Tuning
and Reinforcement Learning via Dynamic Weighting" (arXiv 2508.11408); reference code Trinity-RFT
``trinity/algorithm/policy_loss_fn/chord_policy_loss.py`` (``mix_chord``, ``sft_phi``,
``sft_is``, ``mu_schedule_function``) and ``examples/mix_chord``.

Each rollout group holds the policy's samples followed by k rows of the prompt's labelled answer
(the collector wrapper ``polrl.collectors.with_expert_rows(k)``, ``source_b == EXPERT``). The
GRPO part sees only the policy's rows (its advantages too), the SFT part only the expert rows,
and

    L = (1 − μ(step)) · L_RL(policy rows) + μ(step) · L_SFT(expert rows).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from polrl import advantages, objectives
from polrl.algorithms.policy_gradient import REWARD_SIDE_OPTIONS, check_options, pg_algorithm
from polrl.collectors import with_expert_rows
from polrl.core import EXPERT, Algorithm, Batch, Transform, chain, stateless

SFT_WEIGHTINGS = ("phi", "none", "is")


def mu_schedule(step, *, warmup_steps: int, decay_steps: int, peak: float, valley: float) -> jax.Array:
    """CHORD's μ at ``step``: linear warm-up to ``peak``, cosine decay to ``valley``, then flat.

        s < W:            μ = s/W · μ_peak
        W ≤ s < W + D:    μ = μ_valley + (μ_peak − μ_valley) · ½(1 + cos(π (s − W)/D))
        s ≥ W + D:        μ = μ_valley

    (W = ``warmup_steps``, D = ``decay_steps``; W = D = 0 gives the constant μ_valley.)
    """
    if warmup_steps < 0 or decay_steps < 0:
        raise ValueError(f"mu schedule: warmup_steps={warmup_steps} and decay_steps={decay_steps} must be >= 0")
    s = jnp.asarray(step, jnp.float32)
    warm = s / max(warmup_steps, 1) * peak
    cosine = valley + (peak - valley) * 0.5 * (1.0 + jnp.cos(math.pi * (s - warmup_steps) / max(decay_steps, 1)))
    return jnp.where(s < warmup_steps, warm, jnp.where(s >= warmup_steps + decay_steps, valley, cosine))


def weighted_nll(*, weighting: str = "phi", cutoff_prob: float = 1.0) -> Transform:
    """SFT with a detached per-token weight of the token's probability p = π_θ(y_t), term ``"sft"``.

        L_t = −sg(w(p_t)) · min(log π_θ(y_t), log c)
        w(p) = p(1 − p)  ("phi", CHORD-φ)   |   1  ("none", plain SFT)   |   p  ("is", Trinity's sft_is)

    φ down-weights tokens the model is already sure of (p → 1) and tokens it finds implausible
    (p → 0). ``cutoff_prob`` c < 1 caps the log-prob (its gradient is 0 above log c); the weight
    uses the uncapped p, as Trinity's ``sft_phi``.
    """
    if weighting not in SFT_WEIGHTINGS:
        raise ValueError(f"weighting={weighting!r} is not one of {list(SFT_WEIGHTINGS)}")
    if not 0.0 < cutoff_prob <= 1.0:
        raise ValueError(f"cutoff_prob must be in (0, 1], got {cutoff_prob}")

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", by="weighted_nll")
        p = jnp.exp(jax.lax.stop_gradient(batch.logp_bt))
        w = {"phi": p * (1.0 - p), "none": jnp.ones_like(p), "is": p}[weighting]
        logp = batch.logp_bt if cutoff_prob == 1.0 else jnp.minimum(batch.logp_bt, math.log(cutoff_prob))
        return batch.add_term("sft", -w * logp)

    return stateless(fn)


def mix_by_source(rl: Transform, sft: Transform, *, mu) -> Transform:
    """(1 − μ)·``rl`` on the policy's rows + μ·``sft`` on the expert rows (``source_b``).

    Each part runs on the batch with ``mask_bt`` restricted to its own rows and must end with an
    aggregation, so each is normalized by its own rows (tokens for ``token_mean``, rows for the
    sequence means). Minibatches keep whole groups, so every minibatch holds the same static
    number of policy and expert rows: this is Trinity's rescaling of each part by its global
    per-type batch size. ``mu`` is a function of the ``step`` extra (0 when absent); it is
    logged as ``mu``. The parts' losses keep their names (scaled) and their metrics are merged
    (the RL metrics are over policy tokens only).
    """

    def init(example=None):
        return rl.init(example), sft.init(example)

    def apply(batch: Batch, state, **extra):
        batch.require("source_b", by="mix_by_source")
        rl_state, sft_state = state
        expert_b = (batch.source_b == EXPERT).astype(batch.mask_bt.dtype)
        fresh = dict(terms={}, losses={}, metrics={})
        rl_out, rl_state = rl.apply(batch.replace(mask_bt=batch.mask_bt * (1.0 - expert_b)[:, None], **fresh), rl_state, **extra)
        sft_out, sft_state = sft.apply(batch.replace(mask_bt=batch.mask_bt * expert_b[:, None], **fresh), sft_state, **extra)
        if rl_out.terms or sft_out.terms:
            raise ValueError("mix_by_source: both parts must end with objectives.aggregate(mode)")
        step = extra.get("step")
        m = mu(0 if step is None else step)
        for name, loss in [*((n, (1.0 - m) * v) for n, v in rl_out.losses.items()), *((n, m * v) for n, v in sft_out.losses.items())]:
            batch = batch.add_loss(name, loss)
        batch = batch.add_metrics(**rl_out.metrics, **sft_out.metrics, mu=m)
        return batch, (rl_state, sft_state)

    return Transform(init, apply, rl.needs | sft.needs)


def chord(
    *,
    mu_warmup_steps: int = 0,
    mu_decay_steps: int = 0,
    mu_peak: float = 0.1,
    mu_valley: float = 0.1,
    sft_weighting: str = "phi",
    cutoff_prob: float = 1.0,
    expert_per_group: int = 1,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    dual_clip: float | None = 3.0,
    scale: str = "std",
    aggregation: str = "token_mean",
    max_len: int | None = None,
    **options,
) -> Algorithm:
    """CHORD (arXiv 2508.11408): GRPO on the policy's samples + φ-weighted SFT on expert answers.

        A_i  = GRPO advantage over the policy's rows of the group (expert rows left out)
        L_RL = agg over policy tokens of max(−A ρ, −A clip(ρ, 1−ε, 1+ε)),
               and min(·, −c A) where A < 0 (dual clip c)              (+ β KL − c_H H)
        L_SFT = agg over expert tokens of −sg(p(1−p)) · log π_θ(y_t)
        L    = (1 − μ(step)) L_RL + μ(step) L_SFT          (μ: ``mu_schedule``)

    Defaults are Trinity's code defaults (the CHORD-φ preset): μ = 0.1 constant
    (W = D = 0, peak = valley = 0.1), φ on, ε = 0.2, dual clip c = 3 (the RL part is Trinity's
    PPO loss, whose ``clip_ratio_c`` defaults to 3.0; ``dual_clip=None`` turns it off), no KL,
    ``token_mean`` for both parts.
    Presets: CHORD-μ = ``mu_decay_steps=200, mu_peak=0.9, mu_valley=0.05,
    sft_weighting="none"``; Trinity's example YAML: W = 200, D = 400, peak 0.5, valley 0.02, φ on.
    ``sft_weighting="is"`` is Trinity's ``sft_is``. Expert rows: ``expert_per_group`` rows
    appended to each group (Trinity mixes 20% expert rows; with 8 samples per prompt, one expert
    row per group is 1/9). μ follows ``PolicyState.step`` of the phase (the step extra).
    INFERRED: polrl mixes expert rows within each prompt's group (Trinity draws them as a
    separate 20% of the batch); the KL/entropy options apply to the RL part only (Trinity's
    example runs without KL). Checked against Trinity's ``chord_policy_loss.py`` and
    ``mix_chord.yaml``.

    Other keywords: see ``pg_algorithm`` (lr 1e-6, β = 0, k3, no entropy bonus, one update per
    batch), all but the prepare-side ``kl_in``, ``kl_target``, ``correction`` and
    ``correction_threshold``.
    """
    check_options("chord", options, without=REWARD_SIDE_OPTIONS)
    if expert_per_group < 1:
        raise ValueError(f"chord needs expert rows: expert_per_group={expert_per_group} must be >= 1")
    sft = chain(weighted_nll(weighting=sft_weighting, cutoff_prob=cutoff_prob),
                objectives.aggregate(aggregation, max_len=max_len))
    mu = lambda step: mu_schedule(step, warmup_steps=mu_warmup_steps, decay_steps=mu_decay_steps, peak=mu_peak, valley=mu_valley)
    return pg_algorithm(
        advantages.group_advantage(scale=scale, exclude_expert=True),
        objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high, dual_clip=dual_clip),
        aggregation=aggregation, max_len=max_len, collector=with_expert_rows(expert_per_group),
        wrap_objective=lambda rl: mix_by_source(rl, sft, mu=mu), **options,
    )

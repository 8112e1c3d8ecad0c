"""GEPO and OORL: on-policy RL on unit-test rewards plus Group Equivalent Preference Optimization.

Wu et al. 2025, "On-Policy Optimization with Group Equivalent Preference for Multi-Programming
Language Understanding" (arXiv 2505.12723). Not to be confused with Group *Expectation* Policy
Optimization (arXiv 2508.17850), which shares the acronym.

The paper's GEPO. For a prompt x with a group Y_w = {y_w^1 … y_w^n} of programs equivalent to the
source ("winners") and a group Y_l = {y_l^1 … y_l^m} of inequivalent ones ("losers"), with the
DPO implicit reward r̂_θ(x, y) = β log π_θ(y|x)/π_ref(y|x) (sums over response tokens):

    L_GEPO = −log σ( mean_{y∈Y_w} r̂_θ(x, y) − mean_{y∈Y_l} r̂_θ(x, y) ) + λ · Var_{y∈Y_w} r̂_θ(x, y)

The first term prefers the winners over the losers on average (DPO on group means); the second
is the Lagrangian of the constraint that equivalent programs have equal implicit rewards (their
mutual equivalence). The paper sets λ = 1. OORL minimizes

    L = w_rl · L_OnP + w_gepo · L_GEPO,        w_rl = 1, w_gepo = 0.01 in the paper, 1 here

with L_OnP the clipped on-policy objective on the binary unit-test reward (the paper runs
REINFORCE++; here GRPO, ``policy_gradient.grpo``, whose advantage and clipped surrogate L_OnP
reuses unchanged).

The groups here. Each prompt's group holds the G programs sampled from the policy and, with
``expert_per_group`` = k > 0, k copies of the prompt's labelled program (``with_expert_rows``,
``source_b == EXPERT``). Equivalence is decided by execution: a row is a winner when its reward
is ≥ 1, i.e. it passes every unit test (the same output as the labelled program on every test
input), and a loser otherwise (a crash, or another output on some test). The labelled program
always wins, so every group with a failing sample has both sides. GRPO sees only the policy's
rows (its advantages, its token means, its KL); GEPO sees every row.

Deviation: w_gepo = 1 by default, not the paper's 0.01 (``gepo_coef=0.01`` restores it). A token's
gradient from L_GEPO is about β/|W| ≤ 0.1, against GRPO's |A| ≈ 1 (the paper's REINFORCE++ on a
7B model with its own scales is no guide here), so at 0.01 the GEPO term moves the policy about
10⁻³ as much as the RL term. The default was chosen by a seed-0 sweep of w ∈ {0.01, 0.1, 1} on
``experiments/programs_gepo.py`` (200 RL steps from the same warm start): w = 0.01 ended level
with GRPO alone, 0.1 above it, 1 highest; the 3-seed comparison at w = 1 is in that experiment's
docstring (benchmarks/preference.md).

INFERRED (the paper's equations are used as described in its text):
  * r̂ is β times the summed log-ratio, both in the preference term and inside the variance, and
    the variance is the population variance (divided by n); β = 0.1 (DPO's usual value: the
    paper gives none).
  * The paper draws Y_w / Y_l from a static data set (LLVM IRs of one source at several
    optimization levels, and inequivalent IRs augmented from them) for a separate IR-translation
    prompt. Here the groups are the on-policy samples of the task's own prompt, partitioned by
    their executed behaviour on the tests, plus the labelled program as a winner that is always
    present (the role of the source-equivalent IRs). The paper's Figure 1 calls GEPO on-policy.
  * Only groups with at least one winner and one loser contribute (each of the paper's data
    points has both); L_GEPO is their mean. Rows whose mask is all zero are in neither side.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import advantages, objectives
from polrl.algorithms.policy_gradient import REWARD_SIDE_OPTIONS, check_options, pg_algorithm
from polrl.collectors import with_expert_rows
from polrl.core import EXPERT, Algorithm, Batch, Transform, chain, stateless


def group_equivalent_preference_loss(logratio_b, winner_b, loser_b, group_b, num_groups: int, *,
                                     beta: float, lambda_: float):
    """L_GEPO of rows grouped by ``group_b`` (ids in ``[0, num_groups)``), a pure function.

    ``logratio_b``: Σ_t log π_θ − log π_ref per row; ``winner_b`` / ``loser_b``: bool, the row's
    side (a row may be on neither). With r̂ = β·logratio, per group g with winners W and losers L:

        L_g = −log σ(mean_W r̂ − mean_L r̂) + λ · (1/|W|) Σ_W (r̂ − mean_W r̂)²

    Returns ``(loss, margin_g, var_g, valid_g)``: the mean of L_g over the groups with |W| ≥ 1 and
    |L| ≥ 1 (0 when there is none), and per group the margin mean_W r̂ − mean_L r̂, the winners'
    variance and whether the group counts.
    """
    r_b = beta * logratio_b
    w_b, l_b = winner_b.astype(r_b.dtype), loser_b.astype(r_b.dtype)
    total = lambda x_b: jax.ops.segment_sum(x_b, group_b, num_segments=num_groups)
    n_w, n_l = total(w_b), total(l_b)
    mean_w = total(w_b * r_b) / jnp.maximum(n_w, 1.0)
    mean_l = total(l_b * r_b) / jnp.maximum(n_l, 1.0)
    var_g = total(w_b * jnp.square(r_b - mean_w[group_b])) / jnp.maximum(n_w, 1.0)
    margin_g = mean_w - mean_l
    valid_g = (n_w > 0) & (n_l > 0)
    loss_g = -jax.nn.log_sigmoid(margin_g) + lambda_ * var_g
    v = valid_g.astype(r_b.dtype)
    loss = (loss_g * v).sum() / jnp.maximum(v.sum(), 1.0)
    return loss, margin_g, var_g, valid_g


def group_equivalent_preference(*, beta: float = 0.1, lambda_: float = 1.0, coef: float = 0.01) -> Transform:
    """``coef`` · L_GEPO over the batch's groups (``group_b``), loss ``"gepo"``; needs ``ref_logp``.

    Winners are the rows with ``reward_b ≥ 1`` (every unit test passed), losers the other rows
    with a valid token. Logs ``gepo_loss`` (L_GEPO before ``coef``), ``gepo_margin`` and
    ``gepo_accuracy`` (mean margin, and margin > 0, over the counted groups), ``gepo_winner_var``
    and ``gepo_groups`` (how many groups counted).
    """
    if not beta > 0:
        raise ValueError(f"group_equivalent_preference: beta={beta!r} must be > 0")
    if lambda_ < 0 or coef < 0:
        raise ValueError(f"group_equivalent_preference: lambda_={lambda_!r} and coef={coef!r} must be >= 0")

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "ref_logp_bt", "reward_b", "group_b", by="group_equivalent_preference")
        m = batch.mask_bt
        row_b = m.sum(-1) > 0
        logratio_b = ((batch.logp_bt - batch.ref_logp_bt) * m).sum(-1)
        winner_b = row_b & (batch.reward_b >= 1.0)
        loser_b = row_b & (batch.reward_b < 1.0)
        loss, margin_g, var_g, valid_g = group_equivalent_preference_loss(
            logratio_b, winner_b, loser_b, batch.group_b, batch.batch_size, beta=beta, lambda_=lambda_)
        v = valid_g.astype(jnp.float32)
        count = jnp.maximum(v.sum(), 1.0)
        sg = jax.lax.stop_gradient
        return batch.add_loss("gepo", coef * loss).add_metrics(
            gepo_loss=sg(loss),
            gepo_margin=(sg(margin_g) * v).sum() / count,
            gepo_accuracy=((sg(margin_g) > 0) * v).sum() / count,
            gepo_winner_var=(sg(var_g) * v).sum() / count,
            gepo_groups=v.sum(),
        )

    return stateless(fn, needs=("ref_logp",))


def policy_rows(objective: Transform) -> Transform:
    """``objective`` (ending with an aggregation) on the policy's rows only: the batch's mask is
    restricted to rows with ``source_b != EXPERT`` (all rows when ``source_b`` is None); its
    losses and metrics join the batch's."""

    def apply(batch: Batch, state, **extra):
        if batch.source_b is None:
            return objective.apply(batch, state, **extra)
        keep_b = (batch.source_b != EXPERT).astype(batch.mask_bt.dtype)
        part = batch.replace(mask_bt=batch.mask_bt * keep_b[:, None], terms={}, losses={}, metrics={})
        part, state = objective.apply(part, state, **extra)
        if part.terms:
            raise ValueError("policy_rows: the objective must end with objectives.aggregate(mode)")
        for name, loss in part.losses.items():
            batch = batch.add_loss(name, loss)
        return batch.add_metrics(**part.metrics), state

    return Transform(objective.init, apply, objective.needs)


def gepo(
    *,
    beta: float = 0.1,
    lambda_: float = 1.0,
    gepo_coef: float = 1.0,
    expert_per_group: int = 1,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    kl_coef: float = 0.04,
    scale: str = "std",
    aggregation: str = "seq_mean_token_mean",
    **options,
) -> Algorithm:
    """OORL (arXiv 2505.12723): GRPO on the unit-test reward + ``gepo_coef`` · GEPO (module doc).

        A_i   = GRPO advantage over the policy's rows of the group (labelled rows left out)
        L_OnP = agg over policy tokens of max(−A ρ, −A clip(ρ, 1−ε_low, 1+ε_high)) + β_KL k3
        L     = L_OnP + w_gepo · L_GEPO(winners: reward ≥ 1, losers: reward < 1; β, λ)

    Defaults: the paper's λ = 1, w_gepo = 1 (the paper: 0.01; module doc), β = 0.1 (INFERRED),
    ``expert_per_group`` = 1
    labelled program per group (0: the policy's samples only), GRPO's ε = 0.2, KL β_KL = 0.04 and
    ``seq_mean_token_mean``. Losses ``"pg"`` (+ ``"kl"``) and ``"gepo"``.

    Other keywords: see ``pg_algorithm`` (lr 1e-6, k3, no entropy bonus, one update per batch),
    all but the prepare-side ``kl_in``, ``kl_target``, ``correction`` and ``correction_threshold``.
    """
    check_options("gepo", options, without=REWARD_SIDE_OPTIONS)
    if expert_per_group < 0:
        raise ValueError(f"gepo: expert_per_group={expert_per_group} must be >= 0 (0: no labelled rows)")
    preference = group_equivalent_preference(beta=beta, lambda_=lambda_, coef=gepo_coef)
    return pg_algorithm(
        advantages.group_advantage(scale=scale, exclude_expert=True),
        objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high),
        kl_coef=kl_coef, aggregation=aggregation,
        collector=with_expert_rows(expert_per_group) if expert_per_group else None,
        wrap_objective=lambda rl: chain(policy_rows(rl), preference), **options,
    )

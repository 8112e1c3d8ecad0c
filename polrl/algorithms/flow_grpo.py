"""Flow-GRPO: GRPO over multi-turn trajectories, the outcome broadcast to every turn."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import advantages, objectives
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.collectors.turns import FIELD
from polrl.core import Algorithm, Batch, Transform, stateless


def turn_weights() -> Transform:
    """Weights each generated token by one over its turn's length (prepare transform).

        mask_bt ← mask_bt / n_b,τ(t),   n_b,τ = Σ_{s : turn_bs = τ} mask_bs

    with the turns of ``aux["turn_bt"]`` (``polrl.collectors.turns``). A row's weights then sum
    to T_b, its number of turns with a generated token, so the ``seq_mean_token_mean``
    aggregation Σ_t L_t·m_t / Σ_t m_t, averaged over rows, becomes the mean over turns of each
    turn's token mean: 1/G Σ_i 1/T_i Σ_t 1/|a_i^t| Σ_j L_i,j^t. Observation and padding tokens
    keep weight 0.
    """

    def fn(batch: Batch) -> Batch:
        batch.require_aux(FIELD, by="turn_weights", provider="polrl.collectors.turns")
        b, t = batch.mask_bt.shape
        turn_bt = batch.aux[FIELD]
        if turn_bt.shape != (b, t):
            raise ValueError(f"turn_weights: aux[{FIELD!r}] has shape {turn_bt.shape}, expected {(b, t)} (one turn "
                             f"index per response token)")
        ids_bt = jnp.arange(b)[:, None] * t + jnp.clip(turn_bt, 0, t - 1)
        per_turn = jax.ops.segment_sum(batch.mask_bt.reshape(-1), ids_bt.reshape(-1), num_segments=b * t)
        n_bt = per_turn[ids_bt]
        weight_bt = jnp.where(batch.mask_bt != 0, batch.mask_bt / jnp.where(n_bt != 0, n_bt, 1.0), 0.0)
        return batch.replace(mask_bt=weight_bt)

    return stateless(fn)


def flow_grpo(
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.3,
    kl_coef: float = 0.001,
    scale: str = "std",
    ddof: int = 1,
    filter_zero_variance: bool = False,
    **options,
) -> Algorithm:
    """Flow-GRPO ("In-the-Flow Agentic System Optimization for Effective Planning and Tool Use",
    Li et al. 2025, arXiv 2510.05592), on multi-turn rollouts (``polrl.collectors.turns``).

    For G trajectories τ_1..τ_G of one prompt with outcome rewards R(τ_i), T_i turns each and
    a_i^t the tokens the model generated in turn t:

        A_i       = (R(τ_i) − mean_k R(τ_k)) / (std_k R(τ_k) + 1e-6)   broadcast to every turn
        ρ_i,j^t   = π_θ(a_i,j^t | s_i^t, a_i,<j^t) / π_old(a_i,j^t | s_i^t, a_i,<j^t)
        L         = 1/G Σ_i 1/T_i Σ_t 1/|a_i^t| Σ_j [ max(−A_i ρ, −A_i clip(ρ, 1−ε_low, 1+ε_high))
                                                       + β k3_i,j^t ]

    The outcome reward of the trajectory is the credit of every turn (multi-turn optimization as
    a sequence of single-turn updates); observation tokens (tool results) are masked out; every
    turn weighs the same within its trajectory and every trajectory the same within the batch
    (``turn_weights`` then the ``seq_mean_token_mean`` aggregation). With one turn this is GRPO
    with ``eps_high`` and ``kl_coef`` as given. ``filter_zero_variance=True`` masks groups whose
    rewards are all equal.

    Defaults: ε_low = 0.2, ε_high = 0.3 and β = 0.001 (k3 estimator) as the authors' released
    AgentFlow training config (clip_ratio_low / clip_ratio_high, kl_loss_coef; lupantech/AgentFlow,
    train/config.yaml). INFERRED: the paper writes −β D_KL(π_θ ‖ π_ref) next to the clipped term
    without its reduction; here it is a per-token k3 term reduced like the policy term. The std
    is unbiased (``ddof=1``, as polrl's GRPO); the paper writes std without saying which. The
    released code trains each turn as its own row (verl's token mean over turn rows, group
    statistics over a query's turn rows); this follows the paper's equation instead. In
    AgentFlow the planner's state s_i^t is an evolving memory; here it is the whole transcript
    so far (prompt, earlier turns and observations).

    Other keywords: see ``pg_algorithm`` (lr 1e-6, one update per batch, AdamW with gradient
    clipping 1.0). The aggregation is fixed (the paper's), and the prepare-side options
    (``kl_in``, ``correction``) are not offered: they assume 0/1 masks.
    """
    check_options("flow_grpo", options, without=("aggregation", "max_len", "kl_in", "correction",
                                                  "correction_threshold"))
    prepare = [advantages.group_advantage(scale=scale, ddof=ddof)]
    if filter_zero_variance:
        prepare.append(advantages.drop_zero_variance_groups())
    prepare.append(turn_weights())
    return pg_algorithm(
        prepare, objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high),
        kl_coef=kl_coef, aggregation="seq_mean_token_mean", **options,
    )

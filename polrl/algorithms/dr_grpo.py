"""Dr.GRPO: GRPO without its length and difficulty biases."""
from __future__ import annotations

from polrl import advantages, objectives
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.core import Algorithm


def dr_grpo(
    *,
    max_len: int | None = None,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    aggregation: str = "seq_mean_token_sum_norm",
    **options,
) -> Algorithm:
    """Dr.GRPO, "GRPO done right" (Liu et al. 2025, arXiv 2503.20783).

    GRPO's advantage divides by the group's reward std (a per-question difficulty weight) and its
    loss by each response's length |o_i| (which favours long wrong answers); Dr.GRPO removes both:

        A_i   = r_i − mean_g(r)                                      (no std)
        L     = 1/G Σ_i 1/T_max Σ_t max(−A_i ρ_i,t, −A_i clip(ρ_i,t, 1−ε, 1+ε))   (+ β KL_t)

    i.e. aggregation ``seq_mean_token_sum_norm`` with the CONSTANT normalizer T_max = ``max_len``
    (required: pass the generation budget, e.g. ``rollout.max_new_tokens``). Defaults as the
    authors' recipe: ε = 0.2, β = 0 (no KL term), lr 1e-6, one update per batch.

    Checked: the authors' ``sail-sg/understand-r1-zero`` example scripts
    run ``--critic_type drgrpo --beta 0 --learning_rate 0.000001 --num_ppo_epochs 1`` with
    ``--generate_max_length 3000``. INFERRED: that T_max is the generation budget (the paper's
    MAX_TOKENS); the loss code itself was not read.

    Other keywords: see ``pg_algorithm`` (β = 0 and k3 in the loss, one update per batch).
    """
    check_options("dr_grpo", options)
    if aggregation == "seq_mean_token_sum_norm" and max_len is None:
        raise ValueError(
            "dr_grpo needs max_len, the constant normalizer T_max of its seq_mean_token_sum_norm "
            "aggregation: pass the generation budget (rollout.max_new_tokens)"
        )
    return pg_algorithm(
        [advantages.group_advantage(scale="none")],
        objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high),
        aggregation=aggregation, max_len=max_len, **options,
    )

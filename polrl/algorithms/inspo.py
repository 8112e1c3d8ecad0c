"""INSPO: GRPO on questions asked under instructions drawn from a population that co-evolves with
the policy.

INSPO ("Agentic Policy Optimization via Instruction-Policy Co-Evolution", arXiv 2512.01945) extends
GRPO's objective with an expectation over instructions I ~ p(· | W; P) (softmax of the population's
importance weights at temperature τ_s):

    J(θ, W) = E_{q ~ D, I ~ p(·|W), {o_i} ~ π_old(·|I, q)} [ (1/G) Σ_i (1/|o_i|) Σ_t
              min(ρ_i,t A_i, clip(ρ_i,t, 1 − ε, 1 + ε) A_i) − β KL(π_θ ‖ π_ref) ],
    A_i = (r_i − mean_j r_j) / std_j r_j            (the G rollouts of one (I, q) pair)

so the policy term is GRPO's on the instruction-conditioned prompts I ⊕ q (the instruction's tokens
are prompt tokens: no gradient), and the instruction side — sampling, reward attribution to W,
pruning and the policy's own proposals from failures — is the data collector
``collectors.with_instruction_population`` (its docstring has the rules and what is INFERRED).
Held-out evaluation puts the population's best instruction before every prompt (``eval/…``, the
paper's inference setting) and also runs without it (``eval/bare/…``).
"""
from __future__ import annotations

from typing import Sequence

from polrl import advantages, objectives
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.collectors.instruction_population import with_instruction_population
from polrl.core import Algorithm


def inspo(
    *,
    instructions: Sequence[str] = ("add:",),
    capacity: int = 8,
    width: int = 12,
    selection_temperature: float = 0.1,
    prune_every: int = 20,
    num_proposals: int = 2,
    failure_text: str = "wrong: ",
    proposal_cue: str = " better:",
    eps_low: float = 0.2,
    eps_high: float | None = None,
    kl_coef: float = 0.04,
    filter_zero_variance: bool = False,
    aggregation: str = "seq_mean_token_mean",
    **options,
) -> Algorithm:
    """INSPO (arXiv 2512.01945): GRPO's advantage and clipped loss (``grpo``'s ε, β, zero-variance
    filter and aggregation, same defaults) on rows whose prompts carry an instruction of the
    population kept by ``with_instruction_population(instructions, capacity=N, width=L,
    temperature=τ_s, prune_every, num_proposals, failure_text, proposal_cue)`` (module docstring).

    Other keywords: see ``pg_algorithm`` (lr 1e-6, k3, ``kl_in="loss"``, one update per batch).
    """
    check_options("inspo", options)
    population = with_instruction_population(
        instructions, capacity=capacity, width=width, temperature=selection_temperature, prune_every=prune_every,
        num_proposals=num_proposals, failure_text=failure_text, proposal_cue=proposal_cue)
    prepare = [advantages.group_advantage()]
    if filter_zero_variance:
        prepare.append(advantages.drop_zero_variance_groups())
    return pg_algorithm(prepare, objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high),
                        kl_coef=kl_coef, aggregation=aggregation, collector=population, **options)

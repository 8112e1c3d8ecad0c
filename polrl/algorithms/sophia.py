"""SOPHIA: off-policy policy gradient on semi-off-policy rows — a teacher's reasoning the policy
continues — with the outcome reward propagated to the shared reasoning and a truncated
importance weight on the teacher's tokens.

SOPHIA ("Semi-off-Policy Reinforcement Learning for Vision-Language Slow-thinking Reasoning",
arXiv 2507.16814) trains the policy π_θ on rows drawn from a behaviour model μ made of the policy
itself and a frozen reasoning model, with the off-policy policy gradient

    ∇J = E_{y∼μ}[ (π_θ(y)/μ(y)) · R · ∇ log π_θ(y) ],

the rewards R of the pieces of a row being its verified outcome and, for the piece shared by
several rows, the mean outcome of those rows (propagated backward). Data:
``polrl.collectors.with_borrowed_reasoning`` appends to each prompt's group of G policy samples
K·N rows r_k ⊕ a_kn (a frozen teacher's reasoning r_k, the policy's answer a_kn after it), with
``aux["borrowed_bt"]`` marking r_k's tokens and ``aux["reasoning_reward_b"]`` = R(r_k) =
(1/N) Σ_n R(a_kn) (its docstring maps the paper's pieces onto a text task).

Per token t of row i in group g (every row of the prompt: its G own samples and its K·N
semi-off-policy rows):

    R_t = R(r_k)  on the teacher's tokens,   R_t = r_i  on the policy's own tokens,
    A_t = R_t − mean_{j ∈ g} r_j,
    w_t = min(π_old(y_t)/μ(y_t), C)                 (μ: the sampler of the token — the teacher on
                                                     r_k, the policy's sampler elsewhere)
    L_t = max(−w_t A_t ρ_t, −w_t A_t clip(ρ_t, 1 − ε, 1 + ε)),   ρ_t = π_θ(y_t)/π_old(y_t)

aggregated as a token mean. With one update per batch ρ_t = 1 in value and the gradient is
−w_t A_t ∇log π_θ(y_t): the off-policy policy gradient above with a per-token truncated ratio
(``polrl.correction.rollout_correction(level="token", mode="truncate", threshold=C)``, which scales
the advantage and leaves the policy's own tokens, where μ = π_old, at weight 1).

INFERRED: (1) the importance ratio is taken per token and truncated at C (2, polrl's correction
default), not as the product over the row's tokens, whose value over a long teacher reasoning
under a policy that cannot yet write it underflows; (2) the baseline, the mean outcome of the
prompt's rows, and the policy's own G samples kept in the group beside the semi-off-policy rows
(the wrapper appends, as ``with_expert_rows``): the paper's rows are its semi-off-policy rows
alone and its baseline is not carried here; (3) PPO's clip around ρ (inactive at one update per
batch) so that several updates per batch stay a trust region.
"""
from __future__ import annotations

import jax.numpy as jnp

from polrl import objectives, ops
from polrl.algorithms.policy_gradient import REWARD_SIDE_OPTIONS, check_options, pg_algorithm
from polrl.collectors.semi_off_policy import BORROWED, REASONING_REWARD, with_borrowed_reasoning
from polrl.core import Algorithm, Batch, Transform, stateless


def propagated_advantage() -> Transform:
    """A_t = R_t − mean_group r (module docstring): ``reasoning_reward_b`` on the tokens
    ``borrowed_bt`` marks, ``reward_b`` elsewhere, minus the mean reward of the row's group
    (``group_b``); 0 on padding."""

    def fn(batch: Batch) -> Batch:
        batch.require("reward_b", "group_b", by="propagated_advantage")
        batch.require_aux(BORROWED, REASONING_REWARD, by="propagated_advantage",
                          provider="polrl.collectors.with_borrowed_reasoning (the sophia noun's collector)")
        n = batch.batch_size
        mean_b = batch.reward_b - ops.group_advantages(batch.reward_b, batch.group_b, n, scale="none")
        borrowed = batch.aux[BORROWED] > 0
        reward_bt = jnp.where(borrowed, batch.aux[REASONING_REWARD][:, None], batch.reward_b[:, None])
        return batch.replace(adv_bt=(reward_bt - mean_b[:, None]) * batch.mask_bt)

    return stateless(fn)


def sophia(
    *,
    teacher: str,
    reasonings: int = 2,
    continuations: int = 2,
    max_weight: float = 2.0,
    eps: float = 0.2,
    **options,
) -> Algorithm:
    """SOPHIA (arXiv 2507.16814): the policy's groups with K = ``reasonings`` reasonings per prompt
    from the frozen model ``teacher`` (a name of ``config.models``), each continued N =
    ``continuations`` times by the policy (``collectors.with_borrowed_reasoning``), trained with

        A_t = R_t − mean_group r     (R_t: the propagated reward on the teacher's tokens, r_i elsewhere)
        L   = token_mean[ PPO clip ε of (min(π_old/μ, C) · A_t) ]

    (module docstring; C = ``max_weight`` > 1). Other keywords: see ``pg_algorithm`` (lr 1e-6,
    token-mean loss, one update per batch), all but the reward-side ones (``kl_in``,
    ``kl_target``, ``correction``, ``correction_threshold``: the correction is the noun's own).
    """
    check_options("sophia", options, without=REWARD_SIDE_OPTIONS)
    if not max_weight > 1.0:
        raise ValueError(f"sophia: max_weight={max_weight} must be > 1 (the truncation C of the importance weight "
                         f"π_old/μ; the policy's own tokens, at ratio 1, must pass), e.g. 2.0")
    return pg_algorithm(
        [propagated_advantage()],
        objectives.clipped_policy_gradient(eps_low=eps),
        correction="token_truncate", correction_threshold=max_weight,
        collector=with_borrowed_reasoning(teacher, reasonings, continuations), **options,
    )

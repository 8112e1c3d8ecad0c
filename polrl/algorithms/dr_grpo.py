"""Dr.GRPO: GRPO without its length and difficulty biases."""
from __future__ import annotations

from polrl import advantages, objectives, optim
from polrl.algorithms.policy_gradient import _regularized
from polrl.core import Algorithm, chain
from polrl.correction import named_correction
from polrl.kl_control import kl_in_reward


def dr_grpo(
    *,
    max_len: int | None = None,
    learning_rate: float = 1e-6,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    kl_in: str = "loss",
    kl_target: float | None = None,
    entropy_coef: float = 0.0,
    aggregation: str = "seq_mean_token_sum_norm",
    correction: str | None = None,
    correction_threshold: float = 2.0,
    num_epochs: int = 1,
    num_minibatches: int = 1,
    warmup_steps: int = 0,
    max_grad_norm: float | None = 1.0,
) -> Algorithm:
    """Dr.GRPO, "GRPO done right" (Liu et al. 2025, arXiv 2503.20783).

    GRPO's advantage divides by the group's reward std (a per-question difficulty weight) and its
    loss by each response's length |o_i| (which favours long wrong answers); Dr.GRPO removes both:

        A_i   = r_i − mean_g(r)                                      (no std)
        L     = 1/G Σ_i 1/T_max Σ_t max(−A_i ρ_i,t, −A_i clip(ρ_i,t, 1−ε, 1+ε))   (+ β KL_t)

    i.e. aggregation ``seq_mean_token_sum_norm`` with the CONSTANT normalizer T_max = ``max_len``
    (required: pass the generation budget, e.g. ``rollout.max_new_tokens``). Defaults as the
    authors' recipe: ε = 0.2, β = 0 (no KL term), lr 1e-6, one update per batch.

    Checked (search, code corpus): the authors' ``sail-sg/understand-r1-zero`` example scripts
    run ``--critic_type drgrpo --beta 0 --learning_rate 0.000001 --num_ppo_epochs 1`` with
    ``--generate_max_length 3000``. INFERRED: that T_max is the generation budget (the paper's
    MAX_TOKENS); the loss code itself was not read.

    Shared keywords: ``kl_in="reward"`` moves the KL into the token rewards and ``kl_target``
    makes β adaptive (``polrl.kl_control``); ``correction="token_truncate"`` … adds the
    sampler/trainer importance correction (``polrl.correction``).
    """
    if aggregation == "seq_mean_token_sum_norm" and max_len is None:
        raise ValueError(
            "dr_grpo needs max_len, the constant normalizer T_max of its seq_mean_token_sum_norm "
            "aggregation: pass the generation budget (rollout.max_new_tokens)"
        )
    prepare = chain(
        advantages.group_advantage(scale="none"),
        *kl_in_reward(placement=kl_in, coef=kl_coef, estimator=kl_estimator, target=kl_target),
        *named_correction(correction, correction_threshold),
    )
    objective = _regularized(
        objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high),
        kl_coef=kl_coef, kl_estimator=kl_estimator, kl_in=kl_in, kl_target=kl_target,
        entropy_coef=entropy_coef, aggregation=aggregation, max_len=max_len,
    )
    return Algorithm(
        prepare=prepare,
        objective=objective,
        optimizer=optim.adamw(learning_rate, warmup_steps=warmup_steps, max_grad_norm=max_grad_norm),
        num_epochs=num_epochs,
        num_minibatches=num_minibatches,
    )

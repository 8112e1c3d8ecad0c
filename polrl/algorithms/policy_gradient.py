"""Policy-gradient methods with a clipped surrogate: GRPO and PPO."""
from __future__ import annotations

from polrl import advantages, kl_control, objectives, optim
from polrl.core import Algorithm, chain
from polrl.correction import named_correction


def _regularized(*terms, kl_coef, kl_estimator, entropy_coef, aggregation, max_len, kl_in="loss", kl_target=None):
    """``terms`` + β·KL (when β ≠ 0 and ``kl_in="loss"``; β adapted toward ``kl_target`` when set,
    ``polrl.kl_control``) − c_H·H (when c_H ≠ 0), then the aggregation. With ``kl_in="reward"``
    the KL goes to the prepare side instead (``kl_control.kl_in_reward``)."""
    if kl_in not in kl_control.KL_PLACEMENTS:
        raise ValueError(f"kl_in={kl_in!r}; use one of {kl_control.KL_PLACEMENTS}")
    parts = list(terms)
    if kl_coef and kl_in == "loss":
        if kl_target is None:
            parts.append(objectives.kl_penalty(coef=kl_coef, estimator=kl_estimator))
        else:
            parts.append(kl_control.adaptive_kl_penalty(coef=kl_coef, target=kl_target, estimator=kl_estimator))
    if entropy_coef:
        parts.append(objectives.entropy_bonus(coef=entropy_coef))
    parts.append(objectives.aggregate(aggregation, max_len=max_len))
    return chain(*parts)


def grpo(
    *,
    learning_rate: float = 1e-6,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    kl_coef: float = 0.04,
    kl_estimator: str = "k3",
    kl_in: str = "loss",
    kl_target: float | None = None,
    scale: str = "std",
    ddof: int = 1,
    filter_zero_variance: bool = False,
    entropy_coef: float = 0.0,
    aggregation: str = "seq_mean_token_mean",
    max_len: int | None = None,
    correction: str | None = None,
    correction_threshold: float = 2.0,
    num_epochs: int = 1,
    num_minibatches: int = 1,
    warmup_steps: int = 0,
    max_grad_norm: float | None = 1.0,
) -> Algorithm:
    """Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300).

    For G samples o_1..o_G of one prompt with rewards r_i:

        A_i   = (r_i − mean(r)) / (std(r) + 1e-6)                 (unbiased std; size-1 groups → 0)
        ρ_i,t = π_θ(o_i,t | q, o_i,<t) / π_old(o_i,t | q, o_i,<t)
        L     = agg[ max(−A_i ρ_i,t, −A_i clip(ρ_i,t, 1−ε_low, 1+ε_high)) + β k3_i,t ]

    with k3 = exp(d) − d − 1, d = log π_ref − log π_θ, β = ``kl_coef`` (paper: 0.04), ε = 0.2
    and the paper's ``seq_mean_token_mean`` aggregation. ``filter_zero_variance=True`` masks
    groups whose rewards are all equal (DAPO's filter); ``scale="none"`` gives Dr.GRPO's
    advantage. ``kl_coef=0`` drops the KL term and the reference forward pass. With one update per batch (``num_epochs = num_minibatches = 1``) π_old = π_θ and
    no extra forward pass is run. ``kl_in="reward"`` moves the KL into the token rewards and
    ``kl_target`` adapts β (``polrl.kl_control``); ``correction`` adds the sampler/trainer
    importance correction (``polrl.correction``).
    """
    prepare = [advantages.group_advantage(scale=scale, ddof=ddof)]
    if filter_zero_variance:
        prepare.append(advantages.drop_zero_variance_groups())
    prepare += kl_control.kl_in_reward(placement=kl_in, coef=kl_coef, estimator=kl_estimator, target=kl_target)
    prepare += named_correction(correction, correction_threshold)
    objective = _regularized(
        objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high),
        kl_coef=kl_coef, kl_estimator=kl_estimator, entropy_coef=entropy_coef,
        aggregation=aggregation, max_len=max_len, kl_in=kl_in, kl_target=kl_target,
    )
    return Algorithm(
        prepare=chain(*prepare),
        objective=objective,
        optimizer=optim.adamw(learning_rate, warmup_steps=warmup_steps, max_grad_norm=max_grad_norm),
        num_epochs=num_epochs,
        num_minibatches=num_minibatches,
    )


def ppo(
    *,
    learning_rate: float = 1e-5,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    dual_clip: float | None = 3.0,
    gamma: float = 1.0,
    lambda_: float = 0.95,
    value_coef: float = 0.5,
    value_clip: float | None = 0.2,
    whiten: bool = True,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    kl_in: str = "loss",
    kl_target: float | None = None,
    entropy_coef: float = 0.0,
    aggregation: str = "token_mean",
    max_len: int | None = None,
    correction: str | None = None,
    correction_threshold: float = 2.0,
    num_epochs: int = 2,
    num_minibatches: int = 2,
    warmup_steps: int = 0,
    max_grad_norm: float | None = 1.0,
) -> Algorithm:
    """Proximal Policy Optimization with a learned value head (Schulman et al. 2017).

        A_t = GAE(γ, λ) of the sequence reward paid at the last token, values V_old   (whitened)
        L   = agg[ max(−A_t ρ_t, −A_t clip(ρ_t, 1−ε, 1+ε)) (dual clip c for A_t < 0)
                   + c_v · ½ max((V_t − G_t)², (clip(V_t, V_old ± ε_v) − G_t)²)
                   + β KL_t − c_H H_t ]

    Defaults follow verl's PPO for LLMs: γ = 1, λ = 0.95, ε = 0.2, dual clip c = 3, value
    clip 0.2, ``token_mean``. The model must have a value head (``model.value_head=True``).
    ``kl_in="reward"`` is the PPO-RLHF placement (Ziegler et al. 2019): token rewards −β·kl_t
    enter GAE (exactly: GAE is linear in the rewards, ``polrl.kl_control``), before whitening;
    ``kl_target`` adapts β; ``correction`` adds the sampler/trainer importance correction.
    """
    prepare = [advantages.gae_advantage(gamma=gamma, lambda_=lambda_)]
    prepare += kl_control.kl_in_reward(
        placement=kl_in, coef=kl_coef, estimator=kl_estimator, target=kl_target, discount=gamma * lambda_
    )
    if whiten:
        prepare.append(advantages.whiten_advantage())
    prepare += named_correction(correction, correction_threshold)
    objective = _regularized(
        objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high, dual_clip=dual_clip),
        objectives.value_loss(coef=value_coef, clip=value_clip),
        kl_coef=kl_coef, kl_estimator=kl_estimator, entropy_coef=entropy_coef,
        aggregation=aggregation, max_len=max_len, kl_in=kl_in, kl_target=kl_target,
    )
    return Algorithm(
        prepare=chain(*prepare),
        objective=objective,
        optimizer=optim.adamw(learning_rate, warmup_steps=warmup_steps, max_grad_norm=max_grad_norm),
        num_epochs=num_epochs,
        num_minibatches=num_minibatches,
    )

"""The policy-gradient noun builder ``pg_algorithm``, and GRPO and PPO built with it."""
from __future__ import annotations

from typing import Callable, Sequence

from polrl import advantages, kl_control, objectives, optim
from polrl.core import Algorithm, Transform, chain
from polrl.correction import named_correction

# The keywords a noun forwards to ``pg_algorithm`` with ``**options`` (users' configs pass them).
PG_OPTIONS = (
    "learning_rate", "kl_coef", "kl_estimator", "kl_in", "kl_target", "entropy_coef", "aggregation", "max_len",
    "correction", "correction_threshold", "num_epochs", "num_minibatches", "warmup_steps", "max_grad_norm",
)
# The options that act on the prepare side; nouns whose prepare cannot take them leave them out.
REWARD_SIDE_OPTIONS = ("kl_in", "kl_target", "correction", "correction_threshold")


def check_options(noun: str, options: dict, *, without: Sequence[str] = ()) -> None:
    """Checks the ``**options`` that ``noun`` forwards to ``pg_algorithm``.

    A noun takes its own keywords plus ``PG_OPTIONS`` less ``without``; any other keyword is a
    TypeError naming the noun (as Python's own for a misspelt keyword).
    """
    taken = [name for name in PG_OPTIONS if name not in without]
    unknown = sorted(set(options) - set(taken))
    if unknown:
        raise TypeError(
            f"{noun}() got unexpected keyword argument(s) {unknown}: it takes its own keywords and these "
            f"options of polrl.algorithms.policy_gradient.pg_algorithm: {taken}"
        )


def _regularized(*terms, kl_coef, kl_estimator, kl_in, kl_target, entropy_coef, aggregation, max_len):
    """``terms`` + β·KL (when β ≠ 0 and ``kl_in="loss"``; β adapted toward ``kl_target`` when set,
    ``polrl.kl_control``) − c_H·H (when c_H ≠ 0), then the aggregation."""
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


def pg_algorithm(
    prepare: Transform | Sequence[Transform],
    *terms: Transform,
    learning_rate: float = 1e-6,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    kl_in: str = "loss",
    kl_target: float | None = None,
    entropy_coef: float = 0.0,
    aggregation: str = "token_mean",
    max_len: int | None = None,
    correction: str | None = None,
    correction_threshold: float = 2.0,
    num_epochs: int = 1,
    num_minibatches: int = 1,
    warmup_steps: int = 0,
    max_grad_norm: float | None = 1.0,
    whiten: bool = False,
    kl_discount: float = 1.0,
    collector: Callable | None = None,
    wrap_objective: Callable[[Transform], Transform] | None = None,
) -> Algorithm:
    """The one assembly of a policy-gradient noun: advantage → KL/whitening/correction → loss terms
    → KL/entropy → aggregation, optimized by AdamW.

        prepare   = chain(*prepare, kl_reward  [kl_in="reward", β ≠ 0],
                          whiten_advantage     [whiten],
                          rollout_correction   [correction])
        objective = chain(*terms, kl_penalty   [kl_in="loss", β ≠ 0; adaptive_kl_penalty with kl_target],
                          entropy_bonus        [c_H ≠ 0],
                          aggregate(aggregation, max_len))
        optimizer = optim.adamw(learning_rate, warmup_steps, max_grad_norm)

    ``prepare`` is the advantage step, a list of transforms (chained with what follows) or one
    Transform, which is the whole prepare when nothing follows it (its state keeps the
    transform's own structure). ``terms`` are the per-token loss transforms.

    Options (the keywords nouns forward with ``**options``; a noun states its own defaults where
    they differ):
      learning_rate: AdamW's peak learning rate (1e-6), reached after ``warmup_steps`` (0) of
        linear warm-up; ``max_grad_norm`` (1.0; None: off) clips the global gradient norm.
      kl_coef, kl_estimator: β (0: no KL term and no reference forward pass) and the per-token
        estimator of KL(π_θ ‖ π_ref) ("k3"; ``polrl.ops.KL_ESTIMATORS``: k1/k2/k3/abs and the
        straight-through "k1+"/"k3+"/"abs+", value of the estimator with k2's gradient).
      kl_in: where the KL goes — "loss" (a β·kl term per token) or "reward" (token rewards
        −β·kl_t credited to the advantage before whitening, ``kl_control.kl_reward``).
      kl_target: None keeps β fixed; a target KL makes β adaptive (Ziegler et al. 2019,
        ``polrl.kl_control``).
      entropy_coef: c_H of the entropy bonus −c_H·H (0: off).
      aggregation, max_len: the loss reduction (``objectives.aggregate``: "token_mean",
        "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm" with the constant
        normalizer ``max_len``) ("token_mean", None).
      correction, correction_threshold: the sampler/trainer importance correction
        (``polrl.correction.named_correction``; None: off; threshold 2.0).
      num_epochs, num_minibatches: passes over each rollout batch and minibatches per pass (1, 1).

    Set by the noun, not forwarded from users: ``whiten`` (whiten the advantages after the KL
    reward), ``kl_discount`` (d = γλ of a GAE advantage the KL reward is added to; 1 otherwise),
    ``collector`` (the data the method adds, ``Algorithm.collector``: expert rows, dynamic
    sampling, a greedy baseline, replay) and ``wrap_objective`` (a function of
    the assembled objective returning the noun's objective, e.g. CHORD's mix with its SFT part).
    """
    added = kl_control.kl_in_reward(
        placement=kl_in, coef=kl_coef, estimator=kl_estimator, target=kl_target, discount=kl_discount
    )
    if whiten:
        added.append(advantages.whiten_advantage())
    added += named_correction(correction, correction_threshold)
    single = isinstance(prepare, Transform)
    if added or not single:
        prepare = chain(*([prepare] if single else prepare), *added)
    objective = _regularized(
        *terms, kl_coef=kl_coef, kl_estimator=kl_estimator, kl_in=kl_in, kl_target=kl_target,
        entropy_coef=entropy_coef, aggregation=aggregation, max_len=max_len,
    )
    return Algorithm(
        prepare=prepare,
        objective=objective if wrap_objective is None else wrap_objective(objective),
        optimizer=optim.adamw(learning_rate, warmup_steps=warmup_steps, max_grad_norm=max_grad_norm),
        num_epochs=num_epochs,
        num_minibatches=num_minibatches,
        collector=collector,
    )


def grpo(
    *,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    kl_coef: float = 0.04,
    scale: str = "std",
    ddof: int = 1,
    filter_zero_variance: bool = False,
    seq_mask_delta: float | None = None,
    aggregation: str = "seq_mean_token_mean",
    **options,
) -> Algorithm:
    """Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300).

    For G samples o_1..o_G of one prompt with rewards r_i:

        A_i   = (r_i − mean(r)) / (std(r) + 1e-6)                 (unbiased std; size-1 groups → 0)
        ρ_i,t = π_θ(o_i,t | q, o_i,<t) / π_old(o_i,t | q, o_i,<t)
        L     = agg[ max(−A_i ρ_i,t, −A_i clip(ρ_i,t, 1−ε_low, 1+ε_high)) + β k3_i,t ]

    with k3 = exp(d) − d − 1, d = log π_ref − log π_θ, β = ``kl_coef`` = 0.04 (the paper's), ε = 0.2
    and the paper's ``seq_mean_token_mean`` aggregation. ``filter_zero_variance=True`` masks
    groups whose rewards are all equal (DAPO's filter); ``scale="none"`` gives Dr.GRPO's
    advantage. ``kl_coef=0`` drops the KL term and the reference forward pass. With one update
    per batch (``num_epochs = num_minibatches = 1``) π_old = π_θ and no extra forward pass is run.
    ``seq_mask_delta=δ`` turns on off-policy sequence masking (DeepSeek-V3.2; Trinity's
    ``enable_sequence_masking``, δ = 0.1 there): negative-advantage tokens of sequences whose mean
    log π_old − log π_θ exceeds δ leave the policy term (``objectives.clipped_policy_gradient``).

    Other keywords: see ``pg_algorithm`` (lr 1e-6, k3, ``kl_in="loss"``, no entropy bonus, no
    correction, one update per batch).
    """
    check_options("grpo", options)
    prepare = [advantages.group_advantage(scale=scale, ddof=ddof)]
    if filter_zero_variance:
        prepare.append(advantages.drop_zero_variance_groups())
    return pg_algorithm(
        prepare, objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high, seq_mask_delta=seq_mask_delta),
        kl_coef=kl_coef, aggregation=aggregation, **options,
    )


def ppo(
    *,
    learning_rate: float = 1e-5,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    dual_clip: float | None = 3.0,
    seq_mask_delta: float | None = None,
    gamma: float = 1.0,
    lambda_: float = 0.95,
    value_coef: float = 0.5,
    value_clip: float | None = 0.2,
    critic_learning_rate: float | None = None,
    whiten: bool = True,
    num_epochs: int = 2,
    num_minibatches: int = 2,
    **options,
) -> Algorithm:
    """Proximal Policy Optimization with a learned value head (Schulman et al. 2017).

        A_t = GAE(γ, λ) of the sequence reward paid at the last token, values V_old   (whitened)
        L   = agg[ max(−A_t ρ_t, −A_t clip(ρ_t, 1−ε, 1+ε)) (dual clip c for A_t < 0)
                   + c_v · ½ max((V_t − G_t)², (clip(V_t, V_old ± ε_v) − G_t)²)
                   + β KL_t − c_H H_t ]

    Defaults follow verl's PPO for LLMs: γ = 1, λ = 0.95, ε = 0.2, dual clip c = 3, value
    clip 0.2, lr 1e-5, 2 epochs × 2 minibatches, ``token_mean``, no KL. The model must have a
    value head (``model.value_head=True``). ``kl_in="reward"`` is the PPO-RLHF placement
    (Ziegler et al. 2019): token rewards −β·kl_t enter GAE (exactly: GAE is linear in the
    rewards, so the KL return-to-go uses the discount γλ, ``polrl.kl_control``), before
    whitening.

    ``critic_learning_rate`` (None: off) optimizes the critic apart from the policy
    (``separate_critic``): the value loss reaches the value head only, which has its own AdamW at
    this rate; with None the value loss also trains the trunk the policy shares, at the policy's rate.

    Other keywords: see ``pg_algorithm`` (β = 0, k3, ``kl_in="loss"``, no entropy bonus, no
    correction).
    """
    check_options("ppo", options)
    return separate_critic(critic_learning_rate, options, pg_algorithm(
        [advantages.gae_advantage(gamma=gamma, lambda_=lambda_)],
        objectives.clipped_policy_gradient(
            eps_low=eps_low, eps_high=eps_high, dual_clip=dual_clip, seq_mask_delta=seq_mask_delta
        ),
        objectives.value_loss(coef=value_coef, clip=value_clip, detached=critic_learning_rate is not None),
        learning_rate=learning_rate, num_epochs=num_epochs, num_minibatches=num_minibatches,
        whiten=whiten, kl_discount=gamma * lambda_, **options,
    ))


def separate_critic(critic_learning_rate: float | None, options: dict, algorithm: Algorithm) -> Algorithm:
    """``algorithm`` (whose value loss is ``detached``) with its value head optimized apart.

    With a ``critic_learning_rate`` the policy's parameters keep ``algorithm.optimizer`` and the
    value head gets its own AdamW at that rate, clipped by its own gradient norm (``max_grad_norm``
    of ``options``), ``optim.with_value_head_optimizer``; the value loss, computed on the trunk's
    hidden states under stop_gradient, trains the value head only. The critic is then a head on
    the policy's features rather than a model of its own: its loss never moves the policy. None
    returns ``algorithm`` as it is.
    """
    if critic_learning_rate is None:
        return algorithm
    if critic_learning_rate <= 0:
        raise ValueError(f"critic_learning_rate={critic_learning_rate} must be > 0 (or None: the value head "
                         f"trains with the policy's optimizer and its loss reaches the shared trunk)")
    if "detached_values" not in algorithm.needs:
        raise ValueError("separate_critic: the algorithm's value loss must be detached (detached=True)")
    critic = optim.adamw(critic_learning_rate, max_grad_norm=options.get("max_grad_norm", 1.0))
    return algorithm._replace(optimizer=optim.with_value_head_optimizer(algorithm.optimizer, critic))

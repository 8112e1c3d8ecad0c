"""Preference optimization from pairs: DPO (with cDPO / robust / hinge / IPO losses), SimPO,
ORPO, KTO, and the reward-augmented relabelling of preference pairs.

Every pair noun also takes the optimization keywords of ``OPTIMIZATION`` (AdamW learning rate
1e-4, no warm-up, gradient-norm clip 1.0, one epoch of one minibatch per batch); any other
keyword is a TypeError naming the noun."""
from __future__ import annotations

import numpy as np

from polrl import objectives, optim
from polrl.core import Algorithm, Batch, chain

DPO_LOSS_TYPES = ("sigmoid", "robust", "hinge", "ipo")


# The optimization keywords every pair noun takes, with their defaults.
OPTIMIZATION = dict(learning_rate=1e-4, warmup_steps=0, max_grad_norm=1.0, num_epochs=1, num_minibatches=1)


def pair_algorithm(noun: str, objective, options: dict) -> Algorithm:
    """The pair noun's Algorithm: no prepare, ``objective``, AdamW; ``options`` ⊆ ``OPTIMIZATION``
    (learning rate, warm-up steps, gradient-norm clip (None: off), epochs, minibatches)."""
    unknown = sorted(set(options) - set(OPTIMIZATION))
    if unknown:
        raise TypeError(f"{noun}() got unexpected keyword argument(s) {unknown}: it takes its own keywords and "
                        f"{sorted(OPTIMIZATION)}")
    o = {**OPTIMIZATION, **options}
    return Algorithm(
        prepare=chain(),
        objective=chain(objective),
        optimizer=optim.adamw(o["learning_rate"], warmup_steps=o["warmup_steps"], max_grad_norm=o["max_grad_norm"]),
        num_epochs=o["num_epochs"],
        num_minibatches=o["num_minibatches"],
    )


def dpo(
    *,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    **options,
) -> Algorithm:
    """Direct Preference Optimization (Rafailov et al. 2023, "Direct Preference Optimization:
    Your Language Model is Secretly a Reward Model", arXiv 2305.18290) and its reference-based
    relatives, by ``loss_type`` (formulas in ``polrl.objectives.preference_loss``):

        h = [log π_θ(y_w) − log π_ref(y_w)] − [log π_θ(y_l) − log π_ref(y_l)]
        sigmoid: −(1−ε) log σ(βh) − ε log σ(−βh)         (β = 0.1, ε = 0: plain DPO; ε > 0: cDPO)
        robust:  [−(1−ε) log σ(βh) + ε log σ(−βh)]/(1−2ε)  (Provably Robust DPO, arXiv 2403.00409)
        hinge:   max(0, 1 − βh)                          (SLiC, arXiv 2305.10425)
        ipo:     (h̄ − 1/(2β))², length-normalised h̄      (IPO, arXiv 2310.12036)

    Batches hold pairs as groups of two rows (``group_b``); the row with the higher ``reward_b``
    is preferred. The reference is the frozen ``ref_params``; log-probs are sums over response
    tokens (the aggregation DPO defines). Reference-free pair losses are the ``simpo`` and
    ``orpo`` nouns; unpaired rows are ``kto``.
    """
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"dpo: loss_type must be one of {DPO_LOSS_TYPES} (see the simpo / orpo / kto nouns), got {loss_type!r}")
    return pair_algorithm(
        "dpo", objectives.preference_loss(beta=beta, loss_type=loss_type, label_smoothing=label_smoothing),
        options,
    )


def simpo(
    *,
    beta: float = 2.0,
    gamma: float = 0.5,
    **options,
) -> Algorithm:
    """SimPO (Meng et al. 2024, "SimPO: Simple Preference Optimization with a Reference-Free
    Reward", arXiv 2405.14734): reference-free, length-normalised pair loss

        L = −log σ(β (ā(y_w) − ā(y_l)) − γ),   ā(y) = (1/|y|) Σ_t log π_θ(y_t)

    β = 2.0 (the paper's range is 2.0–2.5), γ = 0.5 (TRL's ``simpo_gamma`` default; the paper
    tunes γ/β). No reference: the algorithm needs nothing beyond the scoring forward. Loss
    ``"simpo"``.
    """
    return pair_algorithm(
        "simpo", objectives.preference_loss(beta=beta, loss_type="simpo", simpo_gamma=gamma),
        options,
    )


def orpo(
    *,
    lambda_: float = 0.1,
    **options,
) -> Algorithm:
    """ORPO (Hong et al. 2024, "ORPO: Monolithic Preference Optimization without Reference
    Model", arXiv 2403.07691): SFT on the chosen plus an odds-ratio pair term, no reference.

        odds(y) = P(y)/(1 − P(y)) with P(y) = exp(ā(y)),  ā = mean token log-prob of the response
        L = −ā(y_w) − λ log σ(log odds(y_w) − log odds(y_l))

    λ = 0.1 (the paper's and TRL's ``beta``). Losses ``"nll"`` and ``"orpo"``.
    """
    return pair_algorithm(
        "orpo", objectives.preference_loss(beta=1.0, loss_type="orpo", orpo_lambda=lambda_),
        options,
    )


def kto(
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    threshold: float = 0.5,
    **options,
) -> Algorithm:
    """KTO (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization",
    arXiv 2402.01306) on unpaired rows:

        r = log π_θ(y) − log π_ref(y),  z = stop_grad(max(0, batch mean of r))
        desirable:   λ_D (1 − σ(β (r − z)));   undesirable: λ_U (1 − σ(β (z − r)))

    A row is desirable when ``Batch.aux["label_b"]`` is true (when the collector provides it),
    else when ``reward_b ≥ threshold``. β = 0.1, λ_D = λ_U = 1 (TRL's defaults). z comes from the
    batch's own rows, not TRL's mismatched pairs (docs/conventions.md). Loss ``"kto"``.
    """
    return pair_algorithm(
        "kto", objectives.preference_loss(
            beta=beta, loss_type="kto", kto_desirable_weight=desirable_weight,
            kto_undesirable_weight=undesirable_weight, kto_threshold=threshold,
        ),
        options,
    )


def reward_augmented_pairs(batch: Batch, goal_tokens) -> Batch:
    """Reward-augmented relabelling of preference pairs (Zhang et al. 2024, "Reward-Augmented
    Data Enhances Direct Preference Alignment of LLMs", arXiv 2410.08067).

    Each pair (x, y_w, y_l) with rewards r_w > r_l becomes TWO goal-conditioned pairs:

        (x ⊕ g(r_w):  y_w ≻ y_l)        (x ⊕ g(r_l):  y_l ≻ y_w)

    i.e. conditioned on the goal "reach reward r_w" the chosen stays chosen, and conditioned on
    "reach reward r_l" the former rejected response is the better fit (INFERRED: the paper states
    a twofold, goal-conditioned dataset relabelled on the quality scores; the swap for the
    rejected's goal is this reading of it). ``goal_tokens(r) -> int array [K]`` gives the goal's
    token ids, appended after each (left-padded) prompt. Rows (0, 1) of the input pair k become
    groups 2k (goal r_w) and 2k+1 (goal r_l); ``reward_b`` holds the relabelled preference
    (1 = chosen, 0 = rejected, 0.5 both for a tie, which every pair loss ignores), and
    ``aux["goal_reward_b"]`` / ``aux["reward_b"]`` the goal and the original reward. Host-side
    data transform (numpy); the result trains with any pair noun (``dpo``, ``simpo``, ...).
    """
    reward = np.asarray(batch.reward_b, np.float32)
    group = np.asarray(batch.group_b)
    b = reward.shape[0]
    if b % 2 or not np.array_equal(group[0::2], group[1::2]):
        raise ValueError("reward_augmented_pairs: batch must hold pairs as consecutive rows (group_b)")
    prompt = np.asarray(batch.prompt_bp)
    valid = np.asarray(batch.prompt_valid_bp, bool)
    rows, goals, new_reward, new_prompt, new_valid = [], [], [], [], []
    for k in range(b // 2):
        i, j = 2 * k, 2 * k + 1
        for goal in (max(reward[i], reward[j]), min(reward[i], reward[j])):
            g = np.asarray(goal_tokens(float(goal)), prompt.dtype).reshape(-1)
            for row in (i, j):
                rows.append(row)
                goals.append(goal)
                new_prompt.append(np.concatenate([prompt[row], g]))
                new_valid.append(np.concatenate([valid[row], np.ones(g.shape, bool)]))
                if reward[i] == reward[j]:
                    new_reward.append(0.5)
                else:
                    new_reward.append(1.0 if reward[row] == goal else 0.0)
    if len({p.shape for p in new_prompt}) != 1:
        raise ValueError("reward_augmented_pairs: goal_tokens must return the same length for every goal")
    rows = np.asarray(rows)
    take = lambda x: None if x is None else np.asarray(x)[rows]
    return batch.replace(
        prompt_bp=np.stack(new_prompt),
        prompt_valid_bp=np.stack(new_valid),
        response_bt=take(batch.response_bt),
        mask_bt=take(batch.mask_bt),
        reward_b=np.asarray(new_reward, np.float32),
        group_b=(np.arange(len(rows)) // 2).astype(np.int32),
        behavior_logp_bt=take(batch.behavior_logp_bt),
        old_value_bt=take(batch.old_value_bt),
        source_b=take(batch.source_b),
        version_b=take(batch.version_b),
        aux={**{k: np.asarray(v)[rows] for k, v in batch.aux.items()},
             "goal_reward_b": np.asarray(goals, np.float32), "reward_b": reward[rows]},
        old_logp_bt=None, ref_logp_bt=None, adv_bt=None, return_bt=None, logp_bt=None,
        entropy_bt=None, value_bt=None, logits_btv=None,
        group_size=2,
    )

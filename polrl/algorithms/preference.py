"""Preference optimization from pairs: DPO (with cDPO / robust / hinge / IPO losses), SimPO,
ORPO, KTO (the reward-augmented relabelling of pairs is ``polrl.algorithms.ra_dpo``).

Every pair noun also takes the optimization keywords of ``OPTIMIZATION`` (AdamW learning rate
1e-4, no warm-up, gradient-norm clip 1.0, one epoch of one minibatch per batch); any other
keyword is a TypeError naming the noun."""
from __future__ import annotations

from polrl import objectives, optim
from polrl.core import Algorithm, chain

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

"""Preference optimization from pairs."""
from __future__ import annotations

from polrl import objectives, optim
from polrl.core import Algorithm, chain


def dpo(
    *,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    learning_rate: float = 1e-4,
    warmup_steps: int = 0,
    max_grad_norm: float | None = 1.0,
    num_epochs: int = 1,
    num_minibatches: int = 1,
) -> Algorithm:
    """Direct Preference Optimization (Rafailov et al. 2023, arXiv 2305.18290).

        h = [log π_θ(y_w) − log π_ref(y_w)] − [log π_θ(y_l) − log π_ref(y_l)]
        L = −(1−ε) log σ(β h) − ε log σ(−β h)        (β = 0.1, ε = 0: plain DPO)

    ``loss_type="ipo"`` gives IPO (Azar et al. 2023): (h − 1/(2β))² with length-normalised
    log-ratios. Batches hold pairs as groups of two rows (``group_b``); the row with the higher
    ``reward_b`` is preferred. The reference is the frozen ``ref_params``; log-probs are sums
    over response tokens (the aggregation DPO defines).
    """
    return Algorithm(
        prepare=chain(),
        objective=chain(
            objectives.preference_loss(beta=beta, loss_type=loss_type, label_smoothing=label_smoothing)
        ),
        optimizer=optim.adamw(learning_rate, warmup_steps=warmup_steps, max_grad_norm=max_grad_norm),
        num_epochs=num_epochs,
        num_minibatches=num_minibatches,
    )

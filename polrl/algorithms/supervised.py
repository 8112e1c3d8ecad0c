"""Supervised fine-tuning."""
from __future__ import annotations

from polrl import objectives, optim
from polrl.core import Algorithm, chain


def sft(
    *,
    learning_rate: float = 1e-3,
    aggregation: str = "token_mean",
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = 1.0,
) -> Algorithm:
    """Supervised fine-tuning on demonstrations: L = agg_t(−log π_θ(y_t | x, y_<t)).

    The demonstration is the batch's response; ``mask_bt`` selects the supervised tokens.
    Default aggregation ``token_mean`` (every supervised token weighs the same).
    """
    return Algorithm(
        prepare=chain(),
        objective=chain(objectives.nll(), objectives.aggregate(aggregation)),
        optimizer=optim.adamw(
            learning_rate, warmup_steps=warmup_steps, weight_decay=weight_decay, max_grad_norm=max_grad_norm
        ),
    )

"""The optimizer every algorithm noun builds: AdamW with warm-up, gradient clipping."""
from __future__ import annotations

import jax
import optax


def adamw(
    learning_rate: float,
    *,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
) -> optax.GradientTransformation:
    """``clip_by_global_norm(max_grad_norm) → adamw`` with a linear warm-up to ``learning_rate``."""
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    schedule = (
        optax.linear_schedule(0.0, learning_rate, warmup_steps) if warmup_steps else learning_rate
    )
    parts = [optax.clip_by_global_norm(max_grad_norm)] if max_grad_norm else []
    parts.append(optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay))
    return optax.chain(*parts)


VALUE_HEAD = ("value_w", "value_b")  # the value head's parameters (``polrl.models.transformer``)


def with_value_head_optimizer(
    policy: optax.GradientTransformation, value_head: optax.GradientTransformation
) -> optax.GradientTransformation:
    """``policy`` on every parameter but the value head's, ``value_head`` on those (``VALUE_HEAD``).

    Each part keeps its own state and sees only its own gradients, so a global-norm clip inside
    one measures that part alone: a critic optimized apart from the policy, at its own learning
    rate (with the need ``"detached_values"`` no loss reaches both parts).
    """
    return optax.multi_transform({"policy": policy, "value_head": value_head}, value_head_labels)


def value_head_labels(params):
    """The tree of ``params`` with "value_head" at the value head's leaves and "policy" elsewhere."""
    def label(path, _):
        return "value_head" if any(getattr(k, "key", None) in VALUE_HEAD for k in path) else "policy"
    return jax.tree_util.tree_map_with_path(label, params)

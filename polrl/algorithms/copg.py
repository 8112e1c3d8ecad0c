"""CoPG: Contrastive Policy Gradient (Flet-Berliac et al. 2024, Cohere, arXiv 2406.19185)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import ops, optim
from polrl.core import Algorithm, Batch, Transform, chain, stateless

SEQUENCE_REDUCTIONS = ("token_sum", "token_mean")


def contrastive_policy_gradient(*, beta: float, aggregation: str = "token_sum") -> Transform:
    """CoPG's contrastive loss over every pair of rows in a group, loss ``"copg"``.

    With the regularised reward of a response (sequence log-ratio s, summed over its tokens for
    ``aggregation="token_sum"``, averaged for ``"token_mean"``)

        a(y) = R(y) − β s(y),    s(y) = log π_θ(y|x) − log π_ref(y|x),

    each pair (y, y′) of responses to one prompt, drawn from any behaviour policy, costs

        ℓ(y, y′) = (a(y) − a(y′))² / (2β),

    whose gradient −(a(y) − a(y′))·(∇log π_θ(y) − ∇log π_θ(y′)) is a policy gradient with the
    other sample's regularised reward as baseline — no importance ratio, so off-policy rows
    are fine. The loss averages ℓ over all pairs of a group (closed form: 2/(n−1) Σ_i (a_i − ā)²
    / (2β) for n rows), then over the groups with at least two rows that have a valid token
    (rows whose tokens are all masked are left out). Logs ``copg_logratio`` (mean s) and
    ``copg_regularized_reward`` (mean a). Needs ``ref_logp``.

    Special cases (Flet-Berliac et al. 2024, §4): with two rows whose rewards differ by
    1/2, ℓ = (β/2)·(h − 1/(2β))² with h = s(y_w) − s(y_l), i.e. IPO up to the factor β/2;
    as β → 0 the gradient is (R(y) − R(y′))(∇log π(y) − ∇log π(y′)), two-sample RLOO.

    INFERRED (the abstract says CoPG generalises IPO and on-policy PG without importance
    sampling; the exact loss normalisation was not reachable): the 1/(2β) scale (so the
    gradient is the policy-gradient direction whatever β) and the all-pairs average in a group.
    """
    if beta <= 0:
        raise ValueError(f"contrastive_policy_gradient: beta={beta} must be > 0")
    if aggregation not in SEQUENCE_REDUCTIONS:
        raise ValueError(f"contrastive_policy_gradient: aggregation={aggregation!r}; use one of {SEQUENCE_REDUCTIONS}")

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "ref_logp_bt", "reward_b", "group_b", by="contrastive_policy_gradient")
        m, n = batch.mask_bt, batch.batch_size
        log_ratio = batch.logp_bt - batch.ref_logp_bt
        if aggregation == "token_sum":
            s_b = ops.masked_sum(log_ratio, m, axis=1)
        else:
            s_b = ops.masked_mean(log_ratio, m, axis=1)
        a_b = batch.reward_b - beta * s_b
        valid_b = (m > 0).any(axis=1).astype(a_b.dtype)
        count_g = jax.ops.segment_sum(valid_b, batch.group_b, num_segments=n)
        mean_g = ops.safe_div(jax.ops.segment_sum(a_b * valid_b, batch.group_b, num_segments=n), count_g)
        sq_g = jax.ops.segment_sum(valid_b * jnp.square(a_b - mean_g[batch.group_b]), batch.group_b, num_segments=n)
        pairs_g = (count_g >= 2).astype(a_b.dtype)
        loss_g = ops.safe_div(2.0 * sq_g, count_g - 1.0) / (2.0 * beta)
        loss = ops.safe_div((loss_g * pairs_g).sum(), pairs_g.sum())
        sg = jax.lax.stop_gradient
        return batch.add_loss("copg", loss).add_metrics(
            copg_logratio=ops.masked_mean(sg(s_b), valid_b),
            copg_regularized_reward=ops.masked_mean(sg(a_b), valid_b),
        )

    return stateless(fn, needs=("ref_logp",))


def copg(
    *,
    beta: float = 0.1,
    aggregation: str = "token_sum",
    learning_rate: float = 1e-6,
    num_epochs: int = 1,
    num_minibatches: int = 1,
    warmup_steps: int = 0,
    max_grad_norm: float | None = 1.0,
) -> Algorithm:
    """Contrastive Policy Gradient (Flet-Berliac et al. 2024, arXiv 2406.19185) on groups of
    responses per prompt (``batches="rollouts"``; any behaviour policy, no importance ratio):

        a_i = R_i − β [log π_θ(y_i) − log π_ref(y_i)]
        L   = mean_groups mean_{i<j} (a_i − a_j)² / (2β)

    (see ``contrastive_policy_gradient``). Its fixed point is the KL-regularised optimum
    π* ∝ π_ref exp(R/β). ``aggregation`` is how a response's log-ratio is reduced over its
    tokens: ``token_sum`` (the sequence log-probability, the paper's) or ``token_mean``.
    Defaults: β = 0.1 (the paper sweeps β; INFERRED), one update per batch.
    """
    return Algorithm(
        prepare=chain(),
        objective=chain(contrastive_policy_gradient(beta=beta, aggregation=aggregation)),
        optimizer=optim.adamw(learning_rate, warmup_steps=warmup_steps, max_grad_norm=max_grad_norm),
        num_epochs=num_epochs,
        num_minibatches=num_minibatches,
    )

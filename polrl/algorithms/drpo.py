"""DRPO: Decoupled Reward Policy Optimization (Optimization-AI/DRPO, arXiv 2510.04474)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import objectives, ops, optim
from polrl.core import Algorithm, Batch, Transform, chain, stateless

_TRUST_REGION_KL = {"k1": ops.kl_k1, "k3": ops.kl_k3}


def _segment_logsumexp(x_b, member_b, group_b, num_groups):
    """log Σ_{j ∈ g, member} exp(x_j) per group (0 for groups without members); the max shift is
    a constant for the gradient."""
    shifted = jnp.where(member_b, x_b, -jnp.inf)
    max_g = jax.lax.stop_gradient(jax.ops.segment_max(shifted, group_b, num_segments=num_groups))
    max_g = jnp.where(jnp.isfinite(max_g), max_g, 0.0)
    sum_g = jax.ops.segment_sum(jnp.where(member_b, jnp.exp(x_b - max_g[group_b]), 0.0), group_b, num_segments=num_groups)
    return jnp.where(sum_g > 0, max_g + jnp.log(jnp.where(sum_g > 0, sum_g, 1.0)), 0.0)


def decoupled_reward_loss(*, tau: float = 10.0, length_lambda: float | None = 0.1) -> Transform:
    """DRPO's decoupled objective for binary rewards, loss ``"drpo"``.

    With the length-normalised log-likelihood s_i = (1/|o_i|) Σ_t log π_θ(o_i,t) (no ratio),
    the length ratio ℓ_i = |o_i| / T (T = the padded response width) and, per prompt q whose
    group has at least one correct (r = 1) and one wrong (r = 0) response,

        J_q = Σ_{i∈pos} w_i (s_i − τ log Σ_{j∈neg} exp(s_j / τ)) / Σ_{i∈pos} w_i,
        w_i = exp((1 − ℓ_i) / λ),

        L = −Σ_q J_q / N_q          (N_q: every group of the minibatch, valid or not).

    The weights are the self-normalised closed form of the KL-regularised best distribution of
    correct answers, P*(o) ∝ π_old(o) exp((1 − ℓ(o))/λ): shorter correct answers are preferred
    without ever giving a correct answer a negative advantage. λ = ``length_lambda`` (None: no
    length preference, w = 1); τ = ``tau``. Rows whose tokens are all masked and rewards other
    than 0/1 belong to neither set. Logs ``drpo_valid_frac`` (groups with both signs).

    Verified against Optimization-AI/DRPO ``verl/trainer/ppo/core_algos.py::compute_policy_loss_drpo``.
    There the log-sum-exp is a value-1 surrogate S/sg(S) with the
    same gradient; here it is the true log-sum-exp, so the loss value is the objective itself.
    """
    if tau <= 0:
        raise ValueError(f"decoupled_reward_loss: tau={tau} must be > 0")
    if length_lambda is not None and length_lambda <= 0:
        raise ValueError(f"decoupled_reward_loss: length_lambda={length_lambda} must be > 0 (or None)")

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "reward_b", "group_b", by="decoupled_reward_loss")
        m, n, group_b = batch.mask_bt, batch.batch_size, batch.group_b
        s_b = ops.masked_mean(batch.logp_bt, m, axis=1)
        valid_b = (m > 0).any(axis=1)
        pos_b = valid_b & (batch.reward_b == 1.0)
        neg_b = valid_b & (batch.reward_b == 0.0)
        count = lambda x: jax.ops.segment_sum(x.astype(jnp.float32), group_b, num_segments=n)
        valid_g = (count(pos_b) > 0) & (count(neg_b) > 0)
        lse_g = tau * _segment_logsumexp(s_b / tau, neg_b, group_b, n)
        if length_lambda is None:
            w_b = jnp.ones_like(s_b)
        else:
            w_b = jnp.exp((1.0 - m.sum(axis=1) / m.shape[1]) / length_lambda)
        w_b = jnp.where(pos_b, w_b, 0.0)
        num_g = jax.ops.segment_sum(w_b * (s_b - lse_g[group_b]), group_b, num_segments=n)
        j_g = jnp.where(valid_g, ops.safe_div(num_g, jax.ops.segment_sum(w_b, group_b, num_segments=n)), 0.0)
        groups_present = (count(jnp.ones_like(valid_b)) > 0).sum()
        loss = -j_g.sum() / jnp.maximum(groups_present, 1)
        return batch.add_loss("drpo", loss).add_metrics(
            drpo_valid_frac=valid_g.sum() / jnp.maximum(groups_present, 1)
        )

    return stateless(fn)


def squared_hinge_trust_region(
    *, delta: float = 1e-4, beta: float = 1e3, kl_type: str = "k1", aggregation: str = "token_mean",
    max_len: int | None = None,
) -> Transform:
    """DRPO's trust region on the divergence from π_old, loss ``"trust_region"`` (gradient form):

        D    = agg_t[ k(π_old, π_θ) ]      k1: log π_old − log π_θ;  k3: ρ − 1 − log ρ, ρ = π_θ/π_old
        L_TR = sg(max(β (D − δ), 0)) · D    ⇒  ∇L_TR = β max(D − δ, 0) ∇D = ∇ (β/2) max(D − δ, 0)²

    With π_old = π_θ (one update per batch) D = 0 and the term vanishes; it binds from the
    second minibatch of a batch on. Logs ``trust_region_kl`` (D) and ``trust_region_active``
    (D > δ). Defaults from DRPO's run script: δ = 1e-4, β = 1e3, ``ppo_kl_type=kl`` (k1).
    """
    if kl_type not in _TRUST_REGION_KL:
        raise ValueError(f"squared_hinge_trust_region: kl_type={kl_type!r}; use one of {sorted(_TRUST_REGION_KL)}")
    kl_fn = _TRUST_REGION_KL[kl_type]
    ops.aggregate(jnp.zeros((1, 1)), jnp.ones((1, 1)), aggregation, max_len=max_len)  # validates now

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", by="squared_hinge_trust_region")
        # k1(old, θ) = log π_old − log π_θ;  k3(old, θ) = e^d − d − 1 with d = log π_θ − log π_old
        kl = ops.aggregate(kl_fn(objectives.old_logp(batch), batch.logp_bt), batch.mask_bt, aggregation, max_len=max_len)
        coef = jax.lax.stop_gradient(jnp.maximum(beta * (kl - delta), 0.0))
        sg_kl = jax.lax.stop_gradient(kl)
        return batch.add_loss("trust_region", coef * kl).add_metrics(
            trust_region_kl=sg_kl, trust_region_active=(sg_kl > delta).astype(jnp.float32)
        )

    return stateless(fn)


def drpo(
    *,
    tau: float = 10.0,
    length_lambda: float | None = 0.1,
    delta: float = 1e-4,
    trust_beta: float = 1e3,
    kl_type: str = "k1",
    aggregation: str = "token_mean",
    max_len: int | None = None,
    learning_rate: float = 2e-6,
    num_epochs: int = 1,
    num_minibatches: int = 4,
    warmup_steps: int = 0,
    max_grad_norm: float | None = 1.0,
) -> Algorithm:
    """Decoupled Reward Policy Optimization (arXiv 2510.04474) for 0/1 rewards, no reference:

        L = −(1/N_q) Σ_q Σ_{i∈pos} w_i (s_i − τ log Σ_{j∈neg} e^{s_j/τ}) / Σ_{i∈pos} w_i
            + sg(max(β(D − δ), 0)) · D

    with s the length-normalised log-likelihood, w_i = exp((1 − |o_i|/T)/λ) and D the
    ``aggregation`` of the per-token divergence from π_old (see ``decoupled_reward_loss`` and
    ``squared_hinge_trust_region``). Defaults from DRPO's ``run_drpo_1.5b_8k.sh``: τ = 10,
    λ = 0.1, δ = 1e-4, β = 1e3, k1 divergence, lr 2e-6, 1 epoch of 4 minibatches (128 prompts,
    mini-batches of 32), n = 8 samples at temperature 0.6 (rollout options).
    """
    return Algorithm(
        prepare=chain(),
        objective=chain(
            decoupled_reward_loss(tau=tau, length_lambda=length_lambda),
            squared_hinge_trust_region(delta=delta, beta=trust_beta, kl_type=kl_type, aggregation=aggregation, max_len=max_len),
        ),
        optimizer=optim.adamw(learning_rate, warmup_steps=warmup_steps, max_grad_norm=max_grad_norm),
        num_epochs=num_epochs,
        num_minibatches=num_minibatches,
    )

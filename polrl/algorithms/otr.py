"""OTR: One-Token Rollout, supervised fine-tuning guided by policy gradient (arXiv 2509.26313)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import objectives, ops, optim
from polrl.core import Algorithm, Batch, Transform, chain, stateless


def _candidates(rng, logits_btv, num_samples: int, temperature: float):
    """K tokens per position drawn from softmax(logits / τ_s), stop-gradient: int [K, B, T]."""
    scaled = jax.lax.stop_gradient(logits_btv) / temperature
    return jax.random.categorical(rng, scaled, axis=-1, shape=(num_samples,) + logits_btv.shape[:2])


def one_token_rollout(
    *, num_samples: int | None = 8, temperature: float = 1.0, negative_reward: float = 0.1
) -> Transform:
    """OTR's token-level policy gradient on demonstrations, term ``"otr"``.

    Every response position t of a demonstration is a one-step episode from the state
    s_t = (prompt, y_<t): K candidate tokens a_k ~ softmax(z_t / τ_s) are drawn from the current
    policy (no gradient through the draw) and rewarded by the demonstrated token y_t,

        R_k = 1 if a_k = y_t else −β,        L_t = −(1/K) Σ_k R_k log π_θ(a_k | s_t).

    Its expected gradient is (1+β)·∇π_θ(y_t | s_t) at τ_s = 1 (Σ_a π(a)∇log π(a) = 0), i.e.
    SFT's ∇log π(y_t) re-weighted by the model's own probability of the demonstrated token.
    ``num_samples=None`` uses that expectation exactly, L_t = −Σ_a sg(π_τs(a)) R(a) log π_θ(a)
    (the K → ∞ limit, no sampling). Reads ``logits_btv`` (need ``"logits"``: the trainer's
    scoring forward fills it, temperature-scaled and differentiable) and the ``rng`` extra
    (one key per minibatch). Logs ``otr_match_frac`` (candidates equal to y_t, over valid
    tokens).

    INFERRED (only the abstract and summaries of arXiv 2509.26313 were available; they state the per-token rollout, the ground-truth reward and a second term that
    penalises sampled incorrect tokens): the reward −β for a wrong candidate, K = 8,
    τ_s = 1 and β = 0.1 are this implementation's choices.
    """
    if num_samples is not None and num_samples < 1:
        raise ValueError(f"one_token_rollout: num_samples={num_samples} must be >= 1 (or None)")
    if temperature <= 0:
        raise ValueError(f"one_token_rollout: temperature={temperature} must be > 0")

    def fn(batch: Batch, *, rng=None) -> Batch:
        batch.require("logits_btv", by="one_token_rollout (declare the need 'logits')")
        logits, target = batch.logits_btv, batch.response_bt
        logp_btv = jax.nn.log_softmax(logits, axis=-1)
        if num_samples is None:
            probs_btv = jax.nn.softmax(jax.lax.stop_gradient(logits) / temperature, axis=-1)
            is_target = jnp.arange(logits.shape[-1]) == target[..., None]
            reward_btv = jnp.where(is_target, 1.0, -negative_reward)
            loss_bt = -(probs_btv * reward_btv * logp_btv).sum(-1)
            match_bt = jnp.take_along_axis(probs_btv, target[..., None], axis=-1)[..., 0]
        else:
            if rng is None:
                raise ValueError("one_token_rollout samples tokens: it needs the rng extra (the update passes it)")
            a_kbt = _candidates(rng, logits, num_samples, temperature)
            logp_kbt = jnp.take_along_axis(logp_btv[None], a_kbt[..., None], axis=-1)[..., 0]
            match_kbt = (a_kbt == target[None]).astype(logp_kbt.dtype)
            reward_kbt = match_kbt - negative_reward * (1.0 - match_kbt)
            loss_bt = -(reward_kbt * logp_kbt).mean(0)
            match_bt = match_kbt.mean(0)
        return batch.add_term("otr", loss_bt).add_metrics(otr_match_frac=ops.masked_mean(match_bt, batch.mask_bt))

    return stateless(fn, needs=("logits",))


def otr(
    *,
    num_samples: int | None = 8,
    sample_temperature: float = 1.0,
    negative_reward: float = 0.1,
    learning_rate: float = 1e-3,
    aggregation: str = "token_mean",
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = 1.0,
) -> Algorithm:
    """One-Token Rollout (arXiv 2509.26313): fine-tuning on demonstrations (``batches=
    "demonstrations"``) with a one-step policy gradient at every token:

        a_k ~ π_θ(· | x, y_<t)^(1/τ_s),  R_k = 1[a_k = y_t] − β 1[a_k ≠ y_t]
        L = agg_t[ −(1/K) Σ_k R_k log π_θ(a_k | x, y_<t) ]

    (see ``one_token_rollout``). Defaults: K = 8 candidates, τ_s = 1, β = 0.1 (INFERRED, not
    reachable in the paper), ``token_mean`` over the supervised tokens like ``sft``, AdamW with
    the SFT learning rate of this package's arithmetic runs.
    """
    return Algorithm(
        prepare=chain(),
        objective=chain(
            one_token_rollout(num_samples=num_samples, temperature=sample_temperature, negative_reward=negative_reward),
            objectives.aggregate(aggregation),
        ),
        optimizer=optim.adamw(learning_rate, warmup_steps=warmup_steps, weight_decay=weight_decay, max_grad_norm=max_grad_norm),
    )

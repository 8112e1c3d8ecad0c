"""DRAGON: the contrast of on-policy positive and negative sets under a distributional reward."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl.algorithms.preference import pair_algorithm
from polrl.collectors.distributional_reward import with_distributional_reward
from polrl.core import Algorithm, Batch, Transform, stateless


def set_contrast_loss(*, beta: float = 0.1) -> Transform:
    """DRAGON's loss between the positive and the negative set of each group, as DPO pairs.

    Rows come in groups of ``batch.group_size`` (one prompt's on-policy samples); ``reward_b`` is
    each sample's credit c_i (``with_distributional_reward``). The group's positive set is
    D⁺ = {i : c_i > 0}, its negative set D⁻ = {j : c_j < 0} (credit 0: neither). With
    r_i = Σ_t [log π_θ(y_i,t) − log π_ref(y_i,t)] over response tokens:

        L = (1 / |P|) Σ_{(i, j) ∈ P} −log σ(β (r_i − r_j)),   P = ∪_groups D⁺ × D⁻

    every positive paired with every negative of its group (no pairs: L = 0). Loss ``"dragon"``;
    metrics ``dragon_pairs`` (|P|), ``pref_accuracy`` (fraction of pairs with r_i > r_j),
    ``pref_margin`` (mean r_i − r_j over pairs). Needs ``ref_logp``.
    """
    if not (isinstance(beta, (int, float)) and not isinstance(beta, bool) and 0 < beta < float("inf")):
        raise ValueError(f"dragon: beta={beta!r} must be a finite number > 0 (the DPO inverse temperature)")

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "ref_logp_bt", "reward_b", by="set_contrast_loss")
        g = batch.group_size
        r = ((batch.logp_bt - batch.ref_logp_bt) * batch.mask_bt).sum(-1).reshape(-1, g)
        c = batch.reward_b.reshape(-1, g)
        pairs = ((c > 0)[:, :, None] & (c < 0)[:, None, :]).astype(r.dtype)
        h = r[:, :, None] - r[:, None, :]
        n = pairs.sum()
        denom = jnp.maximum(n, 1.0)
        loss = (pairs * -jax.nn.log_sigmoid(beta * h)).sum() / denom
        sg = jax.lax.stop_gradient(h)
        batch = batch.add_loss("dragon", loss)
        return batch.add_metrics(dragon_pairs=n, pref_accuracy=(pairs * (sg > 0)).sum() / denom,
                                 pref_margin=(pairs * sg).sum() / denom)

    return stateless(fn, needs=("ref_logp",))


def dragon(
    *,
    beta: float = 0.1,
    positive="answer",
    negative=None,
    bandwidth: float = 1.0,
    negative_weight: float = 1.0,
    **options,
) -> Algorithm:
    """DRAGON ("DRAGON: Distributional Rewards Optimize Diffusion Generative Models", Bai et al.
    2025, arXiv 2504.15217) on a language policy: on-policy groups scored as sets against exemplar
    sets, split into a positive and a negative set by each sample's credit, and the contrast of the
    two sets optimized with a DPO loss.

        c_i = D(Y ∖ {y_i}) − D(Y),   D(Y) = MMD²(Y, E⁺) − w·MMD²(Y, E⁻)     (the collector wrapper)
        D⁺ = {c > 0},  D⁻ = {c < 0}
        L  = mean over (i, j) ∈ D⁺ × D⁻ of one group of −log σ(β [(log π_θ − log π_ref)(y_i) − (…)(y_j)])

    The reward is ``polrl.collectors.with_distributional_reward(positive, negative, bandwidth,
    negative_weight)``, added to the phase's collector as this algorithm's ``collector`` (so
    ``collector = "group_samples"``, on-policy, G ≥ 2); the loss is ``set_contrast_loss(beta)``,
    pure, no prepare. β = 0.1 (DPO's); the other keywords are ``preference.OPTIMIZATION``'s.

    INFERRED: the paper optimizes the contrast of D⁺ and D⁻ with Diffusion-DPO / Diffusion-KTO
    surrogates on a diffusion model; here the surrogate is sequence-level DPO (log-ratio sums over
    response tokens, as ``dpo``) over every positive–negative pair of a prompt's group, with the
    split at credit 0 (a sample that does not change the set score is in neither set).
    """
    alg = pair_algorithm("dragon", set_contrast_loss(beta=beta), options)
    return alg._replace(collector=with_distributional_reward(positive=positive, negative=negative, bandwidth=bandwidth,
                                                             negative_weight=negative_weight))

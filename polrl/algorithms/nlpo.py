"""NLPO: PPO on the policy restricted, at every token, to the top-p nucleus of a delayed copy of itself.

"Is Reinforcement Learning (Not) for Natural Language Processing? Benchmarks, Baselines, and
Building Blocks for Natural Language Policy Optimization" (Ramamurthy et al. 2022, arXiv
2210.01241). With K_t the kept set of step t (the mask model's nucleus, ``collectors.masked_groups``),
the policy NLPO samples and trains is the masked, renormalised

    log π̃_θ(y_t | s_t) = z_{y_t} − log Σ_{a ∈ K_t} exp z_a        (z = logits / T; −inf outside K_t)
    H̃_t = −Σ_{a ∈ K_t} π̃_θ(a | s_t) log π̃_θ(a | s_t)

and its loss is PPO's (``algorithms.ppo``: value head, GAE, whitened advantages, clip with dual
clip, clipped value loss) with log π̃ in the ratio π̃_θ / π̃_old, in the KL terms and in the entropy:
the masked-out tokens carry no probability and receive no gradient, as the authors' maskable
categorical distribution. π̃_old and the sampler's log-probs come masked from the collector, so the
ratio starts at 1 on-policy and the rows are ON_POLICY.

With ``top_mask`` = 1 every token is kept, π̃ = π and NLPO is PPO with the same keywords
(tests/test_nlpo.py checks the loss and the parameters after a step).

Defaults are ``ppo``'s, so that comparison is one keyword. The paper's IMDB recipe puts the KL in
the reward, β = 0.1 adapted toward a target KL of 0.1 (``kl_coef=0.1, kl_in="reward",
kl_target=0.1``), with 5 epochs per batch. INFERRED: with the KL in the reward its per-token
estimate is taken between π̃_old and the unmasked reference, log π̃_old − log π_ref (the masked
log-prob is the policy's, the reference has no mask).
"""
from __future__ import annotations

import jax.numpy as jnp

from polrl import ops
from polrl.algorithms.policy_gradient import ppo
from polrl.collectors.action_mask import ACTION_MASK, masked_scores
from polrl.core import Algorithm, Batch, Transform, chain, stateless


def masked_log_probs() -> Transform:
    """Replaces the scoring forward's ``logp_bt`` and ``entropy_bt`` by the masked policy's
    (module docstring), from ``logits_btv`` (need ``"logits"``) and the kept tokens
    ``aux["action_mask_btv"]`` (``collectors.masked_groups``); the first transform of the
    objective, so every loss term after it reads π̃. Logs ``mask_kept_mass``: π_θ's mass on the
    kept set, mean over response tokens (1 where nothing is masked)."""

    def fn(batch: Batch) -> Batch:
        batch.require("logits_btv", by="masked_log_probs (declare the need 'logits')")
        batch.require_aux(ACTION_MASK, by="nlpo", provider="collectors.masked_groups (config.collector = \"masked_groups\")")
        keep, logits = batch.aux[ACTION_MASK], batch.logits_btv
        if keep.shape != logits.shape:
            raise ValueError(f"nlpo: aux['{ACTION_MASK}'] has shape {keep.shape}, the policy's logits {logits.shape}; "
                             f"the mask must come from a masked_groups collector of the same model")
        scores = masked_scores(logits, keep.astype(bool), batch.response_bt)
        unmasked = ops.log_softmax_at(logits, batch.response_bt)
        kept_mass = jnp.exp(unmasked - scores["logp_bt"])
        return batch.replace(**scores).add_metrics(
            mask_kept_mass=ops.masked_mean(kept_mass, batch.mask_bt))

    return stateless(fn, needs=("logits",))


def nlpo(**ppo_options) -> Algorithm:
    """NLPO (arXiv 2210.01241): ``ppo(**ppo_options)`` with ``masked_log_probs`` first in the
    objective. The mask itself (top_mask p, min_tokens_to_keep, the mask model's refresh period μ)
    belongs to the data: ``config.collector = "masked_groups"`` with ``collector_kwargs``
    (``top_mask``, ``min_tokens_to_keep``, ``update_every``; the paper's IMDB values are 0.9, 100
    of 50 257 tokens and 5).

    Keywords: ``ppo``'s (lr 1e-5, ε = 0.2, dual clip 3, γ = 1, λ = 0.95, value coef 0.5 and clip
    0.2, whitening, 2 epochs × 2 minibatches, β = 0) and ``pg_algorithm``'s options.
    """
    try:
        base = ppo(**ppo_options)
    except TypeError as error:
        raise TypeError(str(error).replace("ppo()", "nlpo()", 1)) from None
    return base._replace(objective=chain(masked_log_probs(), base.objective))

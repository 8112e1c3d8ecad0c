"""DPO-style preference losses on a masked-diffusion LM, with ELBO log-ratios on shared masks.

A masked-diffusion policy has no tractable log π_θ(y | x); Diffusion-DPO ("Diffusion Model
Alignment Using Direct Preference Optimization", arXiv 2311.12908) and LLaDA 1.5's VRPO
("LLaDA 1.5: Variance-Reduced Preference Optimization for Large Language Diffusion Models",
arXiv 2505.19223) replace it by the ELBO (:mod:`polrl.diffusion.elbo`). With K masks
(l_k, M_k) drawn from ``fold_in(key, k)`` and ℓ_k^φ(y) = (L/l_k) Σ_{i ∈ M_k} log p_φ(y_i | x, y_{M_k}),

    r(y) = (1/K) Σ_k [ℓ_k^θ(y) − ℓ_k^ref(y)]       (an estimate of B_θ(y|x) − B_ref(y|x)),

where the SAME K masks serve π_θ and π_ref and both responses of a pair (VRPO's antithetic
sampling: the mask noise common to θ and ref cancels in the difference; with θ = ref, r = 0
exactly, whatever the masks). The pair loss is DPO's, −log σ(β (r_w − r_l)); with θ = ref it
is log 2 and both margins are 0.

On top of it, the two diffusion-alignment methods polrl runs on the autoregressive policy:

* SePPO ("SePPO: Semi-Policy Preference Optimization for Diffusion Alignment", arXiv 2410.05255):
  y_w the labelled answer, y_l a sample of a checkpoint drawn from a pool of earlier ones, that
  checkpoint the reference, and the Anchor-based Adaptive Flipper on r_w
  (``polrl.algorithms.seppo.seppo_pair_loss``, imported: I = −1 when r_w < 0,
  L = −log σ(β (r_w − I r_l))); the pool's schedule and draw are
  ``polrl.collectors.checkpoint_pool.pool_schedule`` / ``choose_slot``.
* DRAGON ("DRAGON: Distributional Rewards Optimize Diffusion Generative Models", arXiv
  2504.15217): each prompt's G on-policy samples are scored as a set against the exemplar set
  {labelled answer} by the leave-one-out MMD credit
  (``polrl.collectors.distributional_reward.set_distance_and_credit``, imported), and every
  positive-credit sample is paired with every negative-credit one of its group as a DPO pair
  (``polrl.algorithms.dragon.set_contrast_loss``, imported, fed the ELBO log-ratio r as a
  one-position log-probability row).

INFERRED: (1) the ELBO log-ratio stands in for the sequence log-ratio inside SePPO's and
DRAGON's losses unchanged (a lower bound's difference, not a likelihood ratio; the anchor test
r_w ≥ 0 compares the two models' ELBOs of the demonstration, the paper's denoising-error
comparison in ELBO form); (2) row b of both responses of a pair sees the same K masks (and π_θ
and π_ref with it); different rows, and so the members of a DRAGON group, see independent
ones; (3) the DPO losses are non-linear in the K samples, so all K forwards are differentiated
in one graph (memory O(K), as the ELBO-ratio objective); (4) DRAGON's set embedding is the
per-position one-hot of the fixed-length response (all L positions, the EOS fill included);
DRAGON's reference is the RL phase's starting parameters (the SFT warm start).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from polrl.algorithms.dragon import set_contrast_loss
from polrl.algorithms.seppo import seppo_pair_loss
from polrl.collectors.distributional_reward import set_distance_and_credit
from polrl.core import Batch
from polrl.diffusion.elbo import draw_mask, sample_term

# (params, tokens [B, T], valid [B, T]) -> log-probabilities [B, T, V]
ApplyFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


def shared_masks(key: jax.Array, num_samples: int, batch: int, length: int) -> tuple[jax.Array, jax.Array]:
    """The K masks of ``elbo.elbo_samples``: (masked [K, B, L], weight [K, B]), sample k ``draw_mask(fold_in(key, k))``.

    Scoring π_θ, π_ref and both responses of a pair on these arrays shares the masks row by row."""
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"shared_masks: num_samples (config.num_mc, the Monte-Carlo masks) must be an int >= 1, "
                         f"got {num_samples!r}.")
    return jax.vmap(lambda k: draw_mask(jax.random.fold_in(key, k), batch, length))(jnp.arange(num_samples))


def elbo_log_ratio(apply: ApplyFn, params, ref_params, prompt_bp: jax.Array, prompt_valid_bp: jax.Array,
                   response_bl: jax.Array, masked_kbl: jax.Array, weight_kb: jax.Array, mask: int) -> jax.Array:
    """r = (1/K) Σ_k [ℓ_k^θ − ℓ_k^ref] on the given masks, [B]; the reference carries no gradient."""

    def terms(p):
        one = lambda m, w: sample_term(lambda t, v: apply(p, t, v), prompt_bp, prompt_valid_bp, response_bl, m, w,
                                       mask)
        return jax.lax.map(lambda mw: one(*mw), (masked_kbl, weight_kb))

    return jnp.mean(terms(params) - jax.lax.stop_gradient(terms(ref_params)), axis=0)


def dpo_loss(r_w: jax.Array, r_l: jax.Array, beta: float) -> jax.Array:
    """−(1/B) Σ_b log σ(β (r_w − r_l)): DPO's loss (SePPO's with the flipper off)."""
    return jnp.mean(seppo_pair_loss(r_w, r_l, beta=beta, flip=False)[0])


def seppo_loss(apply: ApplyFn, params, ref_params, prompt_bp, prompt_valid_bp, chosen_bl, rejected_bl, key,
               num_samples: int, mask: int, *, beta: float, flip: bool = True):
    """SePPO on ELBO log-ratios: (loss, metrics); ``ref_params`` is the pool member that drew ``rejected_bl``."""
    masked, weight = shared_masks(key, num_samples, *chosen_bl.shape)
    r_w = elbo_log_ratio(apply, params, ref_params, prompt_bp, prompt_valid_bp, chosen_bl, masked, weight, mask)
    r_l = elbo_log_ratio(apply, params, ref_params, prompt_bp, prompt_valid_bp, rejected_bl, masked, weight, mask)
    loss_b, flipped_b = seppo_pair_loss(r_w, r_l, beta=beta, flip=flip)
    r_w, r_l = jax.lax.stop_gradient(r_w), jax.lax.stop_gradient(r_l)
    return jnp.mean(loss_b), {"seppo_flipped": jnp.mean(flipped_b.astype(jnp.float32)), "seppo_anchor": jnp.mean(r_w),
                              "pref_margin": jnp.mean(r_w - r_l),
                              "pref_accuracy": jnp.mean((r_w > r_l).astype(jnp.float32))}


def set_credits(response_bl: jax.Array, answer_bl: jax.Array, group_size: int, bandwidth: float) -> jax.Array:
    """DRAGON's leave-one-out MMD credit of each row [B] (groups of ``group_size`` consecutive rows, one
    prompt each; the exemplar set of group g is its labelled answer ``answer_bl[g·G]``; all L positions valid)."""
    b, length = response_bl.shape
    tok_gnl = response_bl.reshape(b // group_size, group_size, length)
    exemplar_g1l = answer_bl[::group_size][:, None, :]
    valid = jnp.ones((group_size, length), bool)
    credit = jax.vmap(lambda y, e: set_distance_and_credit(y, valid, (e, jnp.ones((1, length), bool)),
                                                           bandwidth=bandwidth)[3])(tok_gnl, exemplar_g1l)
    return credit.reshape(b)


def dragon_loss(apply: ApplyFn, params, ref_params, prompt_bp, prompt_valid_bp, response_bl, credit_b, key,
                num_samples: int, mask: int, *, group_size: int, beta: float):
    """DRAGON on ELBO log-ratios: ``set_contrast_loss`` over each group's positive × negative pairs.

    ``credit_b`` is ``set_credits``'s; the reference carries no gradient. Returns (loss, metrics)."""
    masked, weight = shared_masks(key, num_samples, *response_bl.shape)
    r_b = elbo_log_ratio(apply, params, ref_params, prompt_bp, prompt_valid_bp, response_bl, masked, weight, mask)
    rows = Batch(prompt_bp=prompt_bp, prompt_valid_bp=prompt_valid_bp, response_bt=response_bl[:, :1],
                 mask_bt=jnp.ones_like(r_b)[:, None], reward_b=credit_b, group_size=group_size)
    rows = rows.replace(logp_bt=r_b[:, None], ref_logp_bt=jnp.zeros_like(r_b)[:, None])
    out, _ = set_contrast_loss(beta=beta).apply(rows, ())
    return out.losses["dragon"], dict(out.metrics)

"""SePPO: DPO against an earlier checkpoint, with the Anchor-based Adaptive Flipper.

"SePPO: Semi-Policy Preference Optimization for Diffusion Alignment" (Zhang, Lan et al. 2024,
arXiv 2410.05255), here on a text policy. Each pair is (x, y_w, y_l): y_w the demonstration
data's answer, y_l a sample of a reference model π_ref chosen from the policy's previous
checkpoints, which is also the pair's reference (``polrl.collectors.checkpoint_pool``). With
sequence log-likelihoods summed over response tokens and the log-ratios

    r_w = log π_θ(y_w|x) − log π_ref(y_w|x),    r_l = log π_θ(y_l|x) − log π_ref(y_l|x),

the Anchor-based Adaptive Flipper (AAF) uses y_w as the anchor: when the policy already assigns
the demonstration more likelihood than the reference does (r_w ≥ 0) the policy is judged better
than the reference, so the reference's sample is judged a loser; otherwise (r_w < 0) the
reference is judged the better model and its sample a likely winner, and its role is flipped:

    I = +1 if r_w ≥ 0 else −1            (evaluated without gradient)
    L = −log σ(β (r_w − I · r_l))

I = +1 is DPO's loss (y_l pushed down); I = −1 pushes both y_w and y_l up. ``flip=False`` keeps
I = +1 (DPO against the pool member, no AAF). The loss is the mean over pairs.

INFERRED: the anchor test compares the policy's and the reference's likelihood of y_w (the
paper's diffusion form compares denoising errors); a tie r_w = 0 (e.g. the member is the current
parameters) is not flipped; I carries no gradient. β and the optimizer are DPO's defaults here
(the paper's β is for diffusion log-likelihood scales).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl.algorithms.preference import pair_algorithm
from polrl.core import EXPERT, Algorithm, Batch, Transform, stateless

PROVIDER = "polrl.collectors.checkpoint_pool (config.collector = 'checkpoint_pool')"


def seppo_pair_loss(r_w, r_l, *, beta: float, flip: bool = True):
    """Per-pair SePPO loss and flip indicator from the log-ratios ``r_w``, ``r_l`` (any shape):

        I = +1 if r_w ≥ 0 else −1 (I = +1 when ``flip`` is False);  L = −log σ(β (r_w − I r_l)).

    Returns ``(loss, flipped)``, ``flipped`` = (I = −1) as a bool array. Pure; I is taken
    without gradient."""
    flipped = jnp.logical_and(flip, jax.lax.stop_gradient(r_w) < 0)
    sign = jnp.where(flipped, -1.0, 1.0).astype(r_l.dtype)
    return -jax.nn.log_sigmoid(beta * (r_w - sign * r_l)), flipped


def seppo_loss(*, beta: float = 0.1, flip: bool = True) -> Transform:
    """The SePPO objective on pairs of ``checkpoint_pool`` (groups of two rows, the ``EXPERT``
    row y_w, the other y_l; reference log-probs in ``aux["pool_ref_logp_bt"]``). Loss
    ``"seppo"`` (mean over pairs of ``seppo_pair_loss``); metrics ``seppo_flipped`` (fraction of
    pairs with I = −1), ``seppo_anchor`` (mean r_w), ``pref_margin`` (mean r_w − r_l),
    ``pref_accuracy`` (r_w > r_l)."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < beta < float("inf"):
        raise ValueError(f"seppo: beta={beta!r} must be a finite number > 0")
    if not isinstance(flip, bool):
        raise ValueError(f"seppo: flip={flip!r} must be True (AAF) or False (plain DPO against the pool member)")

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "source_b", by="seppo")
        batch.require_aux("pool_ref_logp_bt", by="seppo", provider=PROVIDER)
        if batch.group_size != 2:
            raise ValueError(f"seppo: batches must hold pairs (group_size 2), got group_size {batch.group_size}; "
                             f"collect with {PROVIDER}")
        m = batch.mask_bt
        r_b = ((batch.logp_bt - batch.aux["pool_ref_logp_bt"]) * m).sum(-1)
        w_b = (batch.source_b == EXPERT).astype(r_b.dtype)
        r_w = (r_b * w_b).reshape(-1, 2).sum(-1)
        r_l = (r_b * (1 - w_b)).reshape(-1, 2).sum(-1)
        loss_g, flipped_g = seppo_pair_loss(r_w, r_l, beta=beta, flip=flip)
        r_w_sg, r_l_sg = jax.lax.stop_gradient(r_w), jax.lax.stop_gradient(r_l)
        return batch.add_loss("seppo", loss_g.mean()).add_metrics(
            seppo_flipped=flipped_g.astype(jnp.float32).mean(),
            seppo_anchor=r_w_sg.mean(),
            pref_margin=(r_w_sg - r_l_sg).mean(),
            pref_accuracy=(r_w_sg > r_l_sg).astype(jnp.float32).mean(),
        )

    return stateless(fn)


def seppo(*, beta: float = 0.1, flip: bool = True, **options) -> Algorithm:
    """SePPO (arXiv 2410.05255): ``seppo_loss`` with AdamW; the pairs and the per-pair reference
    come from the ``checkpoint_pool`` collector (no ``ref_logp`` need: the reference is the
    pool member, whose log-probs the collector computes). β = 0.1 (DPO's). ``options``: the
    pair nouns' optimization keywords (``polrl.algorithms.preference.OPTIMIZATION``)."""
    return pair_algorithm("seppo", seppo_loss(beta=beta, flip=flip), options)

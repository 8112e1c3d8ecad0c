"""OPA-DPO: DPO on (revised ≻ original) pairs of the policy's own responses, plus an anchor on
the chosen response's implicit reward.

"Mitigating Hallucinations in Large Vision-Language Models via DPO: On-Policy Data Hold the Key"
(Yang, Luo, Han, Xu, Li 2025, arXiv 2501.09695). The method has four steps: (1) the policy
answers; (2) an expert minimally revises the wrong part of each answer; (3) On-Policy Alignment:
SFT (LoRA in the paper) on the revised (and ground-truth) responses, so that the revisions are
likely under the policy DPO starts from; (4) DPO from that model, which is also the reference,
on the pairs (revised ≻ original), with the anchor below. In polrl, (1)–(2) are the
``revised_pairs`` collector, (3) a ``sft`` phase on its ``emit="revised"`` rows, (4) this noun
in the next phase (whose reference is the phase's starting parameters, the OPA model).

Loss, per pair (x, y_w = revision, y_l = the policy's own response), with per-row sums over
response tokens S(y) = Σ_t log π_θ(y_t|·), S_ref(y) = Σ_t log π_ref(y_t|·):

    r(y)   = β [S(y) − S_ref(y)]                           (the implicit reward)
    L_dpo  = −log σ(r(y_w) − r(y_l))                      (DPO, loss "dpo")
    L_anc  = −λ log σ(r(y_w) − δ)                         (the anchor, loss "anchor")

averaged over the pairs that carry a preference (ties, from responses already right, are left
out of both). The anchor keeps the chosen response's likelihood from falling below the
reference's while the margin grows (the DPO term alone can lower both rows). Defaults: β = 0.1,
δ = 0, λ = 1, the authors' settings.

Text-only: the paper's image-conditioned terms — the image-focus pairs (y_w | x, image) ≻
(y_w | x, masked image), weighted 0.2, and their anchors — have no counterpart without an image
and are dropped; what remains is the language pair and the anchor on the chosen response
conditioned on the real prompt.

INFERRED: the paper's ground-truth pair (y_gt ≻ y_l) is not added: with a task whose right
answer is unique (the chain scratchpad) the revision of a wrong response IS the labelled answer,
so the two pairs coincide. The authors' script anchors the ground-truth response with the sign
above and the revised one with the opposite sign (−log σ(δ − r(y_rev))); with the revision
equal to the ground truth here, one chosen response remains, anchored upward as in mDPO's
reward anchor. The pairs are drawn each step from the phase reference (the OPA model), not
collected once from the pre-OPA policy as in the paper, so they stay on-policy w.r.t. the
reference throughout (the paper's condition).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import objectives, ops
from polrl.algorithms.preference import pair_algorithm
from polrl.core import Algorithm, Batch, Transform, chain, stateless


def chosen_anchor(*, beta: float = 0.1, delta: float = 0.0, coef: float = 1.0) -> Transform:
    """The anchor on the chosen response's implicit reward, loss ``"anchor"``:

        L_anc = −λ · mean over untied pairs of log σ(β [S(y_w) − S_ref(y_w)] − δ)

    Pairs are groups of two rows (``group_b``), the chosen one the row with the higher
    ``reward_b``; a tied group is left out. Logs ``anchor_reward`` (the mean β[S − S_ref] of the
    chosen rows). Needs ``ref_logp``.
    """
    for name, value, rule, ok in (("beta", beta, "> 0", lambda v: v > 0), ("coef", coef, ">= 0", lambda v: v >= 0),
                                  ("delta", delta, "finite", lambda v: abs(v) < float("inf"))):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            raise ValueError(f"chosen_anchor: {name}={value!r} must be a number {rule}")

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", "ref_logp_bt", "reward_b", "group_b", by="chosen_anchor")
        n = batch.batch_size
        mean_b, _, _ = ops.group_stats(batch.reward_b, batch.group_b, n, ddof=0)
        sign_b = jnp.sign(batch.reward_b - mean_b)  # +1 chosen, −1 rejected, 0 tie
        chosen_b = (sign_b > 0).astype(jnp.float32)
        r_b = beta * ((batch.logp_bt - batch.ref_logp_bt) * batch.mask_bt).sum(-1)
        pairs = jnp.maximum(chosen_b.sum(), 1.0)
        loss = -coef * (jax.nn.log_sigmoid(r_b - delta) * chosen_b).sum() / pairs
        return batch.add_loss("anchor", loss).add_metrics(
            anchor_reward=(jax.lax.stop_gradient(r_b) * chosen_b).sum() / pairs)

    return stateless(fn, needs=("ref_logp",))


def opa_dpo(*, beta: float = 0.1, anchor_coef: float = 1.0, anchor_delta: float = 0.0, **options) -> Algorithm:
    """OPA-DPO's loss (module docstring): DPO (``preference_loss``, sigmoid) + ``chosen_anchor``.

    β = 0.1, λ = ``anchor_coef`` = 1, δ = ``anchor_delta`` = 0; ``anchor_coef=0`` is plain DPO.
    Takes the pair nouns' optimization keywords (``polrl.algorithms.preference.OPTIMIZATION``).
    Collect with ``revised_pairs`` (any pair collector works).
    """
    for name, value in (("beta", beta), ("anchor_coef", anchor_coef), ("anchor_delta", anchor_delta)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"opa_dpo: {name}={value!r} must be a number")
    if not beta > 0:
        raise ValueError(f"opa_dpo: beta={beta!r} must be > 0 (DPO's 0.1 is the paper's)")
    if not anchor_coef >= 0:
        raise ValueError(f"opa_dpo: anchor_coef={anchor_coef!r} must be >= 0 (0 drops the anchor: plain DPO)")
    if not abs(anchor_delta) < float("inf"):
        raise ValueError(f"opa_dpo: anchor_delta={anchor_delta!r} must be finite (the paper's is 0)")
    objective = chain(objectives.preference_loss(beta=beta, loss_type="sigmoid"),
                      chosen_anchor(beta=beta, delta=anchor_delta, coef=anchor_coef))
    return pair_algorithm("opa_dpo", objective, options)

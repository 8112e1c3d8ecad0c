"""GKD: on-policy distillation by the generalized Jensen–Shannon divergence to a frozen teacher.

Agarwal et al., "On-Policy Distillation of Language Models: Learning from Self-Generated Mistakes"
(arXiv 2306.13649). A frozen teacher p_T scores every response token of the student's own samples
with its full next-token distribution, and the student q_θ minimises, at every position,

    M      = β p_T + (1 − β) q_θ
    JSD(β) = β KL(p_T ‖ M) + (1 − β) KL(q_θ ‖ M),         0 < β < 1,

whose gradient behaves like the forward KL(p_T ‖ q_θ) as β → 0 (JSD(β) = β KL(p_T ‖ q_θ) + O(β²))
and like the reverse KL(q_θ ‖ p_T) as β → 1 (JSD(β) = (1 − β) KL(q_θ ‖ p_T) + O((1 − β)²)). The
sequence's divergence is the mean over its L response tokens,

    D(y | x) = (1/L) Σ_n D(p_T(· | x, y_<n) ‖ q_θ(· | x, y_<n)),

and GKD minimises (1 − λ) E_{(x, y) ~ data}[D(y | x)] + λ E_{x} E_{y ~ q_θ(·|x)}[D(y | x)]: the
student-data fraction λ picks, at each step, the student's own samples (probability λ) or a fixed
source of output sequences (here the teacher's samples: λ = 0 is supervised KD on the teacher's
outputs), with no gradient through the student's sampling. Default β = 0.5, λ = 1 (on-policy).

Data: ``collectors.with_teacher_logits`` (the teacher's logits at every response position,
``aux["teacher_logits_btv"]``) after ``collectors.with_student_fraction`` (the λ coin), both from
the noun's ``collector``; the student's logits come from the update's scoring forward (need
``"logits"``), both at the rollout temperature, then both divided by the distillation
``temperature``.

INFERRED: β = 0 and β = 1 are read as the limits' divergences themselves (forward KL and reverse
KL, unscaled), since JSD(β) vanishes there; JSD(β) in between is not rescaled. The fixed data set
of the λ < 1 branch is the teacher's samples of the step's prompts (drawn each step, at the
rollout temperature). The distillation temperature divides both models' logits (default 1). The
learning rate (3e-4, AdamW) is chain_grpo's, not the paper's (Adafactor on T5 models).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from polrl import objectives, ops, optim
from polrl.collectors import compose, with_student_fraction, with_teacher_logits
from polrl.core import Algorithm, Batch, Transform, chain, stateless


def kl_divergence(logp, logq) -> jax.Array:
    """KL(p ‖ q) = Σ_v p_v (log p_v − log q_v) over the last axis, from log-probabilities."""
    return (jnp.exp(logp) * (logp - logq)).sum(-1)


def generalized_jsd(teacher_logp, student_logp, beta: float) -> jax.Array:
    """The module's D over the last axis (log-probabilities of p_T and q_θ): JSD(β) for
    0 < β < 1, KL(p_T ‖ q_θ) at β = 0, KL(q_θ ‖ p_T) at β = 1.

    log M = logsumexp(log β + log p_T, log(1 − β) + log q_θ), so M is never formed in
    probability space."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"generalized_jsd: beta={beta} must be in [0, 1] (0: forward KL, 1: reverse KL)")
    if beta == 0.0:
        return kl_divergence(teacher_logp, student_logp)
    if beta == 1.0:
        return kl_divergence(student_logp, teacher_logp)
    log_m = jnp.logaddexp(math.log(beta) + teacher_logp, math.log1p(-beta) + student_logp)
    return beta * kl_divergence(teacher_logp, log_m) + (1.0 - beta) * kl_divergence(student_logp, log_m)


def distillation_divergence(*, beta: float = 0.5, temperature: float = 1.0) -> Transform:
    """GKD's per-token divergence, term ``"gkd"``:

        L_t = D(softmax(z^T_t / τ) ‖ softmax(z^S_t / τ))          (``generalized_jsd``, β)

    z^S = the student's ``logits_btv`` (need ``"logits"``, differentiable), z^T =
    ``aux["teacher_logits_btv"]`` (frozen, from ``collectors.with_teacher_logits``), τ =
    ``temperature``. Logs ``gkd_forward_kl`` and ``gkd_reverse_kl`` (masked means of
    KL(p_T ‖ q_θ) and KL(q_θ ‖ p_T), no gradient) whatever β is, so runs at different β compare.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"gkd: beta={beta} must be in [0, 1] (0: forward KL, 1: reverse KL)")
    if not temperature > 0.0:
        raise ValueError(f"gkd: temperature={temperature} must be > 0")

    def fn(batch: Batch) -> Batch:
        batch.require("logits_btv", by="distillation_divergence (declare the need 'logits')")
        batch.require_aux("teacher_logits_btv", by="distillation_divergence",
                          provider="collectors.with_teacher_logits(teacher)")
        teacher, student = batch.aux["teacher_logits_btv"], batch.logits_btv
        if teacher.shape != student.shape:
            raise ValueError(f"distillation_divergence: the teacher's logits {teacher.shape} and the student's "
                             f"{student.shape} differ; the teacher must share the student's vocabulary")
        dtype = jnp.promote_types(student.dtype, jnp.float32)  # float32 at least; float64 stays float64
        teacher_logp = jax.nn.log_softmax(jax.lax.stop_gradient(teacher).astype(dtype) / temperature, axis=-1)
        student_logp = jax.nn.log_softmax(student.astype(dtype) / temperature, axis=-1)
        loss_bt = generalized_jsd(teacher_logp, student_logp, beta)
        sg_student = jax.lax.stop_gradient(student_logp)
        m = batch.mask_bt
        return batch.add_term("gkd", loss_bt).add_metrics(
            gkd_forward_kl=ops.masked_mean(kl_divergence(teacher_logp, sg_student), m),
            gkd_reverse_kl=ops.masked_mean(kl_divergence(sg_student, teacher_logp), m))

    return stateless(fn, needs=("logits",))


def gkd(
    *,
    beta: float = 0.5,
    temperature: float = 1.0,
    student_fraction: float = 1.0,
    teacher: str = "teacher",
    learning_rate: float = 3e-4,
    aggregation: str = "seq_mean_token_mean",
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = 1.0,
) -> Algorithm:
    """GKD (arXiv 2306.13649): the student's samples (probability λ = ``student_fraction`` per
    step, else the teacher's), scored token by token by the frozen ``teacher`` (a model of
    ``config.models``), and

        L = mean over sequences of (1/L_y) Σ_t JSD(β)(p_T(·|x, y_<t) ‖ q_θ(·|x, y_<t))

    (``distillation_divergence``; ``aggregation`` ``seq_mean_token_mean`` is the paper's
    per-sequence token mean). β = 0.5 by default (the paper's limits: β = 0 forward KL, β = 1
    reverse KL); λ = 1 is on-policy GKD, λ = 0 supervised KD on the teacher's samples. One update
    per batch, AdamW; no verifier reward enters the loss (the rows' rewards are only logged).
    """
    if not 0.0 <= student_fraction <= 1.0:
        raise ValueError(f"gkd: student_fraction={student_fraction} must be in [0, 1] (1: only the student's "
                         f"samples, 0: only the teacher's)")
    return Algorithm(
        prepare=chain(),
        objective=chain(distillation_divergence(beta=beta, temperature=temperature), objectives.aggregate(aggregation)),
        optimizer=optim.adamw(learning_rate, warmup_steps=warmup_steps, weight_decay=weight_decay,
                              max_grad_norm=max_grad_norm),
        collector=compose(with_student_fraction(teacher, student_fraction), with_teacher_logits(teacher)),
    )

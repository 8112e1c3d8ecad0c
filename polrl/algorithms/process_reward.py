"""A process reward model (PRM) trained on Monte-Carlo step labels: the value-head model as the
probability that a partial response, continued by the completer, ends correct.

"Math-Shepherd: Verify and Reinforce LLMs Step-by-step without Human Annotations" (arXiv
2312.08935) trains a PRM with binary cross-entropy at the end of every step of a response, on
labels estimated by completing each step's prefix (``polrl.collectors.step_labels``: the soft
estimate ŷ_j ∈ [0, 1], the fraction of M completions that verify). With the PRM's score of the
prefix that ends at step j

    p_j = σ(z_j),   z_j = w · h_{P+e_j} + b,

the value head on the final hidden state after the step's last token (response column e_j, P
prompt columns): exactly ``polrl.search.scoring.token_scores`` at column e_j, and
``prefix_scores`` of the prefix y_{≤e_j}, the scores test-time search reads. The loss is the
mean over the batch's labelled steps S of the cross-entropy with soft targets,

    L = (1/|S|) Σ_{(b, j) ∈ S} −[ŷ_j log σ(z_j) + (1 − ŷ_j) log σ(−z_j)]
      = (1/|S|) Σ_S softplus(z_j) − ŷ_j z_j,

minimised at σ(z_j) = ŷ_j: the PRM estimates the completer's probability of success from the
prefix (the value of the prefix under the completer, with a 0/1 reward).

Where z_j is read: the trainer's scoring forward gives the value head at the positions that
predict the response tokens, ``value_bt[:, t]`` = the value after response token t − 1 (after
the prompt for t = 0), so z_j = ``value_bt[:, e_j + 1]``; the noun's collector wrapper
(``with_score_position``) widens every row by one pad column so that column exists for a step
that ends at the last response column.

INFERRED (the paper does not fix them): the mean is over labelled steps, each step weighing the
same whatever its row's length (the paper's per-token loss at step tags with its batching); the
trunk and the value head are trained together from the SFT warm start (the paper fine-tunes a
full LLM with a step-tag classification head); the PRM's score of step j is a sigmoid of one
value-head logit rather than the paper's two-token ("+"/"−") softmax, which is the same
function class.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl.algorithms.preference import pair_algorithm
from polrl.collectors.score_position import with_score_position
from polrl.collectors.step_labels import STEP_END, STEP_LABEL
from polrl.core import Algorithm, Batch, Transform, stateless


def step_logits(batch: Batch) -> jax.Array:
    """[B, K]: z_j = ``value_bt[b, e_j + 1]`` at each step end e_j = ``aux["step_end_bk"]``
    (module docstring); 0 where the row has no step j (e_j = −1)."""
    end_bk = batch.aux[STEP_END]
    z = jnp.take_along_axis(batch.value_bt, jnp.maximum(end_bk + 1, 0), axis=1)
    return jnp.where(end_bk >= 0, z, 0.0)


def soft_cross_entropy(logit, label):
    """−[y log σ(z) + (1 − y) log σ(−z)] = softplus(z) − y·z, elementwise."""
    return jax.nn.softplus(logit) - label * logit


def step_agreement(p, label, weight) -> dict:
    """``accuracy`` (weighted fraction with (p > ½) = (label > ½)) and ``brier`` (weighted mean
    of (p − label)²) of predicted probabilities ``p`` against soft labels; ``weight`` 1/0 marks
    the steps that count."""
    total = jnp.maximum(weight.sum(), 1.0)
    agree = ((p > 0.5) == (label > 0.5)).astype(p.dtype)
    return {"accuracy": (agree * weight).sum() / total, "brier": ((p - label) ** 2 * weight).sum() / total}


def process_reward_loss() -> Transform:
    """The soft-label cross-entropy of the module docstring on ``aux["step_label_bk"]`` at the
    step ends ``aux["step_end_bk"]`` (``polrl.collectors.step_labels``), z read from the scoring
    forward's ``value_bt`` on rows one column wider (``with_score_position``). Loss
    ``"process_reward"``; logs ``prm_step_accuracy`` (σ(z) > ½ agrees with ŷ > ½),
    ``prm_brier`` (mean (σ(z) − ŷ)²) and ``prm_steps`` (labelled steps). Needs ``values``."""

    def fn(batch: Batch) -> Batch:
        batch.require("value_bt", by="process_reward_loss")
        batch.require_aux(STEP_END, STEP_LABEL, by="process_reward_loss", provider="the step_labels collector")
        z = step_logits(batch)
        label = batch.aux[STEP_LABEL].astype(z.dtype)
        weight = (batch.aux[STEP_END] >= 0).astype(z.dtype)
        steps = weight.sum()
        loss = (soft_cross_entropy(z, label) * weight).sum() / jnp.maximum(steps, 1.0)
        agreement = step_agreement(jax.nn.sigmoid(jax.lax.stop_gradient(z)), label, weight)
        return batch.add_loss("process_reward", loss).add_metrics(
            prm_step_accuracy=agreement["accuracy"], prm_brier=agreement["brier"], prm_steps=steps)

    return stateless(fn, needs=("values",))


def process_reward_model(**options) -> Algorithm:
    """Trains the policy model's value head (and its trunk) as a process reward model on
    Monte-Carlo step labels (module docstring): loss ``"process_reward"``, its collector wrapper
    ``with_score_position`` (rows one column wider, so the scoring forward reaches the value
    after the last response token). Collect with ``step_labels``. Takes the pair nouns'
    optimization keywords (AdamW, lr 1e-4, …). The phase's checkpoint is the PRM that
    ``polrl.search.scoring`` reads; the phase is not evaluated as a policy (``trains_policy``)."""
    return pair_algorithm("process_reward_model", process_reward_loss(), options)._replace(
        collector=with_score_position(), trains_policy=False)

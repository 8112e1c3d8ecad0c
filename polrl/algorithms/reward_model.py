"""A Bradley–Terry reward model trained on preference pairs: the value-head model as r(x, y).

The Bradley–Terry model of paired comparisons (Bradley & Terry 1952, "Rank Analysis of
Incomplete Block Designs: I. The Method of Paired Comparisons") says a response y_w is preferred
to y_l with probability σ(r(x, y_w) − r(x, y_l)); fitting r by maximum likelihood on labelled
pairs is the reward-model step of RLHF ("Training language models to follow instructions with
human feedback", Ouyang et al. 2022, arXiv 2203.02155):

    L = −(1/N) Σ_pairs log σ(r(x, y_w) − r(x, y_l)),

with r(x, y) the scalar value head on the final hidden state at the response's last token, the
EOS for a finished response: sequence position P + L − 1 for a prompt of P columns and a response
of L tokens (``polrl.collectors.score_position``). Only differences of r are identified (a
constant shift leaves L unchanged).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import ops
from polrl.algorithms.preference import pair_algorithm
from polrl.collectors.score_position import FIELD, with_score_position
from polrl.core import Algorithm, Batch, Transform, stateless


def bradley_terry_loss() -> Transform:
    """The Bradley–Terry loss (module docstring) on pairs held as groups of two rows
    (``group_b``; within a group the row with the higher ``reward_b`` is y_w, and groups whose two
    rewards tie are left out, as in every pair loss). r is read from the scoring forward's
    ``value_bt`` at ``aux["score_index_b"]`` (``collectors.with_score_position``). Loss
    ``"bradley_terry"``; logs ``rm_accuracy`` (pairs with r(y_w) > r(y_l)), ``rm_margin`` (mean
    r(y_w) − r(y_l)), ``rm_reward_mean`` (mean r over the pairs' rows) and ``rm_pairs``. Needs
    ``values``."""

    def fn(batch: Batch) -> Batch:
        batch.require("value_bt", "reward_b", "group_b", by="bradley_terry_loss")
        batch.require_aux(FIELD, by="bradley_terry_loss", provider="polrl.collectors.with_score_position()")
        n = batch.batch_size
        r_b = jnp.take_along_axis(batch.value_bt, batch.aux[FIELD][:, None], axis=1)[:, 0]
        mean_b, _, _ = ops.group_stats(batch.reward_b, batch.group_b, n, ddof=0)
        sign_b = jnp.sign(batch.reward_b - mean_b)  # +1 chosen, −1 rejected, 0 tie
        delta_g = jax.ops.segment_sum(sign_b * r_b, batch.group_b, num_segments=n)
        w_g = (jax.ops.segment_sum(jnp.abs(sign_b), batch.group_b, num_segments=n) == 2).astype(r_b.dtype)
        pairs = jnp.maximum(w_g.sum(), 1.0)
        loss = -(jax.nn.log_sigmoid(delta_g) * w_g).sum() / pairs
        delta_sg, r_sg = jax.lax.stop_gradient(delta_g), jax.lax.stop_gradient(r_b)
        rows_b = jnp.abs(sign_b)
        return batch.add_loss("bradley_terry", loss).add_metrics(
            rm_accuracy=((delta_sg > 0) * w_g).sum() / pairs,
            rm_margin=(delta_sg * w_g).sum() / pairs,
            rm_reward_mean=(r_sg * rows_b).sum() / jnp.maximum(rows_b.sum(), 1.0),
            rm_pairs=w_g.sum(),
        )

    return stateless(fn, needs=("values",))


def reward_model(**options) -> Algorithm:
    """Trains the policy model's value head (and its trunk) as a Bradley–Terry reward model on
    preference pairs (module docstring): loss ``"bradley_terry"``, its collector wrapper
    ``with_score_position`` (rows one column wider, so the scoring forward reaches the response's
    last token). Takes the pair nouns' optimization keywords (AdamW, lr 1e-4, …). The trained
    parameters (the phase's checkpoint) score RLHF rows through ``config.reward_model``
    (``polrl.collectors.with_reward_model``); the phase is not evaluated as a policy
    (``trains_policy``)."""
    return pair_algorithm("reward_model", bradley_terry_loss(), options)._replace(collector=with_score_position(),
                                                                                   trains_policy=False)

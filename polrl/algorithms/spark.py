"""SPARK: GRPO on the policy's samples plus a judge loss on the same step's recycled samples.

SPARK ("SPARK: Synergistic Policy And Reward Co-Evolving Framework", Liu et al. 2025, arXiv
2509.22624; reference code ``InternLM/Spark``) trains one model as the policy and as a generative
reward model of its own answers. Each step's groups are followed by judge rows built from them
(``polrl.collectors.judge_rows.with_judge_rows``: pointwise "is this answer right?", pairwise
"which of the two is right?" and reflection "revise this wrong answer", targets from the
verifier's outcomes and the labelled answer; ``source_b = EXPERT``):

    A_i    = GRPO advantage over the policy's rows of the group (judge rows left out)
    L_RL   = agg over the policy's tokens of max(−A ρ, −A clip(ρ, 1−ε, 1+ε))   (+ β KL)
    L_J    = agg over the judge rows' target tokens of −log π_θ(y_t | judge prompt, y_<t)
    L      = L_RL + λ L_J                                              (λ = ``judge_coef``)

The trained judge then scores answers with the model's own π_θ("y" | x ++ y ++ " ok?")
(``judge_rows.with_self_judge``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import advantages, objectives, ops
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.collectors.judge_rows import JUDGE_KIND, PAIRWISE, POINTWISE, REFLECTION, with_judge_rows
from polrl.core import EXPERT, Algorithm, Batch, Transform, chain, stateless


def drop_zero_variance_policy_groups() -> Transform:
    """DAPO's zero-variance filter over the policy's rows: masks every policy row of a group whose
    policy rows' rewards are all equal; rows with ``source_b == EXPERT`` neither enter the test
    nor are masked. Logs ``zero_variance_frac``, the fraction of the policy's rows masked."""

    def fn(batch: Batch) -> Batch:
        batch.require("reward_b", "group_b", "source_b", by="drop_zero_variance_policy_groups")
        n, expert_b = batch.batch_size, batch.source_b == EXPERT
        ids = jnp.where(expert_b, batch.group_b + n, batch.group_b)  # expert rows: groups of their own
        flat_b = ops.zero_variance_groups(batch.reward_b, ids, 2 * n) & ~expert_b
        policy_b = (~expert_b).astype(jnp.float32)
        batch = batch.replace(mask_bt=batch.mask_bt * (1.0 - flat_b.astype(jnp.float32))[:, None])
        return batch.add_metrics(zero_variance_frac=flat_b.sum() / jnp.maximum(policy_b.sum(), 1.0))

    return stateless(fn)


def judge_nll() -> Transform:
    """The judge rows' token cross-entropy, term ``"judge"``: −log π_θ(y_t) on every masked token.

    Logs, without gradient, ``judge_nll_pointwise`` / ``_pairwise`` / ``_reflection`` (the mean
    token NLL of each kind, ``aux["judge_kind_b"]``) and ``judge_verdict_prob``: the mean
    probability of the right verdict (the first target token) over the pointwise and pairwise rows.
    """

    def fn(batch: Batch) -> Batch:
        batch.require("logp_bt", by="judge_nll")
        batch.require_aux(JUDGE_KIND, by="judge_nll", provider="polrl.collectors.judge_rows.with_judge_rows")
        nll = -jax.lax.stop_gradient(batch.logp_bt)
        kind_b = batch.aux[JUDGE_KIND]
        of_kind = lambda k: batch.mask_bt * (kind_b == k)[:, None]
        verdict_b = batch.mask_bt[:, 0] * ((kind_b == POINTWISE) | (kind_b == PAIRWISE))
        metrics = dict(
            judge_nll_pointwise=ops.masked_mean(nll, of_kind(POINTWISE)),
            judge_nll_pairwise=ops.masked_mean(nll, of_kind(PAIRWISE)),
            judge_nll_reflection=ops.masked_mean(nll, of_kind(REFLECTION)),
            judge_verdict_prob=ops.masked_mean(jnp.exp(-nll[:, 0]), verdict_b),
        )
        return batch.add_term("judge", -batch.logp_bt).add_metrics(**metrics)

    return stateless(fn)


def plus_judge_loss(rl: Transform, judge: Transform, *, coef: float) -> Transform:
    """``rl`` on the policy's rows + ``coef`` · ``judge`` on the judge rows (``source_b == EXPERT``).

    Each part runs on the batch with ``mask_bt`` restricted to its own rows and must end with an
    aggregation, so each is normalized by its own rows; the parts' losses keep their names (the
    judge's scaled by ``coef``) and their metrics are merged.
    """

    def init(example=None):
        return rl.init(example), judge.init(example)

    def apply(batch: Batch, state, **extra):
        batch.require("source_b", by="plus_judge_loss")
        rl_state, judge_state = state
        judge_b = (batch.source_b == EXPERT).astype(batch.mask_bt.dtype)
        fresh = dict(terms={}, losses={}, metrics={})
        rl_out, rl_state = rl.apply(batch.replace(mask_bt=batch.mask_bt * (1.0 - judge_b)[:, None], **fresh), rl_state, **extra)
        judge_out, judge_state = judge.apply(batch.replace(mask_bt=batch.mask_bt * judge_b[:, None], **fresh), judge_state, **extra)
        if rl_out.terms or judge_out.terms:
            raise ValueError("plus_judge_loss: both parts must end with objectives.aggregate(mode)")
        for name, loss in [*rl_out.losses.items(), *((n, coef * v) for n, v in judge_out.losses.items())]:
            batch = batch.add_loss(name, loss)
        return batch.add_metrics(**rl_out.metrics, **judge_out.metrics), (rl_state, judge_state)

    return Transform(init, apply, rl.needs | judge.needs)


def spark(
    *,
    judge_coef: float = 1.0,
    pairwise_prob: float = 0.7,
    reflection: bool = True,
    filter_zero_variance: bool = False,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    scale: str = "std",
    kl_coef: float = 0.001,
    learning_rate: float = 5e-7,
    aggregation: str = "seq_mean_token_mean",
    judge_aggregation: str = "token_mean",
    max_len: int | None = None,
    **options,
) -> Algorithm:
    """SPARK (arXiv 2509.22624): GRPO + λ × cross-entropy on the step's own judge rows (the module's
    formula), collected by ``with_judge_rows(pairwise_prob, reflection)``.

    Defaults from the reference code's training script: k3 KL to the reference with β = 0.001,
    lr 5e-7, GRPO's std-normalised group advantage, ε = 0.2; judge rows as its data generator
    (pairwise with probability 0.7 in a group with a right and a wrong sample, a reflection row
    for each group with a wrong sample). ``filter_zero_variance=True`` masks the policy's rows of
    groups whose rewards are all equal (judge rows stay: a group all right or all wrong still
    gives a pointwise judge row). ``judge_aggregation`` reduces the judge term (token mean over the
    judge rows' target tokens).
    INFERRED: λ = ``judge_coef`` = 1 — the reference code trains the judge prompts by RLVR in a
    separate step of its own (same learning rate), which a one-token verdict's cross-entropy with
    weight 1 stands in for; the paper's abstract gives no weight.

    Other keywords: see ``pg_algorithm`` (k3, ``kl_in="loss"``, no entropy bonus, one update per
    batch), all but ``correction`` / ``correction_threshold``.
    """
    check_options("spark", options, without=("correction", "correction_threshold"))
    if judge_coef < 0:
        raise ValueError(f"spark: judge_coef={judge_coef} must be >= 0 (0 trains GRPO alone on the policy's rows)")
    prepare = [advantages.group_advantage(scale=scale, exclude_expert=True)]
    if filter_zero_variance:
        prepare.append(drop_zero_variance_policy_groups())
    judge = chain(judge_nll(), objectives.aggregate(judge_aggregation, max_len=max_len))
    return pg_algorithm(
        prepare, objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high),
        kl_coef=kl_coef, learning_rate=learning_rate, aggregation=aggregation, max_len=max_len,
        collector=with_judge_rows(pairwise_prob=pairwise_prob, reflection=reflection),
        wrap_objective=lambda rl: plus_judge_loss(rl, judge, coef=judge_coef), **options,
    )

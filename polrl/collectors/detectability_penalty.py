"""A detectability penalty on any collector's reward: r = r_verifier − λ · d(y), d a CT² detector's
score of the response under a frozen scorer LM.

"Counter Turing Test (CT^2): AI-Generated Text Detection is Not as Easy as You May Think --
Introducing AI Detectability Index" (arXiv 2310.05030) measures how detectable a generator's texts
are by their perplexity and burstiness under a scorer model (``polrl.detectability``). Training
against a detector turns such a statistic into a cost: each row's reward (the inner collector's:
the task's verifier, or a reward model wrapped inside) loses λ times the detector's score of the
response, d(y) = s · statistic(y) with the sign s of ``polrl.detectability.DETECTORS`` (high =
looks generated: e.g. the mean token log-likelihood under the scorer, GLTR's negated mean log-rank).

INFERRED: the scorer is the phase's reference by default (the frozen policy the phase starts from:
the SFT warm start), or any frozen model of ``config.models`` with the policy's tokenizer; the
penalty enters the scalar reward before the advantage (so GRPO's group normalization sees it); the
score carries no gradient (the reward is a number per row).
"""
from __future__ import annotations

import jax

from polrl import detectability
from polrl.collectors.context import Context, check_named_model, named_model, reads_reference
from polrl.core import Collector


def with_detectability_penalty(coef: float, *, model: str = "reference", detector: str = "log_likelihood",
                               separator_id: int = -1):
    """``(collector, context) -> collector`` whose ``reward_b`` is the inner reward minus
    ``coef`` · the detector ``detector``'s score of each response under the frozen model ``model``
    (module docstring). ``separator_id``: the token that ends a sentence, read by the
    "burstiness" detector only (-1: none, every response is one sentence).

    Metrics: ``detect_score_mean`` (the detector's mean score), ``verifier_reward_mean`` (the inner
    reward before the penalty) and ``reward_mean`` (after it)."""
    if detector not in detectability.DETECTORS:
        raise ValueError(f"detect_penalty.detector={detector!r}; use one of {sorted(detectability.DETECTORS)}")
    if not coef >= 0:
        raise ValueError(f"detect_penalty.coef={coef!r} must be >= 0 (the weight λ of the detector's score)")

    def wrap(inner: Collector, ctx: Context) -> Collector:
        if inner.host:
            raise ValueError("with_detectability_penalty: the inner collector runs on the host; penalize the rows of a "
                             "device collector (e.g. group_samples)")
        check_named_model(ctx, model, "detect_penalty.model", value_head=False)

        def collect(cstate, state, data, rng):
            batch, inner_state, metrics = inner.collect(cstate, state, data, rng)
            if batch.reward_b is None:
                raise ValueError("with_detectability_penalty: the inner collector's rows have no reward_b to penalize")
            graphdef, params = named_model(ctx, state, model, "with_detectability_penalty")
            tokens = detectability.token_statistics(graphdef, params, batch)
            stats = detectability.text_statistics(tokens, batch.response_bt, batch.mask_bt, separator_id)
            d_b = jax.lax.stop_gradient(detectability.detector_score(stats, detector)).astype(batch.reward_b.dtype)
            reward_b = batch.reward_b - coef * d_b
            out = {**metrics, "detect_score_mean": d_b.mean(), "verifier_reward_mean": batch.reward_b.mean(),
                   "reward_mean": reward_b.mean()}
            return batch.replace(reward_b=reward_b), inner_state, out

        return inner._replace(collect=collect, needs=inner.needs | reads_reference(model))

    return wrap

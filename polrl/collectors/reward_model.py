"""RLHF's reward: a frozen Bradley–Terry reward model scores the rows of any collector."""
from __future__ import annotations

import jax.numpy as jnp

from polrl.collectors.context import (Context, check_named_model, check_one_group_per_prompt, named_model,
                                      reads_reference, repeat_rows)
from polrl.collectors.score_position import sequence_scores
from polrl.core import Collector


def with_reward_model(model: str = "reward_model", *, hidden_score=None):
    """``(collector, context) -> collector`` whose ``reward_b`` is the reward model's score
    r(x, y) of each row (``score_position.sequence_scores``: the value head at the response's last
    token) instead of the inner collector's (the task's verifier), as in RLHF ("Training language
    models to follow instructions with human feedback", arXiv 2203.02155).

    The reward model is the run's frozen model named ``model`` (``Context.models``, with a value
    head: e.g. trained by the ``reward_model`` noun, loaded by ``polrl.train.auxiliary`` from the
    config's ``reward_model`` or ``models`` section); its parameters are
    ``PolicyState.models[model]``, passed to the compiled step as an argument, not checkpointed.

    Metrics: ``reward_mean`` / ``rm_reward_std`` (the reward model's, what the policy
    optimizes), ``verifier_reward_mean`` (the inner collector's reward of the same rows; the inner
    metrics, e.g. ``accuracy``, are kept) and, with ``hidden_score`` — a device reward
    ``(response_bt, mask_bt, answer_ba, answer_valid_ba) -> [B]`` the policy never sees —
    ``hidden_score_mean``, so a learned reward that rises while the hidden score does not (reward
    hacking) shows in the log. The inner collector must return one group per prompt.
    """

    def wrap(inner: Collector, ctx: Context) -> Collector:
        if inner.host:
            raise ValueError("with_reward_model: the inner collector runs on the host; score rows from a device "
                             "collector (e.g. group_samples)")
        check_named_model(ctx, model, "with_reward_model(model)", value_head=True)

        def collect(cstate, state, data, rng):
            batch, inner_state, metrics = inner.collect(cstate, state, data, rng)
            check_one_group_per_prompt(batch, data["prompt_bp"].shape[0], "with_reward_model")
            reward_b = sequence_scores(*named_model(ctx, state, model, "with_reward_model"), batch)
            out = {**metrics, "reward_mean": reward_b.mean(), "rm_reward_std": reward_b.std(),
                   "reward_finite": jnp.isfinite(reward_b).all() & metrics.get("reward_finite", True)}
            if batch.reward_b is not None:
                out["verifier_reward_mean"] = batch.reward_b.mean()
            if hidden_score is not None:
                answers = (repeat_rows(data[k], batch.group_size) for k in ("answer_ba", "answer_valid_ba"))
                out["hidden_score_mean"] = hidden_score(batch.response_bt, batch.mask_bt, *answers).mean()
            return batch.replace(reward_b=reward_b), inner_state, out

        return inner._replace(collect=collect, needs=inner.needs | reads_reference(model))

    return wrap

"""RLHF's reward: a frozen Bradley–Terry reward model scores the rows of any collector."""
from __future__ import annotations

import jax.numpy as jnp

from polrl.collectors.context import Context, check_one_group_per_prompt, repeat_rows
from polrl.collectors.score_position import sequence_scores
from polrl.core import Collector


def with_reward_model(graphdef, params, *, hidden_score=None):
    """``(collector, context) -> collector`` whose ``reward_b`` is the reward model's score
    r(x, y) of each row (``score_position.sequence_scores``: the value head at the response's last
    token) instead of the inner collector's (the task's verifier), as in RLHF ("Training language
    models to follow instructions with human feedback", arXiv 2203.02155).

    The reward model ``(graphdef, params)`` (a model with a value head, e.g. trained by the
    ``reward_model`` noun and read by ``polrl.train.reward_checkpoint``) is frozen: its parameters
    live in the collector state (``{"reward_params", "inner"}``), returned unchanged by every
    step, so they are laid out like parameters, checkpointed with the phase (a resumed run scores
    with the same reward model whatever happens to its file) and passed to the compiled step as
    an argument rather than baked into it as a constant.

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

        def init(prompts):
            return {"reward_params": params, "inner": inner.init(prompts)}

        def collect(cstate, state, data, rng):
            batch, inner_state, metrics = inner.collect(cstate["inner"], state, data, rng)
            check_one_group_per_prompt(batch, data["prompt_bp"].shape[0], "with_reward_model")
            reward_b = sequence_scores(graphdef, cstate["reward_params"], batch)
            out = {**metrics, "reward_mean": reward_b.mean(), "rm_reward_std": reward_b.std(),
                   "reward_finite": jnp.isfinite(reward_b).all() & metrics.get("reward_finite", True)}
            if batch.reward_b is not None:
                out["verifier_reward_mean"] = batch.reward_b.mean()
            if hidden_score is not None:
                answers = (repeat_rows(data[k], batch.group_size) for k in ("answer_ba", "answer_valid_ba"))
                out["hidden_score_mean"] = hidden_score(batch.response_bt, batch.mask_bt, *answers).mean()
            cstate = {"reward_params": cstate["reward_params"], "inner": inner_state}
            return batch.replace(reward_b=reward_b), cstate, out

        return inner._replace(init=init, collect=collect)

    return wrap

"""Expert rows in every group: the prompt's labelled answer beside the policy's samples."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl.collectors.context import Context, check_one_group_per_prompt, repeat_rows
from polrl.collectors.demonstrations import demonstration_batch
from polrl.collectors.group_samples import device_reward
from polrl.core import EXPERT, ON_POLICY, Collector


def labelled_rows(ctx: Context, data: dict, width: int, who: str):
    """``(response_bt, mask_bt, reward_b)`` of the prompts' labelled answers as response rows padded
    to ``width`` tokens, scored by the task's verifier; ``who`` names the caller in the error for
    answers longer than ``width``."""
    expert = demonstration_batch(data, pad_id=ctx.pad_id)
    pad = width - expert.response_bt.shape[1]
    if pad < 0:
        raise ValueError(f"{who}: labelled answers ({expert.response_bt.shape[1]} tokens) are longer than the sampled "
                         f"responses ({width}); raise rollout.max_new_tokens")
    response = jnp.pad(expert.response_bt, ((0, 0), (0, pad)), constant_values=ctx.pad_id)
    mask = jnp.pad(expert.mask_bt, ((0, 0), (0, pad)))
    return response, mask, device_reward(ctx, response, mask, data["answer_ba"], data["answer_valid_ba"])


def with_expert_rows(expert_per_group: int = 1):
    """``(collector, context) -> collector``: k = ``expert_per_group`` copies of the prompt's
    labelled answer appended to every group of the inner collector's rows (groups of G become
    groups of G + k, the expert rows last), as in RL-PLUS's and CHORD's mixed groups.

    Expert rows have ``source_b = EXPERT``, ``behavior_logp_bt = 0`` (the expert's policy is
    unknown), the step's version, and the task's device reward of the label; the inner rows are
    unchanged (``source_b = ON_POLICY`` where they had none). Groups keep a static size, so
    minibatches still hold whole groups.
    """
    k = expert_per_group
    if k < 1:
        raise ValueError(f"with_expert_rows: expert_per_group={k} must be >= 1")

    def wrap(inner: Collector, ctx: Context) -> Collector:
        if ctx.task.device_reward is None:
            raise ValueError(f"with_expert_rows: task {ctx.task.name!r} has only a host reward; expert rows "
                             f"need a task with a device reward")

        def collect(cstate, state, data, rng):
            batch, cstate, metrics = inner.collect(cstate, state, data, rng)
            p, g = data["prompt_bp"].shape[0], batch.group_size
            check_one_group_per_prompt(batch, p, "with_expert_rows")
            exp_resp, exp_mask, exp_reward = labelled_rows(ctx, data, batch.response_bt.shape[1], "with_expert_rows")

            def append(policy_x, expert_x):
                """[P·G, …] policy rows and [P, …] expert rows → [P·(G+k), …], experts last in each group."""
                policy_x = policy_x.reshape(p, g, *policy_x.shape[1:])
                expert_x = jnp.broadcast_to(expert_x[:, None], (p, k, *expert_x.shape[1:]))
                return jnp.concatenate([policy_x, expert_x.astype(policy_x.dtype)], axis=1).reshape(-1, *policy_x.shape[2:])

            source = batch.source_b if batch.source_b is not None else jnp.full((p * g,), ON_POLICY, jnp.int32)
            version = batch.version_b if batch.version_b is not None else jnp.full((p * g,), state.step, jnp.int32)
            mixed = batch.replace(
                prompt_bp=append(batch.prompt_bp, data["prompt_bp"]),
                prompt_valid_bp=append(batch.prompt_valid_bp, data["prompt_valid_bp"]),
                response_bt=append(batch.response_bt, exp_resp),
                mask_bt=append(batch.mask_bt, exp_mask),
                reward_b=append(batch.reward_b, exp_reward),
                group_b=jnp.arange(p * (g + k), dtype=jnp.int32) // (g + k),
                behavior_logp_bt=append(batch.behavior_logp_bt, jnp.zeros_like(exp_mask)),
                source_b=append(source, jnp.full((p,), EXPERT, jnp.int32)),
                version_b=append(version, jnp.full((p,), state.step, jnp.int32)),
                aux={name: append(x, jnp.zeros((p,) + x.shape[1:], x.dtype)) for name, x in batch.aux.items()},
                group_size=g + k,
            )
            return mixed, cstate, metrics

        def example(prompts):
            inner_ex = inner.example(prompts)
            g = inner_ex.group_size
            grow = lambda x: jax.ShapeDtypeStruct((prompts * (g + k),) + x.shape[1:], x.dtype)
            out = jax.tree.map(grow, inner_ex)
            return out.replace(source_b=jax.ShapeDtypeStruct((prompts * (g + k),), jnp.int32), group_size=g + k)

        return inner._replace(collect=collect, example=example)

    return wrap

"""The labelled answer itself in the groups the policy cannot solve: GHPO's label control.

GHPO ("GHPO: Adaptive Guidance for Stable and Efficient LLM RL", arXiv 2507.10628) gives the prompts
none of whose G samples is right a growing prefix of the labelled solution as a hint
(``polrl.collectors.hints``). Its gain over GRPO has two possible sources: the hint's mechanism
(the policy continues a partial solution on-policy, and its own continuations are trained) and
plain access to the labels on the hardest prompts. This wrapper isolates the second: the same
groups, selected by the same test (no row with a positive reward, ``hints.unsolved_groups``),
get the labelled answer as a whole response in place of their first k samples, as the expert rows
of LUFFY / RL-PLUS-style mixed groups do, and nothing else changes. A run with it uses exactly the
labels a GHPO run can read, on exactly the prompts where GHPO would read them.

Injected rows: the labelled answer padded to the sampled width, scored by the task's verifier;
``source_b = EXPERT``, ``behavior_logp_bt = 0`` (the labeller's policy is unknown, so the
importance ratio of a token is π_θ of it), ``version_b`` the step, zeros in ``aux``. Solved groups
are left bit-identical; groups keep their size, so the GRPO group statistics see k label rows and
G − k samples. The inner collector's metrics (its ``accuracy`` is the policy's own, over every
sample, before injection) are kept; ``label/injected_frac`` is the fraction of groups that
received label rows.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl.collectors.context import Context, check_one_group_per_prompt, substitute_rows
from polrl.collectors.expert_rows import labelled_rows
from polrl.collectors.group_samples import group_samples
from polrl.collectors.hints import unsolved_groups
from polrl.collectors.multi_guidance import own_sources
from polrl.core import EXPERT, Collector


def with_unsolved_labels(label_rows: int = 1):
    """``(collector, context) -> collector``: in every group with no positive reward, the first
    k = ``label_rows`` rows replaced by the prompt's labelled answer (module docstring). The inner
    collector runs on the device and returns one group of G ≥ k rows per prompt."""
    k = label_rows
    if k < 1:
        raise ValueError(f"with_unsolved_labels: label_rows={k} must be >= 1 (rows of an unsolved group that get the "
                         f"labelled answer)")

    def wrap(inner: Collector, ctx: Context) -> Collector:
        if inner.host:
            raise ValueError("with_unsolved_labels: the inner collector runs on the host; labels are injected inside the "
                             "compiled step: wrap a device collector (e.g. group_samples)")
        if ctx.task.device_reward is None:
            raise ValueError(f"with_unsolved_labels: task {ctx.task.name!r} has only a host reward; label rows need a "
                             f"task with a device reward")

        def collect(cstate, state, data, rng):
            batch, cstate, metrics = inner.collect(cstate, state, data, rng)
            p, g = data["prompt_bp"].shape[0], batch.group_size
            check_one_group_per_prompt(batch, p, "with_unsolved_labels")
            if k > g:
                raise ValueError(f"with_unsolved_labels: label_rows={k} is more than the group size {g}; lower "
                                 f"label_rows or raise rollout.group_size")
            response, mask, reward = labelled_rows(ctx, data, batch.response_bt.shape[1], "with_unsolved_labels")
            unsolved_p = unsolved_groups(batch.reward_b, g)
            take_b = (unsolved_p[:, None] & (jnp.arange(g) < k)[None, :]).reshape(-1)
            per_row = lambda x: jnp.repeat(x, g, axis=0)
            batch = substitute_rows(own_sources(batch, state.step), take_b, response_bt=per_row(response),
                                    mask_bt=per_row(mask), behavior_logp_bt=jnp.zeros(batch.mask_bt.shape, jnp.float32),
                                    reward_b=per_row(reward), source=EXPERT, version=state.step)
            return batch, cstate, {**metrics, "label/injected_frac": unsolved_p.astype(jnp.float32).mean()}

        def example(prompts):
            ex = inner.example(prompts)
            per_row = lambda dtype: jax.ShapeDtypeStruct((ex.batch_size,), dtype)
            return ex.replace(source_b=per_row(jnp.int32), version_b=per_row(jnp.int32))

        return inner._replace(collect=collect, example=example)

    return wrap


def label_guided_groups(ctx: Context, *, label_rows: int = 1, group_size: int | None = None,
                        slots: int = 0) -> Collector:
    """GHPO's label control as a phase's collector (``config.collector = "label_guided_groups"``):
    ``group_samples`` (``group_size``, ``slots``) wrapped by ``with_unsolved_labels(label_rows)``."""
    return with_unsolved_labels(label_rows)(group_samples(ctx, group_size=group_size, slots=slots), ctx)

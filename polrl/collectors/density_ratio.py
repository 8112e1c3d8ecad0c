"""CDR's reward: the log density ratio of a strong over a weak policy scores the rows of a collector.

CDR ("CDR: Customizable Density Ratios of Strong-over-weak LLMs for Preference Annotation",
Xu et al. 2024, arXiv 2411.02481) labels preference data without a verifier or a trained reward
model: the reward of a response y to a prompt x is

    r(x, y) = log π_strong(y | c ++ x) − log π_weak(y | x),
    log π(y | x) = Σ_{t < L} log π(y_t | x, y_<t)          (L = the response's masked tokens),

the log density ratio between a better aligned ("strong") and a less aligned ("weak") model —
DPO's implicit reward β log π_θ/π_ref with the reference and the trained model generalized to any
strong-over-weak pair, β = 1. The paper's "strong-over-weak hypothesis": the larger the alignment
gap between the two, the better the reward ranks responses. Its customization ``c`` is an
instruction (domain criteria, exemplars) that conditions the strong model, chosen per prompt by a
domain router.

The paper measures label quality as the accuracy of the reward's ranking of human-labelled pairs
(RewardBench: the fraction of pairs with r(chosen) > r(rejected)), then annotates on-policy samples
— the best and the worst of each prompt's samples by r as chosen / rejected — and preference-tunes
on them (SimPO on Llama-3-8B-Instruct's own samples, judged by AlpacaEval 2, Arena-Hard and
MT-Bench). ``with_density_ratio`` logs both sides against the task's verifier (``pair_agreement``):
of the best/worst pairs r selects (``preference_pairs.best_and_worst_rows``), the fraction whose
order the verifier agrees with, among pairs the verifier does not tie — the quality of the labels
the run trains on — and, RewardBench's measure, of the verifier's own best/worst pairs (a right
and a wrong answer), the fraction r orders the same way.

INFERRED: the log-probabilities are sums over response tokens, not length-normalised (the
paper's ratio of sequence densities, as DPO's implicit reward), at temperature 1 (the models'
densities, whatever the rollout's sampling temperature), with no clipping of r. The instruction
conditions the strong model only; the weak model scores the bare prompt. The router (one
instruction per query domain) is not carried: a task here is one domain, so one ``strong_prefix``
serves every prompt. Chosen / rejected = arg-max / arg-min of r over the prompt's G samples (first
index on ties, as ``best_and_worst``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl.collectors.context import Context, check_named_model, check_one_group_per_prompt, named_model, reads_reference
from polrl.collectors.preference_pairs import best_and_worst_rows
from polrl.core import Batch, Collector
from polrl.train.steps import score


def with_prefix(batch: Batch, prefix) -> Batch:
    """``batch`` with the tokens ``prefix`` (int [K]) before every row's prompt. Rows stay
    left-padded in between (prefix, padding, prompt): positions count only valid tokens, so the
    model reads prefix ++ prompt exactly."""
    prefix = jnp.asarray(prefix, batch.prompt_bp.dtype)
    rows = batch.prompt_bp.shape[0]
    return batch.replace(
        prompt_bp=jnp.concatenate([jnp.broadcast_to(prefix, (rows, prefix.shape[0])), batch.prompt_bp], axis=1),
        prompt_valid_bp=jnp.concatenate([jnp.ones((rows, prefix.shape[0]), bool), batch.prompt_valid_bp], axis=1))


def sequence_logp(graphdef, params, batch: Batch) -> jax.Array:
    """[B]: log π(y | x) = Σ_t mask_t log π(y_t | x, y_<t) of every row, in the model's dtype,
    from one scoring forward at temperature 1."""
    logp_bt = score(graphdef, params, batch, temperature=1.0)["logp_bt"]
    return (logp_bt * batch.mask_bt.astype(logp_bt.dtype)).sum(axis=1)


def density_ratio_rewards(strong, weak, batch: Batch, strong_prefix=None) -> jax.Array:
    """float32 [B]: r(x, y) = log π_strong(y | c ++ x) − log π_weak(y | x) (the module's formula),
    ``strong`` / ``weak`` = ``(graphdef, params)``, ``c`` = ``strong_prefix`` (int [K], or None for
    no instruction)."""
    strong_batch = batch if strong_prefix is None else with_prefix(batch, strong_prefix)
    ratio = sequence_logp(*strong, strong_batch) - sequence_logp(*weak, batch)
    return ratio.astype(jnp.float32)


def pair_agreement(select_b, judge_b, group_size: int) -> tuple[jax.Array, jax.Array]:
    """``(agreement, untied)`` of the pairs ``select_b`` selects in each group of ``group_size``
    rows (best = first arg-max, worst = first arg-min, ``best_and_worst_rows``), judged by
    ``judge_b`` (j): untied = the fraction of groups whose pair j does not tie, j(best) ≠ j(worst);
    agreement = the fraction of those with j(best) > j(worst) (0 when every pair is tied)."""
    rows = best_and_worst_rows(select_b, group_size).reshape(-1, 2)
    j_best, j_worst = judge_b[rows[:, 0]], judge_b[rows[:, 1]]
    untied = (j_best != j_worst).astype(jnp.float32)
    agreed = (j_best > j_worst).astype(jnp.float32)
    return agreed.sum() / jnp.maximum(untied.sum(), 1.0), untied.mean()


def with_density_ratio(strong: str = "cdr_strong", weak: str = "cdr_weak", *, strong_prefix=None):
    """``(collector, context) -> collector`` whose ``reward_b`` is CDR's r(x, y) of each row
    (``density_ratio_rewards``) instead of the inner collector's (the task's verifier).

    ``strong`` and ``weak`` name two frozen policies of the run (``Context.models``, no value
    head: e.g. a run's policy after GRPO and its SFT warm start, loaded by
    ``polrl.train.auxiliary`` from the config's ``density_ratio`` section), or "reference" (the
    phase's reference: no second copy of the warm start); ``strong_prefix`` (token ids, or None)
    is the instruction conditioning the strong model.

    Metrics: ``reward_mean`` / ``density_ratio_std`` (r's, what the labels come from),
    ``verifier_reward_mean`` (the inner collector's reward of the same rows; the inner metrics,
    e.g. ``accuracy``, are kept) and, for groups of two or more rows (``pair_agreement``):
    ``pair_agreement`` / ``pair_untied`` — how often the verifier agrees with the best/worst pair
    r selects in each group, among the pairs it does not tie (the fraction of groups) — and
    ``verifier_pair_accuracy`` / ``verifier_pairs`` — how often r orders the verifier's best/worst
    pair the same way, among the groups where both distinguish the pair (a right and a wrong
    answer). Over many steps weight a step's value by its fraction. The inner collector must
    return one group per prompt.
    """
    prefix = None if strong_prefix is None else jnp.asarray(strong_prefix, jnp.int32).reshape(-1)

    def wrap(inner: Collector, ctx: Context) -> Collector:
        if inner.host:
            raise ValueError("with_density_ratio: the inner collector runs on the host; score rows from a device "
                             "collector (e.g. group_samples)")

        check_named_model(ctx, strong, "with_density_ratio(strong)", value_head=False)
        check_named_model(ctx, weak, "with_density_ratio(weak)", value_head=False)

        def collect(cstate, state, data, rng):
            batch, inner_state, metrics = inner.collect(cstate, state, data, rng)
            check_one_group_per_prompt(batch, data["prompt_bp"].shape[0], "with_density_ratio")
            reward_b = density_ratio_rewards(named_model(ctx, state, strong, "with_density_ratio"),
                                             named_model(ctx, state, weak, "with_density_ratio"), batch, prefix)
            out = {**metrics, "reward_mean": reward_b.mean(), "density_ratio_std": reward_b.std(),
                   "reward_finite": jnp.isfinite(reward_b).all() & metrics.get("reward_finite", True)}
            if batch.reward_b is not None:
                out["verifier_reward_mean"] = batch.reward_b.mean()
                if batch.group_size > 1:
                    g = batch.group_size
                    out["pair_agreement"], out["pair_untied"] = pair_agreement(reward_b, batch.reward_b, g)
                    out["verifier_pair_accuracy"], out["verifier_pairs"] = pair_agreement(batch.reward_b, reward_b, g)
            return batch.replace(reward_b=reward_b), inner_state, out

        return inner._replace(collect=collect, needs=inner.needs | reads_reference(strong, weak))

    return wrap

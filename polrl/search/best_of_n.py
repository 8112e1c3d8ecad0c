"""Best-of-N and weighted best-of-N with a process reward model, and the final-answer rules
every search ends with.

Best-of-N ("Scaling LLM Test-Time Compute Optimally can be More Effective than Scaling Model
Parameters", Snell et al., arXiv 2408.03314, §5.1; "Can 1B LLM Surpass 405B LLM? Rethinking
Compute-Optimal Test-Time Scaling", Liu et al., arXiv 2502.06703, §2.2 and §4.1): draw N
complete responses y_1 … y_N from the policy; the PRM scores every step of each, p_{i,h} after
step h of y_i (``polrl.search.scoring``); each response gets the aggregated score
v_i = agg(p_{i,1} … p_{i,H_i}) ("last" p_{i,H_i}, the default; "min", "mean" or "prod";
``polrl.search.beam.aggregate``, whose docstring says which paper uses which). Two rules pick
the answer:

    best-of-N (PRM-Max)             i* = argmax_i v_i
    weighted best-of-N (PRM-Vote)   a* = argmax_a Σ_{i : ans(y_i) = a} v_i

(ties: the lowest index). ``ans`` is the response's final answer as a token span compared on
device (``marked_answer``: the tokens after the last marker, e.g. the chain task's "#";
``response_answer``: the whole response); a response with no answer takes no part in the vote.

The N samples come from ``polrl.search.beam.search`` with N subtrees of one slot: each sample is
decoded step by step (a step ends at the task's separator or EOS) and the PRM scores it after
every step from its own cache, which costs what scoring the finished response once would (the
same tokens, each attending the same keys); the samples are those of
``polrl.rollout.sample(…, num_samples=N)`` with the same rng.

INFERRED (the papers leave them open): a candidate without an answer (no marker, or no EOS after
it) is left out of the vote; when no candidate has an answer, weighted best-of-N falls back to
best-of-N; ties go to the lowest index.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from polrl.rollout import SamplingConfig
from polrl.search.beam import SearchOutput, search
from polrl.tasks.chain import marked_tail

AnswerFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def best_of_n(policy, prm, prompt_bp: jax.Array, prompt_valid_bp: jax.Array, rng: jax.Array, config: SamplingConfig,
              *, n: int, sep_id: int, aggregate: str = "last") -> SearchOutput:
    """N = ``n`` complete samples per prompt, each scored by the PRM after every step; the pool
    of the returned ``SearchOutput`` holds all N (ordered by aggregated score). Pure and jittable."""
    t = config.max_new_tokens
    return search(policy, prm, prompt_bp, prompt_valid_bp, rng, config, n=n, subtrees=n, keep=1, sep_id=sep_id,
                  step_len=t, max_steps=t, expand="sample", aggregate=aggregate)


def response_answer(tokens_bt: jax.Array, mask_bt: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The whole response as the answer: (span_bt, ok_b), span = the tokens where masked, −1 elsewhere."""
    masked = mask_bt > 0
    return jnp.where(masked, tokens_bt, -1), masked.any(axis=1)


def marked_answer(marker_id: int, eos_id: int, width: int) -> AnswerFn:
    """The answer after the last ``marker_id`` before the first EOS (the chain task's final answer,
    ``polrl.tasks.chain.final_answer_reward``'s span), ``width`` tokens at most: a function
    (tokens_bt, mask_bt) -> (span_bw, ok_b), −1 past the answer; ok = an EOS with a marker before it."""

    def answer(tokens_bt, mask_bt):
        span, valid, ok = marked_tail(tokens_bt, mask_bt > 0, marker_id, eos_id, width)
        return jnp.where(valid, span, -1), ok

    return answer


def select_best(value_bn: jax.Array) -> jax.Array:
    """int32 [B]: the candidate with the highest aggregated score (the first on ties)."""
    return jnp.argmax(value_bn, axis=1).astype(jnp.int32)


def select_weighted(value_bn: jax.Array, span_bnw: jax.Array, ok_bn: jax.Array) -> jax.Array:
    """int32 [B]: a candidate whose answer has the largest summed score, W_i = Σ_j v_j·[ans_j = ans_i]
    over the candidates with an answer (and a finite score); the first such candidate on ties;
    ``select_best`` where no candidate has an answer."""
    ok = ok_bn & jnp.isfinite(value_bn)
    same = jnp.all(span_bnw[:, :, None, :] == span_bnw[:, None, :, :], axis=-1) & ok[:, :, None] & ok[:, None, :]
    vote = jnp.where(ok, jnp.sum(jnp.where(same, value_bn[:, None, :], 0.0), axis=-1), -jnp.inf)
    return jnp.where(ok.any(axis=1), jnp.argmax(vote, axis=1), select_best(value_bn)).astype(jnp.int32)


def choose(out: SearchOutput, rule: str, answer: AnswerFn) -> tuple[jax.Array, jax.Array]:
    """The chosen candidate of each prompt under ``rule`` ("best" or "weighted"): (tokens_bt, mask_bt)."""
    b, n, t = out.tokens_bnt.shape
    if rule == "best":
        index = select_best(out.value_bn)
    elif rule == "weighted":
        span, ok = answer(out.tokens_bnt.reshape(b * n, t), out.mask_bnt.reshape(b * n, t))
        index = select_weighted(out.value_bn, span.reshape(b, n, -1), ok.reshape(b, n))
    else:
        raise ValueError(f"choose: rule={rule!r}; use 'best' or 'weighted'")
    pick = lambda x: jnp.take_along_axis(x, index[:, None, None], axis=1)[:, 0]
    return pick(out.tokens_bnt), pick(out.mask_bnt)

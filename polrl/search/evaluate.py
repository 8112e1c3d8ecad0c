"""Held-out accuracy of a test-time search method at a budget, per difficulty, with its FLOPs.

``evaluate(method, budget, policy, prm, task, examples, rng, sampling=…)`` runs one method
over a task's examples, in jitted chunks of ``batch_size`` prompts (one compilation per call:
the last chunk is padded), and scores each prompt's chosen response with the task's reward
(device reward when the task has one, else the host reward; reward ≥ 1 is correct, as in
``polrl.evaluation``). Methods, with budget N and beam width M (``beam_width``):

    "best_of_n"           N samples, the highest aggregated PRM score (``best_of_n.select_best``)
    "weighted_best_of_n"  N samples, the answer with the largest summed score (``select_weighted``)
    "beam"                beam search: 1 subtree of N beams keeping N/M (``beam.search``)
    "dvts"                DVTS: N/M subtrees of M beams keeping 1 each

Beam search and DVTS end with weighted best-of-N over their N final candidates (Snell et al.,
arXiv 2408.03314, §5.2; Liu et al., arXiv 2502.06703, report PRM-Max and PRM-Vote for every
method); ``rule`` overrides the final rule ("best" or "weighted"). A step ends at the task's
``step_separator`` (one token).

Difficulty of an example: ``difficulty(example)`` when given, else the number of steps of its
labelled answer (separators + 1; the chain task: its operands − 1). The final answer compared by
weighted best-of-N: the tokens after the task's ``answer_marker`` (the chain task's "#"), the
whole response for a task without one, or ``answer`` (a ``best_of_n.AnswerFn``).

FLOPs per prompt: the policy's and the PRM's forward FLOPs counted by the search
(``beam.search_flops``: prompt prefill once per prompt and model, every generated step once
per slot that decoded it, forks free).

INFERRED: ``step_len`` defaults to the response budget (a step ends
only at the separator or EOS).
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from polrl.rollout import SamplingConfig
from polrl.search.beam import search, search_flops
from polrl.search.best_of_n import AnswerFn, best_of_n, choose, marked_answer, response_answer
from polrl.search.scoring import separator_id
from polrl.tasks.data import task_batch
from polrl.tasks.registry import Task

METHODS = ("best_of_n", "weighted_best_of_n", "beam", "dvts")
RULES = {"best_of_n": "best", "weighted_best_of_n": "weighted", "beam": "weighted", "dvts": "weighted"}


def label_steps(task: Task) -> Callable[[dict], int]:
    """The default difficulty: steps of the labelled answer, ``answer.count(separator) + 1``."""
    return lambda example: example["answer"].count(task.step_separator) + 1


def search_program(method: str, budget: int, policy_graphdef, prm_graphdef, sampling: SamplingConfig, sep_id: int, *,
                   beam_width: int = 4, step_len: int | None = None, max_steps: int = 40, aggregate: str = "last",
                   rule: str | None = None, answer: AnswerFn = response_answer, device_reward=None):
    """The jitted program of one method: ``(policy_params, prm_params, prompt_bp, prompt_valid_bp,
    answer_ba, answer_valid_ba, rng) -> dict`` with the chosen ``tokens_bt`` / ``mask_bt``, the
    search's FLOP counts (``policy_tokens_b`` …, see ``beam.SearchOutput``) and, with
    ``device_reward``, ``reward_b``."""
    if method not in METHODS:
        raise ValueError(f"search: method={method!r}; use one of {METHODS}")
    if method in ("beam", "dvts") and (beam_width < 1 or budget % beam_width):
        raise ValueError(f"search: beam_width={beam_width!r} must divide budget={budget} for {method}; "
                         f"pick a divisor of the budget")
    rule = RULES[method] if rule is None else rule
    if rule not in ("best", "weighted"):
        raise ValueError(f"search: rule={rule!r}; use 'best' or 'weighted'")
    kept = {"beam": (1, budget // beam_width), "dvts": (budget // beam_width, 1)}

    def run(policy_params, prm_params, prompt_bp, prompt_valid_bp, answer_ba, answer_valid_ba, rng):
        policy, prm = nnx.merge(policy_graphdef, policy_params), nnx.merge(prm_graphdef, prm_params)
        if method in kept:
            subtrees, keep = kept[method]
            out = search(policy, prm, prompt_bp, prompt_valid_bp, rng, sampling, n=budget, subtrees=subtrees, keep=keep,
                         sep_id=sep_id, step_len=step_len, max_steps=max_steps, aggregate=aggregate)
        else:
            out = best_of_n(policy, prm, prompt_bp, prompt_valid_bp, rng, sampling, n=budget, sep_id=sep_id,
                            aggregate=aggregate)
        tokens, mask = choose(out, rule, answer)
        result = {"tokens_bt": tokens, "mask_bt": mask, "policy_tokens_b": out.policy_tokens_b,
                  "policy_keys_b": out.policy_keys_b, "prm_tokens_b": out.prm_tokens_b, "prm_keys_b": out.prm_keys_b}
        if device_reward is not None:
            result["reward_b"] = device_reward(tokens, mask, answer_ba, answer_valid_ba)
        return result

    return jax.jit(run)


def evaluate(method: str, budget: int, policy: tuple, prm: tuple, task: Task, examples: Sequence[dict], rng: jax.Array,
             *, sampling: SamplingConfig, beam_width: int = 4, step_len: int | None = None, max_steps: int = 40,
             aggregate: str = "last", rule: str | None = None, batch_size: int = 8,
             difficulty: Callable[[dict], int] | None = None, answer: AnswerFn | None = None) -> dict:
    """Accuracy, accuracy per difficulty and FLOPs per prompt of ``method`` at ``budget`` N.

    ``policy`` / ``prm``: ``(graphdef, params)`` of the policy and of the PRM (a model with a
    value head); ``sampling.max_new_tokens`` is the response budget T. Chunk k of the examples
    draws with ``fold_in(rng, k)``. Returns python/numpy values:
    ``accuracy``, ``accuracy_by_difficulty`` {d: fraction correct}, ``prompts_by_difficulty``
    {d: count}, ``flops_per_prompt`` (mean), ``flops_by_difficulty`` {d: mean}, per prompt
    ``flops_b``, ``policy_flops_b``, ``prm_flops_b``, ``correct_b``, ``difficulty_b``, and the
    chosen ``completions`` (decoded text).
    """
    if batch_size < 1 or not examples:
        raise ValueError(f"search: batch_size={batch_size!r} and {len(examples)} examples; pass batch_size >= 1 "
                         f"and at least one example")
    sep_id = separator_id(task, "search")
    difficulty = label_steps(task) if difficulty is None else difficulty
    if answer is None:
        answer = (response_answer if task.answer_marker is None else
                  marked_answer(task.tokenizer.encode(task.answer_marker)[0], task.tokenizer.eos_id, sampling.max_new_tokens))
    run = search_program(method, budget, policy[0], prm[0], sampling, sep_id, beam_width=beam_width, step_len=step_len,
                         max_steps=max_steps, aggregate=aggregate, rule=rule, answer=answer,
                         device_reward=task.device_reward)
    policy_config, prm_config = nnx.merge(*policy).config, nnx.merge(*prm).config
    correct, flops, completions, decoded = [], {"policy": [], "prm": [], "total": []}, [], []
    for k, start in enumerate(range(0, len(examples), batch_size)):
        chunk = [examples[i] for i in range(start, min(start + batch_size, len(examples)))]
        real = len(chunk)
        data = task_batch(task, chunk + chunk[-1:] * (batch_size - real))
        out = run(policy[1], prm[1], *(jnp.asarray(data[key]) for key in
                                       ("prompt_bp", "prompt_valid_bp", "answer_ba", "answer_valid_ba")),
                  jax.random.fold_in(rng, k))
        texts = task.tokenizer.decode_batch(np.asarray(out["tokens_bt"])[:real])
        if "reward_b" in out:
            reward = np.asarray(out["reward_b"])[:real]
        else:
            reward = np.asarray(task.host_reward(texts, data["examples"][:real]))
        correct.append(reward >= 1.0)
        completions += texts
        decoded += data["examples"][:real]
        counts = {key: np.asarray(out[key])[:real] for key in ("policy_tokens_b", "policy_keys_b", "prm_tokens_b",
                                                                "prm_keys_b")}
        for name, value in search_flops(policy_config, prm_config, **counts).items():
            flops[name].append(value)
    correct_b = np.concatenate(correct)
    flops = {name: np.concatenate(value) for name, value in flops.items()}
    difficulty_b = np.array([difficulty(e) for e in decoded], np.int64)
    bins = sorted(set(difficulty_b.tolist()))
    return {
        "method": method, "budget": budget,
        "accuracy": float(correct_b.mean()),
        "accuracy_by_difficulty": {d: float(correct_b[difficulty_b == d].mean()) for d in bins},
        "prompts_by_difficulty": {d: int((difficulty_b == d).sum()) for d in bins},
        "flops_per_prompt": float(flops["total"].mean()),
        "flops_by_difficulty": {d: float(flops["total"][difficulty_b == d].mean()) for d in bins},
        "flops_b": flops["total"], "policy_flops_b": flops["policy"], "prm_flops_b": flops["prm"],
        "correct_b": correct_b, "difficulty_b": difficulty_b, "completions": completions,
    }

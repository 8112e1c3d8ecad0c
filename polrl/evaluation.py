"""Held-out evaluation beyond greedy exact match: n sampled completions per prompt.

Greedy accuracy measures the mode of the policy; RL on verifiable rewards also moves (and
often narrows) the distribution around it, which the greedy answer does not show. With
``eval.samples = n`` the trainer also draws n completions per held-out prompt from the policy at
the training sampling options (temperature, top-k/p, min-p), without any guidance (the bare
prompt: no expert rows, no hints), scores them with the task's reward (reward ≥ 1 is correct,
as for the greedy answer) and logs, averaged over the held-out prompts:

* ``eval/pass@k`` for each k of ``eval.pass_k`` — the probability that at least one of k
  completions is correct, by the unbiased estimator of Chen et al. 2021 ("Evaluating Large
  Language Models Trained on Code", arXiv 2107.03374) from n ≥ k samples of which c are
  correct: ``pass@k = E_prompts[1 − C(n−c, k) / C(n, k)]`` (``pass_at_k``). pass@1 equals the
  sampled accuracy; pass@n is the fraction of prompts solved at least once;
* ``eval/sampled_accuracy`` — the mean correctness of the samples;
* ``eval/entropy`` — the mean per-token entropy H(π_T(·|context)) of the sampling
  distribution along the sampled responses, over all their tokens (EOS included), from a
  scoring forward of the responses (the untruncated ``log_softmax(logits / T)``, the
  distribution the sampler's and the trainer's log-probs use);
* ``eval/distinct_answers`` — diversity: per prompt, the number of distinct completions among
  its n samples divided by n (a completion is the response's token sequence up to and
  including EOS), averaged over prompts; in [1/n, 1], 1/n when every sample is the same
  (``distinct_fraction``). For tasks whose completion is the answer (arithmetic, countdown) it
  counts distinct answers; for tasks with reasoning it counts distinct reasoning paths;
* ``eval/response_length`` — the mean number of tokens of the sampled responses (EOS
  included), next to ``eval/greedy_length`` for the greedy ones.

The sampler, the scoring forward and (for tasks with a device reward) the reward run as one
jitted call per chunk of ``eval.batch_size`` prompts (compiled once: every chunk is padded to
that size); the draws use a key fixed by the run's seed and the chunk, so successive evaluations
compare checkpoints on common random numbers and a resumed run logs what an uninterrupted
one does.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from polrl.core import Batch
from polrl.rollout import SamplingConfig, sample
from polrl.train.steps import score


def pass_at_k(n: int, num_correct, k: int) -> np.ndarray:
    """Per-prompt unbiased pass@k, ``1 − C(n−c, k) / C(n, k)``, for c = ``num_correct`` (array).

    Computed in the product form ``1 − Π_{i=n−c+1}^{n} (1 − k/i)`` (the ratio of binomials
    telescopes: C(n−c, k)/C(n, k) = Π_{i=0}^{c−1} (n−k−i)/(n−i)), so no factorial is formed and
    no cancellation of large numbers occurs; it is exactly 1 when n − c < k (every k-subset holds
    a correct sample). float64.
    """
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n, got k={k}, n={n}")
    c = np.asarray(num_correct, np.int64)
    if np.any((c < 0) | (c > n)):
        raise ValueError(f"pass@k: correct counts must be in [0, n={n}], got {c}")
    out = np.empty(c.shape, np.float64)
    for index, ci in np.ndenumerate(c):
        if n - ci < k:
            out[index] = 1.0
        else:
            out[index] = 1.0 - float(np.prod(1.0 - k / np.arange(n - ci + 1, n + 1, dtype=np.float64)))
    return out


def distinct_fraction(response_pnt, mask_pnt) -> np.ndarray:
    """Per prompt: distinct completions among its n samples ÷ n, ``[P]`` float64 in [1/n, 1].

    ``response_pnt`` / ``mask_pnt``: ``[P, n, T]`` tokens and their mask (1 up to and including
    EOS); two samples are the same completion when their masked token sequences are equal.
    """
    response_pnt, mask_pnt = np.asarray(response_pnt), np.asarray(mask_pnt) > 0
    p, n, _ = response_pnt.shape
    out = np.empty((p,), np.float64)
    for i in range(p):
        seqs = {tuple(response_pnt[i, j][mask_pnt[i, j]].tolist()) for j in range(n)}
        out[i] = len(seqs) / n
    return out


def default_pass_k(n: int) -> tuple[int, ...]:
    """The ks logged when ``eval.pass_k`` is not given: {1, n}."""
    return tuple(sorted({1, n}))


def check_pass_k(n: int, ks: Sequence[int]) -> tuple[int, ...]:
    """``ks`` validated against n samples (each in [1, n]), sorted and deduplicated."""
    bad = [k for k in ks if not isinstance(k, (int, np.integer)) or not 1 <= k <= n]
    if bad:
        raise ValueError(f"eval.pass_k={list(ks)} has {bad} outside [1, eval.samples={n}]; pass@k needs k <= n samples")
    return tuple(sorted({int(k) for k in ks}))


def sampled_completions(graphdef, sampling: SamplingConfig, n: int, device_reward: Callable | None = None):
    """``(params, prompt_bp, prompt_valid_bp, answer_ba, answer_valid_ba, rng) -> dict`` of
    per-sample arrays for P prompts (``P·n`` rows, ``jnp.repeat`` order: row ``i·n + j`` is
    sample j of prompt i): ``response_bt``, ``mask_bt``, ``entropy_b`` (Σ over the response's
    tokens of the per-token entropy; a scoring forward of the samples at the sampling
    temperature) and, with ``device_reward``, ``reward_b``. Pure and jittable."""
    if n < 1:
        raise ValueError(f"eval.samples={n} must be >= 1 to sample")
    temperature = sampling.scoring_temperature

    def run(params, prompt_bp, prompt_valid_bp, answer_ba, answer_valid_ba, rng):
        out = sample(graphdef, params, prompt_bp, prompt_valid_bp, rng, sampling, n)
        mask_bt = out.mask_bt.astype(jnp.float32)
        batch = Batch(prompt_bp=jnp.repeat(prompt_bp, n, axis=0), prompt_valid_bp=jnp.repeat(prompt_valid_bp, n, axis=0),
                      response_bt=out.response_bt, mask_bt=mask_bt, group_size=n)
        entropy_bt = score(graphdef, params, batch, temperature=temperature)["entropy_bt"]
        result = {"response_bt": out.response_bt, "mask_bt": mask_bt,
                  "entropy_b": (entropy_bt * mask_bt.astype(entropy_bt.dtype)).sum(-1)}  # the model's precision
        if device_reward is not None:
            reward = device_reward(out.response_bt, mask_bt, jnp.repeat(answer_ba, n, axis=0),
                                   jnp.repeat(answer_valid_ba, n, axis=0))
            result["reward_b"] = jnp.asarray(reward, jnp.float32)
        return result

    return run


def sampled_metrics(reward_pn, entropy_pn, response_pnt, mask_pnt, ks: Sequence[int]) -> dict:
    """The ``eval/…`` metrics of n samples of P prompts (see the module docstring).

    ``reward_pn``: rewards ``[P, n]``; ``entropy_pn``: per-sample sums of the token entropies;
    ``response_pnt`` / ``mask_pnt``: the samples ``[P, n, T]``. Returns python floats.
    """
    reward_pn = np.asarray(reward_pn, np.float64)
    mask_pnt = np.asarray(mask_pnt, np.float64)
    p, n = reward_pn.shape
    correct_pn = reward_pn >= 1.0
    c_p = correct_pn.sum(-1)
    length_pn = mask_pnt.sum(-1)
    tokens = length_pn.sum()
    out = {f"eval/pass@{k}": float(pass_at_k(n, c_p, k).mean()) for k in ks}
    out.update({
        "eval/sampled_accuracy": float(correct_pn.mean()),
        "eval/entropy": float(np.asarray(entropy_pn, np.float64).sum() / tokens) if tokens else math.nan,
        "eval/distinct_answers": float(distinct_fraction(response_pnt, mask_pnt).mean()),
        "eval/response_length": float(length_pn.mean()),
    })
    return out

"""Detector statistics of texts under a scorer language model, and how well they separate
generated texts from reference ("human") texts: CT²'s AI Detectability Index.

"Counter Turing Test (CT^2): AI-Generated Text Detection is Not as Easy as You May Think --
Introducing AI Detectability Index" (Chakraborty et al., arXiv 2310.05030) ranks generators by
how far two statistics of their texts, perplexity and burstiness, sit from those of human texts.
For a text y = (y_1 … y_N) after a prompt x, a scorer LM q gives per token

    ℓ_t = log q(y_t | x, y_<t),   r_t = 1 + #{v : q(v | x, y_<t) > q(y_t | x, y_<t)},
    H_t = −Σ_v q(v | x, y_<t) log q(v | x, y_<t),

and per text (over the tokens of ``mask_bt``, EOS included):

* ``log_likelihood`` = (1/N) Σ_t ℓ_t;  ``perplexity`` P = exp(−(1/N) Σ_t ℓ_t);
* ``log_rank`` = (1/N) Σ_t log r_t (GLTR's rank test, "GLTR: Statistical Detection and
  Visualization of Generated Text", arXiv 1906.04043: generated text sits in the scorer's top ranks);
* ``entropy`` = (1/N) Σ_t H_t;
* ``burstiness`` B = (σ − m)/(σ + m), the Goh–Barabási burstiness parameter CT² uses, of the
  per-sentence surprisals s_j = −mean_{t ∈ sentence j} ℓ_t (m their mean, σ their population
  standard deviation over the text's sentences): −1 for perfectly even sentences, → 1 for
  bursty ones; −1 for a text of one sentence (σ = 0).

CT²'s index over U generated texts u, against human texts H:

    ADI = 100/(2U) · Σ_u [ δ1 · (P_u − L_H^P)/(1 − μ_H^P) + δ2 · (B_u − L_H^B)/(1 − μ_H^B) ]

(``ai_detectability_index``). It is 0 when the generator's texts have the human statistics and
moves away from 0 as they leave them (generated text is usually less perplexing and less bursty
than human text, so the usual direction is negative).

A detector flags a text as generated when its score is high; the scores are the statistics
oriented so ("higher likelihood, lower rank, lower entropy, lower perplexity, lower burstiness
look generated": ``DETECTORS``), and ``auroc`` is the probability that a random generated text
outscores a random reference text (ties count ½): 0.5 = undetectable, 1 = always detected.

INFERRED:
* sentences: the synthetic tasks have no sentence marks; a sentence ends at the task's step
  separator token (the chain task's ",", ``polrl.tasks.chain.STEP_SEPARATOR``), the separator
  belonging to the sentence it ends; the final segment (answer and EOS) is the last sentence;
* the per-sentence quantity whose burstiness is taken is the sentence's mean surprisal
  (log-perplexity), the sentence-level perplexity variation detectors read;
* in the ADI, L_H is the mean of the statistic over the reference texts, and the normalizer
  (1 − μ_H) is replaced by the reference texts' standard deviation of that statistic (a
  perplexity is ≥ 1, where 1 − μ would be ≤ 0); δ1 = δ2 = ½ (equal weights);
* reference ("human") texts: the synthetic tasks have no human text; the task's programmatic
  demonstrations (the labelled answers of held-out prompts) stand in for it;
* the scorer: any polrl Transformer (the frozen policy a phase starts from — the SFT warm start
  of an RL phase — or a separately trained model), scored at temperature 1.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from polrl.core import Batch
from polrl.train.steps import score

STATISTICS = ("log_likelihood", "perplexity", "log_rank", "entropy", "burstiness")
# sign s of each statistic such that s · statistic is high for generated text (the detector's score)
DETECTORS = {"log_likelihood": 1.0, "perplexity": -1.0, "log_rank": -1.0, "entropy": -1.0, "burstiness": -1.0}


def token_statistics(graphdef, params, batch: Batch) -> dict:
    """Per response token under the scorer ``(graphdef, params)``: ``logp_bt`` (ℓ_t),
    ``log_rank_bt`` (log r_t, rank 1 = the scorer's arg-max) and ``entropy_bt`` (H_t), at
    temperature 1. Pure and jittable."""
    out = score(graphdef, params, batch, full_logits=True, chunk_size=0, micro_batches=1)
    logits_btv = out["logits_btv"]
    taken_bt = jnp.take_along_axis(logits_btv, batch.response_bt[..., None], axis=-1)
    rank_bt = 1 + (logits_btv > taken_bt).sum(-1)
    return {"logp_bt": out["logp_bt"], "log_rank_bt": jnp.log(rank_bt.astype(out["logp_bt"].dtype)),
            "entropy_bt": out["entropy_bt"]}


def burstiness(logp_bt, response_bt, mask_bt, separator_id: int):
    """``[B]`` Goh–Barabási burstiness (σ − m)/(σ + m) of each text's per-sentence mean surprisals
    (module docstring); a sentence ends at ``separator_id`` (included in it). Pure and jittable."""
    mask_bt = mask_bt.astype(logp_bt.dtype)
    t = response_bt.shape[1]
    is_sep_bt = (response_bt == separator_id).astype(logp_bt.dtype) * mask_bt
    sentence_bt = (jnp.cumsum(is_sep_bt, axis=1) - is_sep_bt).astype(jnp.int32)  # the separator ends its sentence
    member_bts = jax.nn.one_hot(sentence_bt, t, dtype=logp_bt.dtype) * mask_bt[..., None]
    count_bs = member_bts.sum(1)
    surprisal_bs = -jnp.einsum("bt,bts->bs", logp_bt, member_bts) / jnp.maximum(count_bs, 1)
    present_bs = (count_bs > 0).astype(logp_bt.dtype)
    sentences_b = jnp.maximum(present_bs.sum(1), 1)
    m_b = (surprisal_bs * present_bs).sum(1) / sentences_b
    sigma_b = jnp.sqrt((jnp.square(surprisal_bs - m_b[:, None]) * present_bs).sum(1) / sentences_b)
    denom_b = sigma_b + m_b
    return jnp.where(denom_b > 0, (sigma_b - m_b) / jnp.where(denom_b > 0, denom_b, 1), -1.0)


def text_statistics(tokens: dict, response_bt, mask_bt, separator_id: int) -> dict:
    """``[B]`` per-text ``STATISTICS`` from ``token_statistics``' output ``tokens`` over the
    tokens of ``mask_bt`` (rows without a token get the means of nothing: 0 / 1 for perplexity).
    Pure and jittable."""
    mask_bt = mask_bt.astype(tokens["logp_bt"].dtype)
    n_b = jnp.maximum(mask_bt.sum(1), 1)
    mean = lambda x_bt: (x_bt * mask_bt).sum(1) / n_b
    log_likelihood = mean(tokens["logp_bt"])
    return {"log_likelihood": log_likelihood, "perplexity": jnp.exp(-log_likelihood),
            "log_rank": mean(tokens["log_rank_bt"]), "entropy": mean(tokens["entropy_bt"]),
            "burstiness": burstiness(tokens["logp_bt"], response_bt, mask_bt, separator_id)}


def scored_texts(graphdef, separator_id: int):
    """``(params, prompt_bp, prompt_valid_bp, response_bt, mask_bt) -> {statistic: [B]}``: the
    per-text statistics of the responses under the scorer ``params``. Pure and jittable."""

    def run(params, prompt_bp, prompt_valid_bp, response_bt, mask_bt):
        batch = Batch(prompt_bp=prompt_bp, prompt_valid_bp=prompt_valid_bp, response_bt=response_bt,
                      mask_bt=mask_bt.astype(jnp.float32))
        return text_statistics(token_statistics(graphdef, params, batch), response_bt, batch.mask_bt, separator_id)

    return run


def detector_score(stats: dict, name: str):
    """The detector ``name``'s score of each text (``DETECTORS``' sign times the statistic)."""
    if name not in DETECTORS:
        raise ValueError(f"detector {name!r} is not one of {sorted(DETECTORS)}")
    return DETECTORS[name] * stats[name]


def auroc(positive, negative) -> float:
    """P(a random positive outscores a random negative) + ½ P(tie), float64 (Mann–Whitney U / (n₊ n₋)).
    Needs at least one of each."""
    positive, negative = np.asarray(positive, np.float64).ravel(), np.asarray(negative, np.float64).ravel()
    if not positive.size or not negative.size:
        raise ValueError(f"auroc needs scores of both classes, got {positive.size} positive and {negative.size} negative")
    below = np.searchsorted(np.sort(negative), positive, side="left")
    below_or_equal = np.searchsorted(np.sort(negative), positive, side="right")
    return float((below.sum() + 0.5 * (below_or_equal - below).sum()) / (positive.size * negative.size))


def ai_detectability_index(perplexity_u, burstiness_u, reference_perplexity, reference_burstiness, *,
                           delta1: float = 0.5, delta2: float = 0.5) -> float:
    """CT²'s ADI of the generated texts' perplexities and burstiness against the reference texts'
    (module docstring; the normalizer is the reference standard deviation, INFERRED), float64."""
    p_u, b_u = np.asarray(perplexity_u, np.float64), np.asarray(burstiness_u, np.float64)
    ref_p, ref_b = np.asarray(reference_perplexity, np.float64), np.asarray(reference_burstiness, np.float64)
    if p_u.size == 0 or p_u.shape != b_u.shape or ref_p.size < 2 or ref_p.shape != ref_b.shape:
        raise ValueError(f"ai_detectability_index needs U >= 1 generated and >= 2 reference texts with both statistics, "
                         f"got perplexity {p_u.shape} / burstiness {b_u.shape} and {ref_p.shape} / {ref_b.shape}")
    term = lambda x, ref: (x - ref.mean()) / max(ref.std(), np.finfo(np.float64).tiny)
    return float(100.0 / (2 * p_u.size) * (delta1 * term(p_u, ref_p) + delta2 * term(b_u, ref_b)).sum())


def detection_metrics(generated: dict, reference: dict, prefix: str = "eval/detect_") -> dict:
    """``{prefix}auroc_<detector>`` for every detector (generated texts = positives) and
    ``{prefix}adi``, from per-text statistics (``text_statistics``) of both sets; python floats."""
    out = {f"{prefix}auroc_{name}": auroc(detector_score(generated, name), detector_score(reference, name))
           for name in DETECTORS}
    out[f"{prefix}adi"] = ai_detectability_index(generated["perplexity"], generated["burstiness"],
                                                 reference["perplexity"], reference["burstiness"])
    return out

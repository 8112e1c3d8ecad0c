"""DED: supervised distillation on a small verified corpus of diverse trajectories from the teacher
that helps the student most.

DED ("Beyond Scaling Law: A Data-Efficient Distillation Framework for Reasoning", arXiv
2508.09883). Data: ``polrl.collectors.with_distilled_corpus`` — the teacher of a pool whose
distilled answers raise a copy of the student's accuracy most in a quick distillation test, and
per question up to k of its right answers, chosen to be far apart in token edit distance (the
collector's docstring holds the selection rule, the diversity rule and what is INFERRED). Loss:
the token-mean negative log-likelihood of the corpus rows,

    L(θ) = − Σ_{b,t} m_bt log π_θ(y_bt | x_b, y_b,<t) / Σ_{b,t} m_bt,

where the mask m is 0 on the empty rows of questions with fewer than k distinct right answers.
The student never samples during training (its held-out evaluation is its own greedy answers).
"""
from __future__ import annotations

from typing import Sequence

from polrl.algorithms.supervised import sft
from polrl.collectors.distilled_corpus import with_distilled_corpus
from polrl.core import Algorithm


def ded(
    *,
    teachers: Sequence[str],
    samples: int = 8,
    keep: int = 4,
    select_steps: int = 4,
    probe_steps: int = 8,
    probe_lr: float = 1e-3,
    probe_samples: int = 8,
    **sft_options,
) -> Algorithm:
    """DED (arXiv 2508.09883): ``sft`` (token-mean NLL, AdamW; its keywords ``learning_rate``
    (default 1e-3), ``aggregation``, ``warmup_steps``, ``weight_decay``, ``max_grad_norm``) on
    ``with_distilled_corpus(teachers, samples=S, keep=k, select_steps, probe_steps, probe_lr,
    probe_samples)`` rows. ``keep=1`` is the one-trajectory corpus, a single teacher in
    ``teachers`` the corpus of a teacher chosen beforehand (both the paper's ablations)."""
    return sft(**sft_options)._replace(collector=with_distilled_corpus(
        teachers, samples=samples, keep=keep, select_steps=select_steps, probe_steps=probe_steps, probe_lr=probe_lr,
        probe_samples=probe_samples))

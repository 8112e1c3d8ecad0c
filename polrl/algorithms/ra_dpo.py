"""Reward-augmented DPO ("Reward-Augmented Data Enhances Direct Preference Alignment of LLMs", Zhang
et al., arXiv 2410.08067): DPO on goal-conditioned pairs.

Each pair (x, y_w, y_l) with rewards r_w > r_l becomes (g(r_w) ⊕ x: y_w ≻ y_l) and
(g(r_l) ⊕ x: y_l ≻ y_w) (``polrl.collectors.reward_goals``: the relabelling, on device, after
any pair collector), trained with the unchanged DPO loss

    −log σ(β · ([log π_θ(y_w | g ⊕ x) − log π_ref(y_w | g ⊕ x)] − [log π_θ(y_l | g ⊕ x) − log π_ref(y_l | g ⊕ x)]));

at inference the prompt carries the highest goal g(1) (``eval.prompt_prefix``). The reference
scores the same goal-conditioned prompts it never saw: it is the frozen warm start, and only the
difference of log-ratios matters.
"""
from __future__ import annotations

from typing import Sequence

from polrl.algorithms.preference import dpo
from polrl.collectors.reward_goals import with_reward_goals
from polrl.core import Algorithm


def ra_dpo(*, goals: Sequence[str] = ("[0]", "[1]"), **dpo_options) -> Algorithm:
    """DPO (``dpo``'s keywords: β, loss_type, label smoothing, optimization) on the pairs of the
    phase's collector relabelled by ``with_reward_goals(goals)``: L goal texts for reward levels
    0 … L − 1 over rewards in [0, 1] (default two: the verifier's wrong / right)."""
    return dpo(**dpo_options)._replace(collector=with_reward_goals(goals))

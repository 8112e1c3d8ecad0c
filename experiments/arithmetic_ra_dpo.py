"""Reward-augmented DPO on pairs of the warm model's own samples (arithmetic_dpo's pairs).

"Reward-Augmented Data Enhances Direct Preference Alignment of LLMs" (arXiv 2410.08067): each pair
of the warm model's best and worst sample of a prompt (ranked by the verifier: 1 right, 0 wrong)
becomes two goal-conditioned pairs — "[1]" ⊕ prompt: right ≻ wrong, and "[0]" ⊕ prompt: wrong ≻
right (the goal before the prompt, so the answer starts where the warm start learned to) — trained with the plain DPO loss (the ``ra_dpo`` noun: DPO after
``polrl.collectors.with_reward_goals``). Held-out prompts are answered with the highest goal, "[1]",
before them (``eval.prompt_prefix``; the warm start's evaluations see it too). Ties (every sample right
or every one wrong) carry no preference, as in DPO.

Launch:
  python -m polrl.launch --config experiments/arithmetic_ra_dpo.py --workdir /tmp/polrl/arithmetic_ra_dpo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_ra_dpo.py:smoke --workdir /tmp/polrl/ra_dpo_smoke

Recipe: arithmetic_dpo's (the arithmetic_grpo warm start; 8 samples of each of 32 prompts per step from
the frozen warm model, best vs worst; β = 0.1, lr 3e-4); the baseline is arithmetic_dpo on the same
pairs without the goals.

<!-- report: preference.ra_dpo -->
Expected result (benchmarks/preference.md, written by `python benchmarks/preference.py` from
benchmarks/results/preference.jsonl; CPU AMD EPYC; held-out greedy exact match on 500 prompts, the
mean of a run's last 3 evaluations; every arm of a seed from the same SFT warm start; 600 steps;
mean ± std over 3 seeds (0, 1, 2)): SFT warm start 30.9 ± 3.9% (9.5 ± 2.0% with the goal, which
fine-tuning never showed it, before the prompt) → 27.4 ± 12.6% answering with the highest goal (DPO
on the same pairs without goals: 38.5 ± 4.0%); over the last tenth of the steps 19.8 ± 2.5% of the
pairs are untied.
<!-- /report -->

What it shows: the paper's models read a goal written in text; this warm start has never seen a goal
token, so its first answers with one are out of distribution, and the goal-conditioned pairs must
also teach it to read the goal — which 600 steps of pairs do not fully do here.
"""
import ml_collections

from experiments import arithmetic_dpo

GOALS = ("[0]", "[1]")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_dpo.get_config(arg)
    c.algorithm = "ra_dpo"
    c.algorithm_kwargs.goals = GOALS
    c.eval.prompt_prefix = GOALS[-1]
    c.phase_name = "ra_dpo"
    return c

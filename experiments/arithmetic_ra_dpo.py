"""Reward-augmented DPO on pairs of the warm model's own samples (arithmetic_dpo's pairs).

"Reward-Augmented Data Enhances Direct Preference Alignment of LLMs" (arXiv 2410.08067): each pair
of the warm model's best and worst sample of a prompt (ranked by the verifier: 1 right, 0 wrong)
becomes two goal-conditioned pairs — prompt ⊕ "[1]": right ≻ wrong, and prompt ⊕ "[0]": wrong ≻
right — trained with the plain DPO loss (the ``ra_dpo`` noun: DPO after
``polrl.collectors.with_reward_goals``). Held-out prompts are answered with the highest goal, "[1]",
appended (``eval.prompt_suffix``; the warm start's evaluations see it too). Ties (every sample right
or every one wrong) carry no preference, as in DPO.

Launch:
  python -m polrl.launch --config experiments/arithmetic_ra_dpo.py --workdir /tmp/polrl/arithmetic_ra_dpo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_ra_dpo.py:smoke --workdir /tmp/polrl/ra_dpo_smoke

Recipe: arithmetic_dpo's (the arithmetic_grpo warm start; 8 samples of each of 32 prompts per step from
the frozen warm model, best vs worst; β = 0.1, lr 3e-4); the baseline is arithmetic_dpo on the same
pairs without the goals.

Expected result: measured by `python benchmarks/preference.py --arms ra_dpo --seeds 0 1 2` against the
dpo arm (benchmarks/preference.md).
"""
import ml_collections

from experiments import arithmetic_dpo

GOALS = ("[0]", "[1]")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_dpo.get_config(arg)
    c.algorithm = "ra_dpo"
    c.algorithm_kwargs.goals = GOALS
    c.eval.prompt_suffix = GOALS[-1]
    c.phase_name = "ra_dpo"
    return c

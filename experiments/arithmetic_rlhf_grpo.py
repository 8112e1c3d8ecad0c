"""RLHF: GRPO whose reward is a frozen Bradley–Terry reward model, not the task's verifier.

The reward model is the one experiments/arithmetic_reward_model.py trains on pairs ranked by a
hidden closeness rule s(y, t) = 1/(1 + |y − t|) (polrl.tasks.closeness). Every sampled answer is
scored by the reward model alone (`with_reward_model`: the value head at the answer's last
token); the policy never sees s nor the exact-match verifier. Both are logged beside the learned
reward — hidden_score_mean (s of the samples), verifier_reward_mean and accuracy (exact match) —
so a learned reward that rises while s does not (reward hacking) is visible.

Launch (after training the reward model with the launch command of
experiments/arithmetic_reward_model.py, which writes runs/arithmetic_reward_model):
  python -m polrl.launch --config experiments/arithmetic_rlhf_grpo.py --workdir runs/arithmetic_rlhf_grpo
  (another reward model: --config.reward_model.path=WORKDIR/checkpoints/<phase>)
Smoke (run by the test suite; its reward model is the committed checkpoint of the smoke reward
model, experiments/data/arithmetic_reward_model_smoke, written by scripts/make_reward_model_smoke.py):
  python -m polrl.launch --config experiments/arithmetic_rlhf_grpo.py:smoke --workdir /tmp/polrl/rlhf_smoke

Recipe: arithmetic_grpo's (SFT warm start, 32 prompts × 8 samples, lr 3e-4, zero-variance groups
masked) with a stronger k3 KL to the warm start, β = 0.05 instead of 0.01 (a learned reward can be
exploited where a verifier cannot, so the policy is held closer to the model the reward model
scored), 600 steps, reward = the reward model's score.

<!-- report: preference.rlhf_grpo -->
Expected result (benchmarks/preference.md, written by `python benchmarks/preference.py` from
benchmarks/results/preference.jsonl; CPU AMD EPYC; held-out greedy exact match on 500 prompts, the
mean of a run's last 3 evaluations; every arm of a seed from the same SFT warm start; 600 steps;
mean ± std over 3 seeds (0, 1, 2); each seed's own reward model): over the run (first → last tenth
of the steps) the learned reward of the samples goes 3.154 ± 0.190 → 5.249 ± 0.150 and the hidden
score s 0.693 ± 0.010 → 0.738 ± 0.023; held-out greedy accuracy 30.9 ± 3.9% → 40.6 ± 4.8% (GRPO on
the verifier itself: 58.9 ± 3.2%).
<!-- /report -->

What it shows: the learned reward (reward_mean) and the hidden score (hidden_score_mean) of the
policy's samples, step by step, from the same warm start.
"""
import pathlib

import ml_collections

from experiments import arithmetic_grpo

SMOKE_REWARD_MODEL = pathlib.Path(__file__).resolve().parent / "data" / "arithmetic_reward_model_smoke"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.total_steps = 600
    c.reward_model = ml_collections.ConfigDict(dict(
        path="runs/arithmetic_reward_model/checkpoints/reward_model", hidden_score="closeness"))
    c.phase_name = "rlhf"
    c.algorithm_kwargs.kl_coef = 0.05
    if arg == "smoke":
        c.total_steps = 3
        c.reward_model.path = str(SMOKE_REWARD_MODEL)
    return c

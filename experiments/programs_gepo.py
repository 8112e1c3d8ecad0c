"""OORL on the programs task (infix / prefix expressions translated into stack-language
programs): GRPO on the unit-test reward plus GEPO, the group equivalent preference loss
("On-Policy Optimization with Group Equivalent Preference for Multi-Programming Language
Understanding", Wu et al. 2025, arXiv 2505.12723), from the warm start of programs_grpo.

Launch (CPU):
  python -m polrl.launch --config experiments/programs_gepo.py --workdir runs/programs_gepo
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/programs_gepo.py:smoke --workdir /tmp/polrl/programs_gepo_smoke

Recipe: everything of experiments/programs_grpo.py (task, model, SFT warm start, 16 prompts × 8
samples, lr 3e-4, no KL, token-mean GRPO loss, 200 steps), with the ``gepo`` noun: each group
also holds the prompt's labelled program as a 9th row (``expert_per_group=1``, left out of the
GRPO part), and L = L_GRPO + w·L_GEPO over each group, whose winners are the rows passing every
unit test (the labelled program and the equivalent samples) and whose losers are the others:
−log σ(mean_W r̂ − mean_L r̂) + λ·Var_W r̂ with r̂ = β·log π_θ/π_ref, λ = 1 (the paper's) and
β = 0.1 (the paper gives none). w = 1, the noun's default, not the paper's 0.01
(``gepo_coef=0.01``): a token's gradient from L_GEPO is about β/|W| ≤ 0.1, against GRPO's
|A| ≈ 1, so at 0.01 the GEPO term would move the policy about 10⁻³ as much as the GRPO term; a
seed-0 sweep of w ∈ {0.01, 0.1, 1} on this config picked 1 (``polrl.algorithms.gepo``). The
labelled programs are a supervision the GRPO baseline does not get.

<!-- report: preference.programs_gepo -->
Expected result (benchmarks/preference.md, written by `python benchmarks/preference.py` from
benchmarks/results/preference.jsonl; CPU AMD EPYC; held-out greedy accuracy (every unit test passed)
on 500 prompts, the mean of a run's last 3 evaluations; both arms of a seed from the same SFT warm
start; 200 RL steps; mean ± std over 3 seeds (0, 1, 2)): SFT warm start 43.8 ± 9.8% → 51.2 ± 11.1%
with GEPO (+7.6 points over GRPO on paired seeds, ahead on 3 of 3 seeds); GRPO alone: 43.6 ± 11.0%;
GEPO without the labelled program in its groups (expert_per_group=0): 45.2 ± 11.4%.
<!-- /report -->

The run logs the held-out greedy accuracy (all 8 unit tests passed) of the warm start and every
50 steps (eval/accuracy), and per step the sampled accuracy and gepo_margin / gepo_accuracy /
gepo_winner_var.
"""
import ml_collections

from experiments import programs_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = programs_grpo.get_config(arg)
    c.algorithm = "gepo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(
        learning_rate=3e-4, kl_coef=0.0, aggregation="token_mean", beta=0.1, lambda_=1.0, gepo_coef=1.0,
        expert_per_group=1,
    ))
    return c

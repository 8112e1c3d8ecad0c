"""GRPO with the pass@k advantage (only each group's best sample is reinforced) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_passk_grpo.py --workdir /tmp/polrl/arithmetic_passk_grpo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_passk_grpo.py:smoke --workdir /tmp/polrl/passk_grpo_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4). The best row of each group gets (r_max − r_second) / (std_g + 1e-6),
every other row 0 (the leave-one-out gradient of pass@8), PPO clip ε = 0.2, k3 KL with β = 0.01 (as
arithmetic_grpo), seq_mean_token_mean, one update per batch. With 0/1 rewards only groups with
exactly one correct sample carry a gradient.

<!-- report: catalogue.passk_grpo -->
Expected result (benchmarks/catalogue.md, written by `python benchmarks/algorithms.py --results
benchmarks/results/catalogue.jsonl`: 600 steps of this config from the shared SFT warm start of each
seed, 3 seeds (0, 1, 2), the launcher's default of one XLA device per core, CPU AMD EPYC; held-out
greedy exact match on 500 test prompts, mean ± std over seeds): 30.9 ± 3.9% → 53.9 ± 2.5% (GRPO in
the same benchmark: 60.7 ± 3.6%; paired by seed, ahead of it on 0 of 3).
<!-- /report -->

What the run logs to watch: ``passk_adv_frac`` (the fraction of rows with a non-zero advantage: the groups with a single
best sample), ``kl`` and the held-out greedy exact match (``eval/accuracy``, greedy decoding, i.e.
pass@1: the objective trained is pass@8) every 100 steps.
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "passk_grpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, kl_coef=0.01))
    return c

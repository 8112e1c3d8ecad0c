"""OPO (exact on-policy, length-weighted optimal reward baseline) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_opo.py --workdir /tmp/polrl/arithmetic_opo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_opo.py:smoke --workdir /tmp/polrl/opo_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4). A = r − Σ_j |o_j| r_j / Σ_j |o_j| over each group, no std, one gradient
step per rollout batch (exact on-policy), PPO's surrogate at ρ = 1 (REINFORCE), token-mean, no KL,
no entropy bonus.

<!-- report: catalogue.opo -->
Expected result (benchmarks/catalogue.md, written by `python benchmarks/algorithms.py --results
benchmarks/results/catalogue.jsonl`: 600 steps of this config from the shared SFT warm start of each
seed, 3 seeds (0, 1, 2), the launcher's default of one XLA device per core, CPU AMD EPYC; held-out
greedy exact match on 500 test prompts, mean ± std over seeds): 30.9 ± 3.9% → 59.9 ± 5.6% (GRPO in
the same benchmark: 60.7 ± 3.6%; paired by seed, ahead of it on 2 of 3).
<!-- /report -->

What the run logs to watch: ``ratio_mean`` (1 on every step: the update is exactly on-policy), ``entropy`` (OPO's claim
is higher entropy than GRPO) and the held-out greedy exact match (``eval/accuracy``) every 100
steps.
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "opo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4))
    return c

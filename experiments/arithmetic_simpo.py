"""SimPO on pairs of the warm model's own samples (reference-free, length-normalised, a margin).

The data of experiments/arithmetic_dpo.py: each step samples G answers per prompt from the frozen
SFT warm start, scores them with exact match and pairs the best with the worst of each prompt.

Launch:
  python -m polrl.launch --config experiments/arithmetic_simpo.py --workdir /tmp/polrl/arithmetic_simpo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_simpo.py:smoke --workdir /tmp/polrl/simpo_smoke

Recipe: arithmetic_dpo's (the arithmetic_grpo warm start, 8 samples for each of 32 prompts per step,
lr 3e-4) with SimPO (arXiv 2405.14734): −log σ(β(ā_w − ā_l) − γ), the mean token log-prob ā of each
answer, no reference term; β = 2, γ = 0.5.

<!-- report: catalogue.simpo -->
Expected result (benchmarks/catalogue.md, written by `python benchmarks/algorithms.py --results
benchmarks/results/catalogue.jsonl`: 600 steps of this config from the shared SFT warm start of each
seed, 3 seeds (0, 1, 2), the launcher's default of one XLA device per core, CPU AMD EPYC; held-out
greedy exact match on 500 test prompts, mean ± std over seeds): 30.9 ± 3.9% → 41.2 ± 7.3% (DPO in
the same benchmark: 38.0 ± 3.9%; paired by seed, ahead of it on 2 of 3).
<!-- /report -->
"""
import ml_collections

from experiments import arithmetic_dpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_dpo.get_config(arg)
    c.algorithm = "simpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(beta=2.0, gamma=0.5, learning_rate=c.algorithm_kwargs.learning_rate))
    c.phase_name = "simpo"
    return c

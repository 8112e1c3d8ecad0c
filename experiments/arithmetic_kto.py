"""KTO on the warm model's own samples, each desirable or not (no pairing needed).

The data of experiments/arithmetic_dpo.py: each step samples G answers per prompt from the frozen
SFT warm start, scores them with exact match and pairs the best with the worst of each prompt.

Launch:
  python -m polrl.launch --config experiments/arithmetic_kto.py --workdir /tmp/polrl/arithmetic_kto
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_kto.py:smoke --workdir /tmp/polrl/kto_smoke

Recipe: arithmetic_dpo's (the arithmetic_grpo warm start, 8 samples for each of 32 prompts per step,
lr 3e-4) with KTO (arXiv 2402.01306): each sampled answer on its own, desirable when correct; λ_D(1
− σ(β(r − z))) or λ_U(1 − σ(β(z − r))) with r the summed log-ratio to the reference and z the batch
reference point; β = 0.1.

<!-- report: catalogue.kto -->
Expected result (benchmarks/catalogue.md, written by `python benchmarks/algorithms.py --results
benchmarks/results/catalogue.jsonl`: 600 steps of this config from the shared SFT warm start of each
seed, 3 seeds (0, 1, 2), the launcher's default of one XLA device per core, CPU AMD EPYC; held-out
greedy exact match on 500 test prompts, mean ± std over seeds): 30.9 ± 3.9% → 36.3 ± 7.0% (DPO in
the same benchmark: 38.0 ± 3.9%; paired by seed, ahead of it on 1 of 3).
<!-- /report -->
"""
import ml_collections

from experiments import arithmetic_dpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_dpo.get_config(arg)
    c.algorithm = "kto"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(beta=0.1, learning_rate=c.algorithm_kwargs.learning_rate))
    c.phase_name = "kto"
    return c

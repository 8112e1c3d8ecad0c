"""DPO on pairs built from the warm model's own samples, ranked by the arithmetic verifier.

Each step samples G answers per prompt from the frozen SFT warm start (the DPO reference),
scores them with exact match, and pairs the best with the worst of each prompt; prompts whose
samples are all right or all wrong give ties, which the loss ignores.

Launch:
  python -m polrl.launch --config experiments/arithmetic_dpo.py --workdir /tmp/polrl/arithmetic_dpo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_dpo.py:smoke --workdir /tmp/polrl/dpo_smoke

Recipe: the arithmetic_grpo warm start; each step samples 8 answers for each of 32 prompts from
the frozen warm model, and pairs the best with the worst (ties ignored); β = 0.1, lr 3e-4,
3000 steps.

<!-- report: arithmetic.dpo -->
Expected result (the launcher's default of one XLA device per core, 3000 steps, seed 0 only, CPU AMD
EPYC; raw: benchmarks/results/arithmetic.jsonl, from `python benchmarks/algorithms.py --nouns dpo
--steps 3000 --results benchmarks/results/arithmetic.jsonl`): seed 0: 28.6% → 55.6% (GRPO from the
same warm start: 75.0%).
<!-- /report -->

DPO learns only from the warm model's own, fixed sample distribution.
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "dpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(beta=0.1, learning_rate=c.algorithm_kwargs.learning_rate))
    c.collector = "preference_pairs"
    c.phase_name = "dpo"
    return c

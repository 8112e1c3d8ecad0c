"""SFT on a fixed set of labelled arithmetic demonstrations (the warm start of the RL configs).

Launch:
  python -m polrl.launch --config experiments/arithmetic_sft.py --workdir /tmp/polrl/arithmetic_sft
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_sft.py:smoke --workdir /tmp/polrl/sft_smoke

<!-- report: arithmetic.sft -->
Expected result, trained from scratch on the same demonstrations (the launcher's default of one XLA
device per core, 3200 steps, 3 seeds (0, 1, 2), CPU AMD EPYC; raw:
benchmarks/results/arithmetic.jsonl, from `python benchmarks/algorithms.py --nouns sft --steps 3200
--results benchmarks/results/arithmetic.jsonl`): 36.2% (seed 0), 48.6% (seed 1), 37.8% (seed 2).
<!-- /report -->
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "sft"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=c.warmup.learning_rate))
    c.collector = "demonstrations"
    c.data = "demos"
    c.phase_name = "sft"
    c.total_steps = c.warmup.steps
    c.warmup.steps = 0
    return c

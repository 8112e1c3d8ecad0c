"""SFT on a fixed set of labelled arithmetic demonstrations (the warm start of the RL configs).

Launch:
  python -m polrl.launch --config experiments/arithmetic_sft.py --workdir /tmp/polrl/arithmetic_sft
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_sft.py:smoke --workdir /tmp/polrl/sft_smoke

Expected result: TBD
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "sft"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=c.warmup.learning_rate))
    c.batches = "demonstrations"
    c.total_steps = c.warmup.steps
    c.warmup.steps = 0
    return c

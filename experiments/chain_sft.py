"""SFT on the fixed set of labelled chain demonstrations (the warm start of chain_grpo / chain_treepo),
trained for as many steps as warm start + RL, to show where supervised training plateaus.

Launch:
  python -m polrl.launch --config experiments/chain_sft.py --workdir runs/chain_sft
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/chain_sft.py:smoke --workdir /tmp/polrl/chain_sft_smoke

Expected result (benchmarks/treepo.md, seed 0 only; held-out greedy exact match, the mean of the
last 3 evaluations): 53.4% after the 500 warm-start steps, 65.4% after all 900 (GRPO's 400 steps
from that warm start: 76.1%).
"""
import ml_collections

from experiments import chain_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_grpo.get_config(arg)
    c.algorithm = "sft"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=c.warmup.learning_rate))
    c.collector = "demonstrations"
    c.data = "demos"
    c.phase_name = "sft"
    c.total_steps = c.warmup.steps + c.total_steps
    c.warmup.steps = 0
    return c

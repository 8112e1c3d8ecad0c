"""SFT on the fixed set of labelled chain demonstrations (the warm start of chain_grpo / chain_treepo),
trained for as many steps as warm start + RL, to show where supervised training plateaus.

Launch:
  python -m polrl.launch --config experiments/chain_sft.py --workdir runs/chain_sft
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/chain_sft.py:smoke --workdir /tmp/polrl/chain_sft_smoke

Expected result: see benchmarks/treepo.md (the SFT-only rows).
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

"""SFT on the fixed set of labelled chain demonstrations (the warm start of chain_grpo / chain_treepo),
trained for as many steps as warm start + RL, to show where supervised training plateaus.

Launch:
  python -m polrl.launch --config experiments/chain_sft.py --workdir runs/chain_sft
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/chain_sft.py:smoke --workdir /tmp/polrl/chain_sft_smoke

<!-- report: chain.sft -->
Expected result (benchmarks/treepo.md, written by `python benchmarks/treepo.py` from
benchmarks/results/treepo.jsonl; CPU AMD EPYC / unrecorded; held-out greedy exact match of the final
answer on 500 prompts, each reading the mean of the last 3 evaluations; mean ± std over 3 seeds (0,
1, 2)): SFT continued for 400 more steps on the same demonstrations reaches 65.4 (1 seed)% (seed 0
only); GRPO from the same warm start reaches 62.7 ± 11.6%.
<!-- /report -->
"""
import ml_collections

from experiments import chain_grpo


def continued_sft(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The run ``c`` with SFT on its demonstrations in place of RL: one SFT phase of warm-start +
    RL steps (the warm start's steps first, then the same optimizer state continues)."""
    c.algorithm = "sft"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=c.warmup.learning_rate))
    c.collector = "demonstrations"
    c.data = "demos"
    c.phase_name = "sft"
    c.total_steps = c.warmup.steps + c.total_steps
    c.warmup.steps = 0
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return continued_sft(chain_grpo.get_config(arg))

"""SFT on the long chain task's fixed demonstrations, for as many steps as warm start + RL.

The control of the long-reasoning testbed: ``experiments/chain_long_grpo.py``'s warm start (1000
labelled demonstrations, batch 64, lr 2e-3) trained as one phase for its 600 steps plus the RL
phase's, so its first 600 steps are the warm start and the rest continue it on the same
demonstrations with the same optimizer state, where GRPO would learn from the unlabelled prompts.

Launch:
  python -m polrl.launch --config experiments/chain_long_sft.py --workdir runs/chain_long_sft
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/chain_long_sft.py:smoke --workdir /tmp/polrl/chain_long_sft_smoke

<!-- report: length.sft -->
Expected result (benchmarks/length.md, written by `python benchmarks/length.py` from
benchmarks/results/length.jsonl; CPU AMD EPYC; held-out greedy exact match of the final answer on
500 prompts, the mean of a run's last 3 evaluations; every arm of a seed from the same warm start;
200 steps; mean ± std over 5 seeds (0, 1, 2, 3, 4)): from the 71.5 ± 9.1% warm start, 78.8 ± 8.4%
(GRPO instead: 84.2 ± 9.9%).
<!-- /report -->
"""
import ml_collections

from experiments import chain_long_grpo, chain_sft


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return chain_sft.continued_sft(chain_long_grpo.get_config(arg))

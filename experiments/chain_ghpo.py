"""GHPO on the chain task: GRPO whose unsolved prompts are drawn again with the beginning of their
labelled scratchpad after them (arXiv 2507.10628), from the SFT warm start of chain_grpo.

Task, warm start, model, prompts, learning rate and loss are experiments/chain_grpo.py's; only
the collector differs: ``hinted_groups`` (``polrl.collectors.hints``) samples 8 answers per
prompt and, for every prompt none of whose samples is right, samples 8 more after the first 25%
of its labelled scratchpad (characters, rounded half to even), then, for those still unsolved,
after 50%, then 75% (the reference code's stages, within one step). Hinted rows are trained by the
same GRPO loss with the hint in their prompt (no gradient on it) and are marked GUIDED: the
logged ``accuracy`` is the policy's own, unhinted, and ``guided_accuracy`` /
``hint/hinted_frac`` / ``hint/solved_frac`` describe the hints. Held-out prompts are answered
without hints. The hinted prompt is up to 56 tokens longer, so ``model.max_len`` is 160 (RoPE
positions only: the parameters and the warm start are chain_grpo's).

Launch (CPU):
  python -m polrl.launch --config experiments/chain_ghpo.py --workdir runs/chain_ghpo
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/chain_ghpo.py:smoke --workdir /tmp/polrl/chain_ghpo_smoke

<!-- report: guided.ghpo -->
Expected result (benchmarks/guided.md, from `python benchmarks/guided_ghpo.py`; raw:
benchmarks/results/guided_ghpo.jsonl; CPU AMD EPYC; 200 steps of this config and of chain_grpo.py
from each seed's SFT warm start, 3 seeds (0, 1, 2); held-out greedy exact match of the final answer
on 500 prompts, answered without hints, each run's mean of its last 3 evaluations): warm start 48.5
± 5.9% → GHPO 67.9 ± 8.1%, GRPO 58.0 ± 7.2% (paired differences +13.8, +11.5, +4.4 points). Over
training 26.0 ± 5.8% of the groups were sampled again with a hint, and 42.3 ± 3.7% of those hinted
groups had a right sample. GHPO against its label control (the same unsolved prompts given the
labelled answer as a row, experiments/chain_ghpo_labels.py): -5.3, -10.2, -6.9 points, paired by
seed.
<!-- /report -->
"""
import ml_collections

from experiments import chain_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_grpo.get_config(arg)
    c.model.max_len = 160
    c.collector = "hinted_groups"
    c.collector_kwargs = ml_collections.ConfigDict(dict(hint_ratios=(0.25, 0.5, 0.75)))
    return c

"""GHPO's label control on the chain task: GRPO whose unsolved prompts get their labelled answer as
one row of the group (no hint), from the SFT warm start of chain_grpo.

Task, warm start, model, prompts, learning rate and loss are experiments/chain_grpo.py's; only
the collector differs: ``label_guided_groups`` (``polrl.collectors.unsolved_labels``) samples 8
answers per prompt and, for every prompt none of whose samples is right — the prompts GHPO
(experiments/chain_ghpo.py, arXiv 2507.10628) would hint — puts the labelled answer in place of
the group's first sample (``source_b = EXPERT``, behaviour log-prob 0). It reads the labels of
exactly the prompts a GHPO run reads them for, without the hint's mechanism (the policy continuing
a partial solution on-policy), so chain_ghpo's gain over chain_grpo splits into what the labels
give and what the hints add. The logged ``accuracy`` is the policy's own samples' (before the
label rows); ``label/injected_frac`` is the fraction of groups that got one. Held-out prompts are
answered as in chain_grpo.

Launch (CPU):
  python -m polrl.launch --config experiments/chain_ghpo_labels.py --workdir runs/chain_ghpo_labels
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/chain_ghpo_labels.py:smoke --workdir /tmp/polrl/chain_ghpo_labels_smoke

<!-- report: guided.ghpo_labels -->
Expected result (benchmarks/guided.md, from `python benchmarks/guided_ghpo.py`; raw:
benchmarks/results/guided_ghpo.jsonl; CPU AMD EPYC; 200 steps of this config, of chain_ghpo.py and
of chain_grpo.py from each seed's SFT warm start, 3 seeds (0, 1, 2); held-out greedy exact match of
the final answer on 500 prompts, each run's mean of its last 3 evaluations): warm start 48.5 ± 5.9%
→ 75.4 ± 5.9%, GRPO 58.0 ± 7.2% (paired differences +19.1, +21.7, +11.3 points). 16.3 ± 2.5% of the
groups were given the label. GHPO against its label control (the same unsolved prompts given the
labelled answer as a row, experiments/chain_ghpo_labels.py): -5.3, -10.2, -6.9 points, paired by
seed.
<!-- /report -->
"""
import ml_collections

from experiments import chain_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_grpo.get_config(arg)
    c.collector = "label_guided_groups"
    c.collector_kwargs = ml_collections.ConfigDict(dict(label_rows=1))
    return c

"""TreePO on the chain task: tree rollouts (segments of 8 tokens, 2 → 4 → 8 paths per prompt) and
the tree-structured advantage, from the same SFT warm start as experiments/chain_grpo.py.

Recipe: the chain_grpo config (task, model, 500 demonstrations, 500 SFT steps, 16 prompts per step,
lr 3e-4, no KL) with ``collector = "tree"``: each prompt grows a tree of 8 leaves by segments of
8 tokens, 2 paths after the root, each doubling at every segment boundary until 8 (early
finished paths are leaves; with none left the tree falls back to the root), branching uniform
over the active paths; and ``algorithm = "treepo"``: sub-group advantages averaged over the
leaf's ancestors, whitened over the batch, clip 0.2 / 0.28, token-mean loss.

Launch (CPU):
  python -m polrl.launch --config experiments/chain_treepo.py --workdir runs/chain_treepo
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/chain_treepo.py:smoke --workdir /tmp/polrl/chain_treepo_smoke

<!-- report: chain.treepo -->
Expected result (benchmarks/treepo.md, written by `python benchmarks/treepo.py` from
benchmarks/results/treepo.jsonl; CPU AMD EPYC / unrecorded; held-out greedy exact match of the final
answer on 500 prompts, each reading the mean of the last 3 evaluations; mean ± std over 3 seeds (0,
1, 2)): from the SFT warm start (48.5 ± 5.9%), TreePO samples 0.776 ± 0.016× GRPO's tokens per step
and reaches 52.8 ± 22.4% within GRPO's budget of sampled tokens, against GRPO's 62.7 ± 11.6% after
400 steps.
<!-- /report -->

Rollout cost and per-seed readings are in benchmarks/treepo.md.
"""
import ml_collections

from experiments import chain_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_grpo.get_config(arg)
    c.algorithm = "treepo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4))
    c.collector = "tree"
    c.collector_kwargs = ml_collections.ConfigDict(dict(segment_len=8, init_branches=2, branching=2, branch_on="uniform"))
    if arg == "smoke":
        c.collector_kwargs.update(segment_len=4, init_branches=1)
    return c

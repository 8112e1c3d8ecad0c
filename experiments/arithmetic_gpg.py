"""GPG (REINFORCE on α-corrected group-relative advantages) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_gpg.py --workdir /tmp/polrl/arithmetic_gpg
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_gpg.py:smoke --workdir /tmp/polrl/gpg_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4). A = α (r − mean_g r) with α = B/(B − M) (M: rows of all-equal groups),
loss −A·log π with no ratio and no clip, token-mean, no KL, one update per batch.

<!-- report: catalogue.gpg -->
Expected result (benchmarks/catalogue.md, written by `python benchmarks/algorithms.py --results
benchmarks/results/catalogue.jsonl`: 600 steps of this config from the shared SFT warm start of each
seed, 3 seeds (0, 1, 2), the launcher's default of one XLA device per core, CPU AMD EPYC; held-out
greedy exact match on 500 test prompts, mean ± std over seeds): 30.9 ± 3.9% → 61.4 ± 3.6% (GRPO in
the same benchmark: 60.7 ± 3.6%; paired by seed, ahead of it on 2 of 3).
<!-- /report -->

What the run logs to watch: ``gpg_alpha`` (α: how much of each batch falls in groups without signal; 1 when every group
has distinct rewards), ``pg`` and the held-out greedy exact match (``eval/accuracy``) every 100
steps.
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "gpg"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4))
    return c

"""AsymRE (asymmetric REINFORCE: a baseline 0.1 under the group mean) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_asymre.py --workdir /tmp/polrl/arithmetic_asymre
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_asymre.py:smoke --workdir /tmp/polrl/asymre_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, lr 3e-4, one update per batch). A = r − (mean_g r − 0.1), loss token-mean(−A·log π), no
ratio, no clip, no KL, no entropy (Trinity's AsymRE).

<!-- report: arithmetic.asymre -->
Expected result (benchmarks/algorithms.py: 600 steps of this config from the shared SFT warm start
of each seed, 3 seeds (0, 1, 2), held-out greedy exact match on 500 test prompts, mean ± std over
seeds; measured with one XLA device before the rollout engine replaced the fixed sampler (CPU
unrecorded; raw: benchmarks/results/algorithms.jsonl)): 32.1 ± 3.8% → 60.1 ± 5.5% (GRPO at the same
budget: 56.6 ± 3.6%).
<!-- /report -->
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "asymre"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, baseline_shift=-0.1))
    return c

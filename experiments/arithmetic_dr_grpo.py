"""Dr.GRPO (no-std advantage, constant-normalizer loss) on embedded arithmetic, from the same SFT warm start.

Launch:
  python -m polrl.launch --config experiments/arithmetic_dr_grpo.py --workdir /tmp/polrl/arithmetic_dr_grpo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_dr_grpo.py:smoke --workdir /tmp/polrl/dr_grpo_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4, one update per batch). A = r − mean_g r (no std), PPO clip ε = 0.2,
aggregation seq_mean_token_sum_norm with T_max = 3 (the generation budget: the task's longest
answer, EOS included), no KL (β = 0, the authors' recipe).

<!-- report: arithmetic.dr_grpo -->
Expected result (benchmarks/algorithms.py: 600 steps of this config from the shared SFT warm start
of each seed, 3 seeds (0, 1, 2), held-out greedy exact match on 500 test prompts, mean ± std over
seeds; measured with one XLA device before the rollout engine replaced the fixed sampler (CPU
unrecorded; raw: benchmarks/results/algorithms.jsonl)): 32.1 ± 3.8% → 55.9 ± 3.9% (GRPO at the same
budget: 56.6 ± 3.6%).
<!-- /report -->
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "dr_grpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, max_len=3))
    c.rollout.max_new_tokens = 3  # = max_len: the constant normalizer is the generation budget
    return c

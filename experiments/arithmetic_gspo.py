"""GSPO (sequence-level clipped ratio) on embedded arithmetic, from the same SFT warm start.

Launch:
  python -m polrl.launch --config experiments/arithmetic_gspo.py --workdir /tmp/polrl/arithmetic_gspo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_gspo.py:smoke --workdir /tmp/polrl/gspo_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4). GRPO advantage, sequence ratio s_i = exp(mean_t log π/π_old) clipped
to [1 − 3e-4, 1 + 4e-4] (the paper's range), seq_mean_token_mean, no KL; each rollout batch is
split into 2 minibatches so the second step is off-policy and the clip acts.

<!-- report: arithmetic.gspo -->
Expected result (benchmarks/algorithms.py: 600 steps of this config from the shared SFT warm start
of each seed, 3 seeds (0, 1, 2), held-out greedy exact match on 500 test prompts, mean ± std over
seeds; measured with one XLA device before the rollout engine replaced the fixed sampler (CPU
unrecorded; raw: benchmarks/results/algorithms.jsonl)): 32.1 ± 3.8% → 61.4 ± 4.9% (GRPO at the same
budget: 56.6 ± 3.6%).
<!-- /report -->

On 2–3-token answers the sequence ratios stay close to 1 and the clip barely acts (``clip_frac``).
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "gspo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, num_minibatches=2))
    return c

"""RLOO (leave-one-out baseline) on embedded arithmetic, from the same SFT warm start.

Launch:
  python -m polrl.launch --config experiments/arithmetic_rloo.py --workdir /tmp/polrl/arithmetic_rloo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_rloo.py:smoke --workdir /tmp/polrl/rloo_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4, one update per batch). A_i = r_i − mean of the other 7 rewards,
REINFORCE on the sequence log-probability (seq_mean_token_sum), no KL.

<!-- report: arithmetic.rloo -->
Expected result (benchmarks/algorithms.py: 600 steps of this config from the shared SFT warm start
of each seed, 3 seeds (0, 1, 2), held-out greedy exact match on 500 test prompts, mean ± std over
seeds; measured with one XLA device before the rollout engine replaced the fixed sampler (CPU
unrecorded; raw: benchmarks/results/algorithms.jsonl)): 32.1 ± 3.8% → 60.5 ± 6.0% (GRPO at the same
budget: 56.6 ± 3.6%).
<!-- /report -->

RLOO's gradient here is a constant multiple of Dr.GRPO's (advantage × G/(G−1), a token sum instead
of a constant normalizer), which Adam's normalization removes, so the two differ only where the
gradient-norm clip acts.
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "rloo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4))
    return c

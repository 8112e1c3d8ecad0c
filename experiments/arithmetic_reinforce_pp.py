"""REINFORCE++ (k1 KL in the token rewards, global advantage normalization) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_reinforce_pp.py --workdir /tmp/polrl/arithmetic_reinforce_pp
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_reinforce_pp.py:smoke --workdir /tmp/polrl/reinforce_pp_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4, one update per batch). A_t = R − β Σ_{s≥t} k1_s with β = 0.01 (k1 of
π_old vs the warm start; π_old recomputed once per batch), normalized over all valid tokens of
the batch, PPO clip 0.2, token-mean loss.

<!-- report: arithmetic.reinforce_pp -->
Expected result (benchmarks/algorithms.py: 600 steps of this config from the shared SFT warm start
of each seed, 3 seeds (0, 1, 2), held-out greedy exact match on 500 test prompts, mean ± std over
seeds; measured with one XLA device before the rollout engine replaced the fixed sampler (CPU
unrecorded; raw: benchmarks/results/algorithms.jsonl)): 32.1 ± 3.8% → 58.3 ± 3.8% (GRPO at the same
budget: 56.6 ± 3.6%).
<!-- /report -->
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "reinforce_pp"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, kl_coef=0.01))
    return c

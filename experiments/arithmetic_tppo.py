"""T-PPO (PPO with Extended GAE over generation windows) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_tppo.py --workdir /tmp/polrl/arithmetic_tppo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_tppo.py:smoke --workdir /tmp/polrl/tppo_smoke

Recipe: exactly arithmetic_ppo (the arithmetic_grpo warm start and prompts, value head, clip
0.2 with dual clip 3, clipped value loss, k3 KL β = 0.01, 2 epochs × 2 minibatches, lr 3e-4)
with T-PPO's advantages: windows of 2 tokens (answers are 2–3 tokens with the EOS, so the
two-digit answers span two windows and their first window bootstraps from the value head),
policy GAE λ = 0.95 within a window, Monte-Carlo value targets (λ_v = 1), and advantages NOT
whitened: until the zero-initialised value head has learnt, the digits of a two-digit answer
get advantages near 0 (their window ends before the reward), and whitening shifts all of them
negative by the batch mean, and a trial with whitening collapsed within 1000 steps.

<!-- report: arithmetic.tppo -->
Expected result (benchmarks/algorithms.py: 600 steps of this config from the shared SFT warm start
of each seed, 3 seeds (0, 1, 2), held-out greedy exact match on 500 test prompts, mean ± std over
seeds; measured with one XLA device before the rollout engine replaced the fixed sampler (CPU
unrecorded; raw: benchmarks/results/algorithms.jsonl)): 32.1 ± 3.8% → 24.8 ± 5.8% (GRPO at the same
budget: 56.6 ± 3.6%).
<!-- /report -->

With 2–3-token answers a 2-token window mostly removes the reward from the digits' advantages; T-PPO
is meant for long responses: ``experiments/chain_long_tppo.py`` runs it on partial rollouts of the
long chain task.
"""
import ml_collections

from experiments import arithmetic_ppo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_ppo.get_config(arg)
    c.algorithm = "tppo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(c.algorithm_kwargs, window=2, lambda_=0.95, value_lambda=1.0, whiten=False))
    return c

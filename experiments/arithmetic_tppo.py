"""T-PPO (PPO with Extended GAE over generation windows) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_tppo.py --workdir /tmp/polrl/arithmetic_tppo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_tppo.py:smoke --workdir /tmp/polrl/tppo_smoke

Recipe: exactly arithmetic_ppo (the arithmetic_grpo warm start and prompts, value head, clip
0.2 with dual clip 3, clipped value loss, k3 KL β = 0.01, 2 epochs × 2 minibatches, lr 3e-4)
with T-PPO's advantages: windows of 2 tokens (answers are 2–3 tokens with the EOS, so the
two-digit answers span two windows and their first window bootstraps from the value head),
policy GAE λ = 0.95 within a window, Monte-Carlo value targets (λ_v = 1).

Expected result (2-core CPU, seed 0, held-out greedy exact match): not yet measured.
"""
import ml_collections

from experiments import arithmetic_ppo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_ppo.get_config(arg)
    c.algorithm = "tppo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(c.algorithm_kwargs, window=2, lambda_=0.95, value_lambda=1.0))
    return c

"""ReMax (greedy-response reward as the baseline) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_remax.py --workdir /tmp/polrl/arithmetic_remax
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_remax.py:smoke --workdir /tmp/polrl/remax_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4, one update per batch). One extra greedy rollout per prompt gives the
baseline b = r(greedy answer); A_i = r_i − b, REINFORCE on the sequence log-probability
(seq_mean_token_sum), no KL.

Expected result (2-core AMD EPYC CPU, the launcher's default of one XLA device per core, seed 0
only; held-out greedy exact match on 500 test prompts; raw result in
benchmarks/results/arithmetic.jsonl, from `python benchmarks/algorithms.py --nouns remax --seeds 0
--steps 3000 --results benchmarks/results/arithmetic.jsonl`): 28.6% after the SFT warm start →
73.2% after 3000 ReMax steps (GRPO from the same warm start: 75.0%).
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "remax"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4))
    return c

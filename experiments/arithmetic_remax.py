"""ReMax (greedy-response reward as the baseline) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_remax.py --workdir /tmp/polrl/arithmetic_remax
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_remax.py:smoke --workdir /tmp/polrl/remax_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4, one update per batch). One extra greedy rollout per prompt gives the
baseline b = r(greedy answer); A_i = r_i − b, REINFORCE on the sequence log-probability
(seq_mean_token_sum), no KL.

<!-- report: arithmetic.remax -->
Expected result (benchmarks/algorithms.py: 600 steps of this config from the shared SFT warm start
of each seed, 3 seeds (0, 1, 2), held-out greedy exact match on 500 test prompts, mean ± std over
seeds; measured with one XLA device before the rollout engine replaced the fixed sampler (CPU
unrecorded; raw: benchmarks/results/algorithms.jsonl)): 32.1 ± 3.8% → 64.3 ± 7.6% (GRPO at the same
budget: 56.6 ± 3.6%).

Full run (the launcher's default of one XLA device per core, 3000 steps, seed 0 only, CPU AMD EPYC;
raw: benchmarks/results/arithmetic.jsonl, from `python benchmarks/algorithms.py --nouns remax
--steps 3000 --results benchmarks/results/arithmetic.jsonl`): seed 0: 28.6% → 73.2% (GRPO from the
same warm start: 75.0%).
<!-- /report -->
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "remax"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4))
    return c

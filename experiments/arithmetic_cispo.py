"""CISPO (clipped, stop-gradient IS weight × A·log π) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_cispo.py --workdir /tmp/polrl/arithmetic_cispo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_cispo.py:smoke --workdir /tmp/polrl/cispo_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4). GRPO advantage, weight sg(min(ρ, 1.2)) with no lower bound,
token-mean loss, no KL; each rollout batch is split into 2 minibatches so the weight acts on the
second, off-policy step.

<!-- report: arithmetic.cispo -->
Expected result (benchmarks/algorithms.py: 600 steps of this config from the shared SFT warm start
of each seed, 3 seeds (0, 1, 2), held-out greedy exact match on 500 test prompts, mean ± std over
seeds; measured with one XLA device before the rollout engine replaced the fixed sampler (CPU
unrecorded; raw: benchmarks/results/algorithms.jsonl)): 32.1 ± 3.8% → 61.3 ± 6.2% (GRPO at the same
budget: 56.6 ± 3.6%).
<!-- /report -->

On 2–3-token answers the ratios stay close to 1 and the truncation barely acts (``clip_frac``).
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "cispo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, num_minibatches=2))
    return c

"""REC-OneSide-NoIS (REINFORCE with a one-sided ratio mask, several updates per batch) on
embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_rec.py --workdir /tmp/polrl/arithmetic_rec
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_rec.py:smoke --workdir /tmp/polrl/rec_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step). A = r − mean_g r; 4 minibatches per batch (so π_θ drifts from π_old = the rollout
policy and the mask acts), lr 1e-4; tokens whose detached ratio left the one-sided range
(A ≥ 0 and ρ > 1.2, or A ≤ 0 and ρ < 0.8) are dropped from the REINFORCE term; no KL;
``token_mean``.

<!-- report: arithmetic.rec -->
Expected result (benchmarks/algorithms.py: 600 steps of this config from the shared SFT warm start
of each seed, 3 seeds (0, 1, 2), held-out greedy exact match on 500 test prompts, mean ± std over
seeds; measured with one XLA device before the rollout engine replaced the fixed sampler (CPU
unrecorded; raw: benchmarks/results/algorithms.jsonl)): 32.1 ± 3.8% → 60.3 ± 6.5% (GRPO at the same
budget: 56.6 ± 3.6%).
<!-- /report -->

On 2–3-token answers the ratios stay close to 1 and the mask barely acts.
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "rec"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(
        learning_rate=1e-4, clip_mode="one_side", weight="none", eps_low=0.2, eps_high=0.2, num_minibatches=4,
    ))
    return c

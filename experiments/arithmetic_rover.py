"""ROVER (regression of Q = ρ(log π_θ − log π_old) onto A + the next state's uniform-policy value) on
embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_rover.py --workdir /tmp/polrl/arithmetic_rover
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_rover.py:smoke --workdir /tmp/polrl/rover_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, lr 3e-4). The rest is the ``rover`` noun's defaults, the authors' recipe: GRPO advantage
broadcast to every token; ρ = 1; target A + ρ·(m_θ − m_old)(s_{t+1}) with next_q_scale 1; four
gradient steps per rollout batch (one epoch of four minibatches of 8 whole groups: the recipe's
128 prompts per batch in minibatches of 32), π_old's log-probs and vocabulary-mean log-probs
recomputed once per batch; no KL, no entropy; ``token_mean``; gradient clipping at 1. Rollouts
at temperature 1 (the Math recipe samples at 0.6). ``--config.algorithm_kwargs.num_minibatches=1``
is the single-update form (q = 0, next-state term 0: the step is −2ρ·A·∇log π, a REINFORCE step).

<!-- report: catalogue.rover -->
Expected result (benchmarks/catalogue.md, written by `python benchmarks/algorithms.py --results
benchmarks/results/catalogue.jsonl`: 600 steps of this config from the shared SFT warm start of each
seed, 3 seeds (0, 1, 2), the launcher's default of one XLA device per core, CPU AMD EPYC; held-out
greedy exact match on 500 test prompts, mean ± std over seeds): 30.9 ± 3.9% → 61.7 ± 2.6% (GRPO in
the same benchmark: 60.7 ± 3.6%; paired by seed, ahead of it on 2 of 3).
<!-- /report -->

The single-update form, measured before the four-step recipe became the default:

<!-- report: arithmetic.rover -->
Expected result (benchmarks/algorithms.py: 600 steps of this config from the shared SFT warm start
of each seed, 3 seeds (0, 1, 2), held-out greedy exact match on 500 test prompts, mean ± std over
seeds; measured with one XLA device before the rollout engine replaced the fixed sampler (CPU
unrecorded; raw: benchmarks/results/algorithms.jsonl)): 32.1 ± 3.8% → 62.0 ± 0.9% (GRPO at the same
budget: 56.6 ± 3.6%).
<!-- /report -->
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "rover"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, rho=1.0))
    return c

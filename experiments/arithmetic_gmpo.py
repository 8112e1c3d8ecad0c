"""GMPO (geometric mean of the token ratios per sequence) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_gmpo.py --workdir /tmp/polrl/arithmetic_gmpo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_gmpo.py:smoke --workdir /tmp/polrl/gmpo_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4). GRPO advantage, per-sequence loss −A·exp(mean_t clipped log ρ_t) with
the sign-aware token clip in log space (e^−0.4, e^0.4), mean over sequences, no KL; each rollout
batch is split into 2 minibatches so the clip can act on the second, off-policy step.

<!-- report: catalogue.gmpo -->
Expected result (benchmarks/catalogue.md, written by `python benchmarks/algorithms.py --results
benchmarks/results/catalogue.jsonl`: 600 steps of this config from the shared SFT warm start of each
seed, 3 seeds (0, 1, 2), the launcher's default of one XLA device per core, CPU AMD EPYC; held-out
greedy exact match on 500 test prompts, mean ± std over seeds): 30.9 ± 3.9% → 59.8 ± 2.4% (GRPO in
the same benchmark: 60.7 ± 3.6%; paired by seed, ahead of it on 1 of 3).
<!-- /report -->

What the run logs to watch: ``clip_frac`` (valid tokens whose log-ratio was clipped), ``seq_ratio_mean`` /
``seq_ratio_max`` (the geometric-mean ratios) and the held-out greedy exact match
(``eval/accuracy``) every 100 steps.
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "gmpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, num_minibatches=2))
    return c

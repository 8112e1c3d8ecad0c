"""KL-Cov (a |log π − log π_old| penalty on the top-covariance tokens) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_kl_cov.py --workdir /tmp/polrl/arithmetic_kl_cov
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_kl_cov.py:smoke --workdir /tmp/polrl/kl_cov_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4). GRPO advantage, the unclipped surrogate −A·ρ, a penalty β·|log ρ| with β
= 0.1 on the max(⌊2e-4 · tokens⌋, 1) = 1 token of highest covariance per minibatch (verl's
defaults), token-mean loss, no KL to the reference; each rollout batch is split into 2 minibatches
so the penalty acts on the second, off-policy step (at ρ = 1 it is 0 with gradient 0).

<!-- report: catalogue.kl_cov -->
Expected result (benchmarks/catalogue.md, written by `python benchmarks/algorithms.py --results
benchmarks/results/catalogue.jsonl`: 600 steps of this config from the shared SFT warm start of each
seed, 3 seeds (0, 1, 2), the launcher's default of one XLA device per core, CPU AMD EPYC; held-out
greedy exact match on 500 test prompts, mean ± std over seeds): 30.9 ± 3.9% → 58.7 ± 5.9% (GRPO in
the same benchmark: 60.7 ± 3.6%; paired by seed, ahead of it on 1 of 3).
<!-- /report -->

What the run logs to watch: ``kl_cov_frac`` (the fraction of valid tokens penalized), ``kl_abs_mean`` (mean |log ρ|, how
far the second minibatch's policy has moved), ``ratio_max`` (nothing clips the ratio here),
``entropy`` and the held-out greedy exact match (``eval/accuracy``) every 100 steps.
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "kl_cov"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, num_minibatches=2))
    return c

"""Clip-Cov (a random few high-covariance tokens leave PPO's loss) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_clip_cov.py --workdir /tmp/polrl/arithmetic_clip_cov
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_clip_cov.py:smoke --workdir /tmp/polrl/clip_cov_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4). GRPO advantage, PPO clip ε = 0.2, Clip-Cov with verl's defaults
(clip_cov_ratio 2e-4, covariance window (1, 5)), token-mean loss, no KL; each rollout batch is split
into 2 minibatches, as the arithmetic CISPO/GSPO runs. With a few hundred response tokens per
minibatch the budget ⌊2e-4 · tokens⌋ is below 1, so at most one token per minibatch is detached.

<!-- report: catalogue.clip_cov -->
Expected result (benchmarks/catalogue.md, written by `python benchmarks/algorithms.py --results
benchmarks/results/catalogue.jsonl`: 600 steps of this config from the shared SFT warm start of each
seed, 3 seeds (0, 1, 2), the launcher's default of one XLA device per core, CPU AMD EPYC; held-out
greedy exact match on 500 test prompts, mean ± std over seeds): 30.9 ± 3.9% → 62.5 ± 3.6% (GRPO in
the same benchmark: 60.7 ± 3.6%; paired by seed, ahead of it on 2 of 3).
<!-- /report -->

What the run logs to watch: ``cov_clip_frac`` (the fraction of valid tokens whose gradient Clip-Cov removed: at most one
per minibatch here, 0 when no token's covariance lies in (1, 5)), PPO's ``clip_frac``, ``entropy``
(the quantity the method protects) and the held-out greedy exact match (``eval/accuracy``) every 100
steps.
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "clip_cov"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, num_minibatches=2))
    return c

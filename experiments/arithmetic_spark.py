"""SPARK (GRPO + the same model trained as a judge of its own samples) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_spark.py --workdir /tmp/polrl/arithmetic_spark
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_spark.py:smoke --workdir /tmp/polrl/spark_smoke

Recipe: experiments/arithmetic_grpo.py's task, model, SFT warm start, prompts (32 prompts × 8
samples per step) and GRPO settings (lr 3e-4, k3 KL β = 0.01 to the warm start, zero-variance
groups of the policy's rows masked, one update per batch). Each step also recycles its groups into
one judge row per prompt ("3+5+9=17 ok?" → "y"/"n", or "3+5+9= a:17 b:16 ?" → "a"/"b" for a
group with a right and a wrong sample) and one reflection row per prompt with a wrong sample
("3+5+9=16 fix:" → the labelled answer), trained by cross-entropy with weight λ = 1 beside the
GRPO loss (``polrl.algorithms.spark``). The reflection rows use the training prompts' labels, a
supervision GRPO does not get; ``reflection=False`` leaves them out.

Expected result: benchmarks/guided_spark.py runs this config and arithmetic_grpo.py from the same
warm start and budget and records both arms' held-out accuracy, the judge's held-out agreement
with the verifier and its pair ranking (raw: benchmarks/results/guided_spark.jsonl).
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "spark"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(
        learning_rate=3e-4, kl_coef=0.01, filter_zero_variance=True, judge_coef=1.0, pairwise_prob=0.7, reflection=True,
    ))
    return c

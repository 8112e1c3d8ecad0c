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

<!-- report: guided.spark -->
Expected result (benchmarks/guided.md, from `python benchmarks/guided_spark.py`; raw:
benchmarks/results/guided_spark.jsonl; CPU AMD EPYC; 300 steps of this config and of
arithmetic_grpo.py from each seed's SFT warm start, 3 seeds (0, 1, 2); held-out greedy exact match
on 500 prompts, each run's mean of its last 3 evaluations, mean ± std): GRPO 53.7 ± 4.3% → SPARK
61.4 ± 8.0% (paired differences +5.7, +11.9, +5.5 points). Without the reflection rows it is 51.5 ±
10.0% (paired differences with GRPO -9.3, +3.1, -0.4 points). The judge, on its own samples of 200
held-out prompts: its verdict P("y") > ½ agrees with the verifier on 63.4 ± 10.5% of them, the best
constant verdict on 62.3 ± 9.4%; it orders a right / wrong pair of one prompt rightly 57.8 ± 5.4% of
the time.
<!-- /report -->

What it shows: the no-reflection arm tells the judge rows' effect from the reflection rows'
labelled answers, a supervision GRPO does not get; the judge's agreement is read against the best
constant verdict, its pair ordering against chance (½).
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

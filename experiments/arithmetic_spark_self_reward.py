"""SPARK's judge used as the reward: SPARK training, then GRPO rewarded by the policy's own verdict.

Launch:
  python -m polrl.launch --config experiments/arithmetic_spark_self_reward.py --workdir /tmp/polrl/spark_self_reward
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_spark_self_reward.py:smoke --workdir /tmp/polrl/spark_sr_smoke

Two phases after the SFT warm start:
  1. ``rl``: experiments/arithmetic_spark.py (GRPO + the step's samples recycled into judge and
     reflection rows for the same model), two thirds of total_steps;
  2. ``self_reward``: GRPO with the same settings (lr 3e-4, k3 KL β = 0.01, now to the phase-1
     policy, zero-variance groups masked), whose reward is no longer the verifier but the policy's
     own judgement of each sample, s = π_θ("y" | x ++ y ++ " ok?") (``reward: "self_judge"``,
     ``polrl.collectors.with_self_judge``); the verifier's reward and the verdict's agreement with
     it are logged beside it (``verifier_reward_mean``, ``self_judge_agreement``).

SPARK (arXiv 2509.22624) trains the judge so that the same model can serve as its own reward
model; this config uses it as one. ``benchmarks/guided_spark.py`` runs it beside the same two
phases with the verifier as phase 2's reward (``spark_then_verifier``).

<!-- report: guided.spark_self_reward -->
Expected result (benchmarks/guided.md, from `python benchmarks/guided_spark.py`; raw:
benchmarks/results/guided_spark.jsonl; CPU AMD EPYC; 300 SPARK steps then 150 GRPO steps from each
seed's SFT warm start, 3 seeds (0, 1, 2); held-out greedy exact match on 500 prompts, each phase's
mean of its last 3 evaluations, mean ± std): after SPARK 61.4 ± 8.0%; after the phase rewarded by
the policy's own verdict 2.7 ± 3.3%, after the same phase rewarded by the verifier 64.6 ± 9.3%
(paired differences -60.3, -68.6, -56.9 points). Over the judged phase the verdict P("y") > ½ agrees
with the verifier on 33.5 ± 21.2% of the samples, whose sampled accuracy is 15.6 ± 3.1% (with the
verifier as the reward: 80.4 ± 1.6%).
<!-- /report -->
"""
import ml_collections

from experiments import arithmetic_spark


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_spark.get_config(arg)
    grpo = ml_collections.ConfigDict(dict(learning_rate=c.algorithm_kwargs.learning_rate,
                                          kl_coef=c.algorithm_kwargs.kl_coef, filter_zero_variance=True))
    total = c.get_ref("total_steps")  # phase lengths follow total_steps (resolved when the spec is built)
    c.phases = [
        ml_collections.ConfigDict(dict(name="rl", steps=total - total // 3)),
        ml_collections.ConfigDict(dict(name="self_reward", steps=total // 3, algorithm="grpo", algorithm_kwargs=grpo,
                                       reward="self_judge")),
    ]
    return c

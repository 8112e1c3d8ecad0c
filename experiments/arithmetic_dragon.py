"""DRAGON on arithmetic: each prompt's 8 samples scored as a set against its labelled answer.

DRAGON ("DRAGON: Distributional Rewards Optimize Diffusion Generative Models", arXiv 2504.15217)
optimizes a reward on sets of samples. Here the set is one prompt's group of on-policy samples and
the exemplar set is the prompt's labelled answer (polrl.collectors.with_distributional_reward,
positive="answer"): the set distance is the kernel MMD² between the group's token one-hot
embeddings and the exemplar's (Gaussian kernel, σ = 1: a sample one digit off the answer still
scores k = e^-1), so a group is rewarded for putting its mass on the right answer and near it, and
the target is the exemplar distribution (a point mass at the right answer) rather than any one
sample's correctness. Each sample's credit is the leave-one-out change of the set distance; the
samples that bring their group nearer the exemplar form the positive set, those that push it away
the negative set, and every positive–negative pair of a group is a DPO pair against the warm start
(polrl.algorithms.dragon).

Launch:
  python -m polrl.launch --config experiments/arithmetic_dragon.py --workdir runs/arithmetic_dragon
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_dragon.py:smoke --workdir /tmp/polrl/dragon_smoke

Recipe: the arithmetic_grpo model and SFT warm start; 600 steps of 32 prompts × 8 on-policy samples
(temperature 1), positive exemplar set = each prompt's labelled answer, no negative set, kernel
bandwidth σ = 1; DPO over every positive × negative pair of a group, β = 0.1, AdamW lr 3e-4.

<!-- report: preference.dragon -->
Expected result (benchmarks/preference.md, written by `python benchmarks/preference.py` from
benchmarks/results/preference.jsonl; CPU AMD EPYC; held-out greedy exact match on 500 prompts, the
mean of a run's last 3 evaluations; every arm of a seed from the same SFT warm start; 600 steps;
mean ± std over 3 seeds (0, 1, 2)): SFT warm start 30.9 ± 3.9% → 58.5 ± 7.8% (DPO on on-policy pairs
ranked by the verifier: 56.0 ± 4.2%); the groups' set distance to the exemplars (MMD²) goes 0.515 ±
0.019 → 0.217 ± 0.020 from the first to the last tenth of the steps.
<!-- /report -->

What it shows: set_distance (the mean over groups of MMD² between the samples and the exemplar, 0
when every sample is the right answer) falling from the warm start's value as training goes on, with
accuracy (the verifier's exact match of the same samples, logged beside it as verifier_reward_mean)
and the held-out greedy exact match of the evaluations.
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.total_steps = 3 if arg == "smoke" else 600
    c.algorithm = "dragon"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(beta=0.1, bandwidth=1.0, positive="answer",
                                                        learning_rate=c.algorithm_kwargs.learning_rate))
    c.collector = "group_samples"
    c.phase_name = "dragon"
    return c

"""NLPO (PPO under a top-p action mask from a delayed copy of the policy) on embedded arithmetic.

NLPO ("Is Reinforcement Learning (Not) for Natural Language Processing? Benchmarks, Baselines, and
Building Blocks for Natural Language Policy Optimization", arXiv 2210.01241): every sampled token
is drawn from the policy renormalised over the top-p nucleus of a mask model, a copy of the policy
refreshed every μ updates, and PPO's ratio, KL and entropy use those masked log-probs
(`polrl.algorithms.nlpo`, `polrl.collectors.masked_groups`).

Launch:
  python -m polrl.launch --config experiments/arithmetic_nlpo.py --workdir /tmp/polrl/arithmetic_nlpo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_nlpo.py:smoke --workdir /tmp/polrl/nlpo_smoke

Recipe: arithmetic_ppo.py (the arithmetic_grpo warm start and prompts, 32 × 8 samples per step,
value head, GAE γ = 1 λ = 0.95, whitening, clip 0.2 with dual clip 3, clipped value loss, k3 KL
β = 0.01 in the loss, 2 epochs × 2 minibatches) with the collector `masked_groups`: top_mask
p = 0.9 and μ = 5 (the paper's IMDB values), min_tokens_to_keep = 1 (INFERRED: the paper's 100 of
GPT-2's 50 257 tokens, in proportion, is less than one token of the 64-entry character
vocabulary). The KL stays where arithmetic_ppo puts it (the paper's IMDB recipe puts β = 0.1,
adaptive, in the reward), so the run differs from arithmetic_ppo.py only by the mask. Held-out
evaluation decodes the policy without the mask (`polrl.collectors.action_mask`).

<!-- report: guided.nlpo -->
Expected result (benchmarks/guided.md, from `python benchmarks/guided_nlpo.py --steps 600`; raw:
benchmarks/results/guided_nlpo.jsonl; CPU AMD EPYC; 600 steps of this config and of
arithmetic_ppo.py from each seed's SFT warm start, 3 seeds (0, 1, 2); held-out greedy exact match of
the unmasked policy on 500 prompts, each run's mean of its last 3 evaluations): warm start 30.9 ±
3.9% → NLPO 58.9 ± 6.5%, PPO 61.2 ± 1.3% (paired differences -6.3, +3.6, -4.3 points). The mask
keeps 1.93 ± 0.03 tokens holding 98.2 ± 0.1% of the policy's mass; the policy's most likely token is
masked at 0.3 ± 0.1% of the positions.
<!-- /report -->
"""
import ml_collections

from experiments import arithmetic_ppo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_ppo.get_config(arg)
    c.algorithm = "nlpo"
    c.collector = "masked_groups"
    c.collector_kwargs = ml_collections.ConfigDict(dict(top_mask=0.9, min_tokens_to_keep=1, update_every=5))
    if arg == "smoke":
        c.collector_kwargs.update(top_mask=0.6, update_every=2)
    return c

"""DRAGON on a masked-diffusion language model: arithmetic from an SFT warm start.

Paper: "DRAGON: Distributional Rewards Optimize Diffusion Generative Models" (arXiv 2504.15217);
likelihoods: the ELBO on shared masks ("LLaDA 1.5: Variance-Reduced Preference Optimization for
Large Language Diffusion Models", arXiv 2505.19223); model: "Large Language Diffusion Models"
(LLaDA, arXiv 2502.09992).

Task and model: experiments/arithmetic_bgpo.py's (sums of three one-digit numbers, 3-token
responses, 2-layer bidirectional transformer, the same SFT warm start on 300 labelled rows).
Recipe (``polrl.diffusion.train``, ``objective = "dragon"``, ``polrl.diffusion.preference``): each RL
step draws 8 samples (3 unmasking steps, temperature 1) for each of 16 train prompts; each group
is scored as a set against the exemplar set {labelled answer} (one-hot embedding, Gaussian kernel
σ = 1, biased MMD², leave-one-out credit); every positive-credit sample is paired with every
negative-credit one of its group as a DPO pair (β = 0.1), log-ratios from K = 8 ELBO masks shared
by π_θ and the reference (the RL phase's starting parameters); one Adam step per batch (300 steps).

Launch (CPU):
  python -m polrl.launch --config experiments/arithmetic_diffusion_dragon.py --workdir runs/diffusion_dragon
Smoke (seconds, run by tests/test_diffusion_preference.py):
  python -m polrl.launch --config experiments/arithmetic_diffusion_dragon.py:smoke --workdir /tmp/polrl/ddragon_smoke

<!-- report: frontier.diffusion_dragon -->
Expected result (benchmarks/frontier.md, from `python benchmarks/frontier_diffusion_preference.py
--steps 60`; raw: benchmarks/results/frontier_diffusion_preference.jsonl; CPU AMD EPYC; 60 RL steps
(this config runs 300) from each seed's SFT warm start, K = 8 masks, 3 seeds (0, 1, 2); held-out
greedy exact match): warm start 26.0 ± 2.6% → DRAGON 30.7 ± 2.5%, BGPO at the same steps 35.0 ± 2.6%
(paired differences -2.0, -1.0, -10.0 points).
<!-- /report -->"""
import ml_collections

from experiments import arithmetic_bgpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_bgpo.get_config(arg)  # the same model, task, warm start and RL budget
    c.objective = "dragon"
    c.beta = 0.1  # DPO's inverse temperature
    c.bandwidth = 1.0  # σ of the Gaussian kernel on one-hot distances
    return c

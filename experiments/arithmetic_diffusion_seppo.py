"""SePPO on a masked-diffusion language model: arithmetic from an SFT warm start.

Paper: "SePPO: Semi-Policy Preference Optimization for Diffusion Alignment" (arXiv 2410.05255);
likelihoods: the ELBO on shared masks ("LLaDA 1.5: Variance-Reduced Preference Optimization for
Large Language Diffusion Models", arXiv 2505.19223); model: "Large Language Diffusion Models"
(LLaDA, arXiv 2502.09992).

Task and model: experiments/arithmetic_bgpo.py's (sums of three one-digit numbers, 3-token
responses, 2-layer bidirectional transformer, the same SFT warm start on 300 labelled rows).
Recipe (``polrl.diffusion.train``, ``objective = "seppo"``, ``polrl.diffusion.preference``): each RL
step takes 16 prompts of the train split; each prompt's labelled answer is the winner against 8
samples (3 unmasking steps, temperature 1) of a member drawn uniformly from a pool of the 4 most
recent snapshots of the policy (one every 25 steps), which is also the pairs' reference; the ELBO
log-ratios use K = 8 masks shared by π_θ, the member and both responses of a pair; DPO loss with
β = 0.1 and SePPO's anchor flip; one Adam step per batch (300 steps).

Launch (CPU):
  python -m polrl.launch --config experiments/arithmetic_diffusion_seppo.py --workdir runs/diffusion_seppo
Smoke (seconds, run by tests/test_diffusion_preference.py):
  python -m polrl.launch --config experiments/arithmetic_diffusion_seppo.py:smoke --workdir /tmp/polrl/dseppo_smoke

<!-- report: frontier.diffusion_seppo -->
Expected result (benchmarks/frontier.md, from `python benchmarks/frontier_diffusion_preference.py
--steps 60`; raw: benchmarks/results/frontier_diffusion_preference.jsonl; CPU AMD EPYC; 60 RL steps
(this config runs 300) from each seed's SFT warm start, K = 8 masks, 3 seeds (0, 1, 2); held-out
greedy exact match): warm start 26.0 ± 2.6% → SePPO 39.7 ± 4.2%, BGPO at the same steps 35.0 ± 2.6%
(paired differences +10.0, +7.0, -3.0 points).
<!-- /report -->"""
import ml_collections

from experiments import arithmetic_bgpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_bgpo.get_config(arg)  # the same model, task, warm start and RL budget
    c.objective = "seppo"
    c.beta = 0.1  # DPO's inverse temperature
    c.flip = True  # SePPO's anchor-based adaptive flipper
    c.pool_size = 2 if arg == "smoke" else 4  # snapshots in the checkpoint pool
    c.refresh_every = 1 if arg == "smoke" else 25  # RL steps between snapshots
    return c

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


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.trainer = "diffusion"  # polrl.diffusion.train runs this config
    c.seed = 0
    c.sft_steps = 150
    c.total_steps = 300  # RL steps
    c.eval_every = 25
    c.checkpoint_every = 50
    c.task = ml_collections.ConfigDict(dict(num_digits=1, num_operands=3, ops="+", num_train=900, num_test=100,
                                            seed=0))
    c.demonstrations = 300  # labelled train rows of the SFT phase
    c.model = ml_collections.ConfigDict(dict(d_model=64, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=192))
    c.prompt_length = 6
    c.response_length = 3
    c.sft_learning_rate = 2e-3
    c.learning_rate = 3e-4
    c.max_grad_norm = 1.0
    c.batch_prompts = 16
    c.group_size = 8
    c.sampler_steps = 3
    c.temperature = 1.0
    c.num_mc = 8
    c.objective = "dragon"
    c.beta = 0.1  # DPO's inverse temperature
    c.bandwidth = 1.0  # σ of the Gaussian kernel on one-hot distances
    c.eval_prompts = 100
    if arg == "smoke":
        c.sft_steps = 2
        c.total_steps = 2
        c.eval_every = 1
        c.checkpoint_every = 1
        c.model.update(d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32)
        c.batch_prompts = 2
        c.group_size = 2
        c.num_mc = 2
        c.task.update(num_train=90, num_test=10)
        c.demonstrations = 16
        c.eval_prompts = 8
    elif arg:
        raise ValueError(f"unknown config arg {arg!r}; use '' or 'smoke'")
    return c

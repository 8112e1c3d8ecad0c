"""BGPO on a masked-diffusion language model: arithmetic from an SFT warm start.

Paper: "Boundary-Guided Policy Optimization for Memory-efficient RL of Diffusion Large Language
Models" (arXiv 2510.11683); model: "Large Language Diffusion Models" (LLaDA, arXiv 2502.09992).

Task: sums of three one-digit numbers ("3+5+9=" → "17"), the in-repo arithmetic generator; 10% of
the problem space is held out as the test split (100 prompts, all evaluated). The response is 3
tokens (answer, EOS, EOS fill).
Recipe (``polrl.diffusion.train``):
  1. SFT warm start: LLaDA's masked-token loss on 300 labelled (prompt, answer) rows;
  2. BGPO on prompts of the whole train split: 16 prompts × 8 responses per step drawn by 3
     unmasking steps at temperature 1, exact-match reward, GRPO group advantages, the linear lower
     bound with K = 8 ELBO masks accumulated one at a time, one Adam step per batch (300 steps).
Model: 2-layer bidirectional transformer, d_model 64, 4 heads / 2 KV heads, MLP 192, the 64-entry
char vocabulary plus a mask id.

Launch (CPU):
  python -m polrl.launch --config experiments/arithmetic_bgpo.py --workdir runs/arithmetic_bgpo
Smoke (seconds, run by tests/test_diffusion.py):
  python -m polrl.launch --config experiments/arithmetic_bgpo.py:smoke --workdir /tmp/polrl/bgpo_smoke

<!-- report: frontier.bgpo -->
Expected result (benchmarks/frontier.md, from `python benchmarks/frontier_bgpo.py`; raw:
benchmarks/results/frontier_bgpo.jsonl; CPU AMD EPYC; K = 8 masks, 3 seeds (0, 1, 2); held-out
greedy exact match): after SFT 26.0 ± 2.6% → after 300 BGPO steps 45.7 ± 9.1% (the non-linear
ELBO-ratio objective: 45.7 ± 9.1%). Temporary memory of one update (XLA's buffer assignment) for K =
1 … 16: BGPO 17.7 … 17.5 MiB, the non-linear objective 17.8 … 284.1 MiB.
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
    c.objective = "bgpo"  # or "elbo_ratio": the non-linear objective BGPO bounds
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

"""GRPO on embedded arithmetic from an SFT warm start (the main job).

Task: sums of three one-digit numbers ("3+5+9=" → "17"), a TFDS dataset generated in-repo; 10%
of the problem space (by a hash of the prompt) is held out as the test split, so every
evaluation is on problems the run never trains on. Recipe:
  1. SFT warm start: 300 labelled demonstrations, 200 steps of batch 64 (≈43 epochs — trained to
     convergence on them; more SFT does not help, see below).
  2. GRPO from prompts only and the exact-match verifier: 3000 steps of 32 prompts × 8 samples,
     lr 3e-4, k3 KL β = 0.01 to the warm start, zero-variance groups masked out, one update per
     batch (π_old = π_θ, no extra forward pass).
Model: 2-layer decoder, d_model 128, 4 heads / 2 KV heads, MLP 384, the 64-entry char vocabulary.

Launch (CPU):
  python -m polrl.launch --config experiments/arithmetic_grpo.py --workdir runs/arithmetic_grpo
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_grpo.py:smoke --workdir /tmp/polrl/smoke

<!-- report: arithmetic.grpo -->
Expected result (benchmarks/algorithms.py: 600 steps of this config from the shared SFT warm start
of each seed, 3 seeds (0, 1, 2), held-out greedy exact match on 500 test prompts, mean ± std over
seeds; measured with one XLA device before the rollout engine replaced the fixed sampler (CPU
unrecorded; raw: benchmarks/results/algorithms.jsonl)): 32.1 ± 3.8% → 56.6 ± 3.6%.

Full run (the launcher's default of one XLA device per core, 3000 steps, 3 seeds (0, 1, 2), CPU AMD
EPYC; raw: benchmarks/results/arithmetic.jsonl, from `python benchmarks/algorithms.py --nouns grpo
--steps 3000 --results benchmarks/results/arithmetic.jsonl`): seed 0: 28.6% → 75.0%, seed 1: 35.4% →
69.4%, seed 2: 28.8% → 69.0%.
<!-- /report -->

The run is deterministic for a given seed, CPU and device count; with one device
(`XLA_FLAGS=--xla_force_host_platform_device_count=1`) the rollout draws a different random stream.
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 3000
    c.eval_every = 100
    c.checkpoint_every = 500
    c.log_every = 1

    c.task = ml_collections.ConfigDict(dict(name="arithmetic", data_dir="", num_digits=1, num_operands=3, ops="+", num_train=5_000, num_test=500, seed=0, reverse_answer=False))
    c.model = ml_collections.ConfigDict(dict(d_model=128, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=384, max_len=64))
    c.demos = ml_collections.ConfigDict(dict(num=300, batch_size=64))
    c.warmup = ml_collections.ConfigDict(dict(steps=200, learning_rate=2e-3))

    c.algorithm = "grpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, kl_coef=0.01, filter_zero_variance=True))
    c.collector = "group_samples"
    c.rollout = ml_collections.ConfigDict(dict(batch_size=256, group_size=8, max_new_tokens=0, temperature=1.0, top_k=0, top_p=1.0))
    c.eval = ml_collections.ConfigDict(dict(num_examples=500, batch_size=256))
    # Data parallel over every device (on a CPU the launcher makes one device per core); e.g.
    # --config.mesh.data=1 runs on one device, --config.mesh.fsdp=-1 shards the weights too.
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1, expert=1))
    c.guards = ml_collections.ConfigDict(dict(max_nonfinite_steps=5))

    if arg == "smoke":
        c.total_steps = 3
        c.eval_every = 2
        c.checkpoint_every = 2
        c.model.update(d_model=32, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=64)
        c.demos.update(num=64, batch_size=16)
        c.warmup.steps = 3
        c.task.update(num_train=500, num_test=100)
        c.rollout.update(batch_size=16, group_size=4)
        c.eval.update(num_examples=32, batch_size=32)
        c.mesh.data = 1  # one device (the test suite runs on 8 fake devices)
    elif arg:
        raise ValueError(f"unknown config arg {arg!r}; use '' or 'smoke'")
    return c

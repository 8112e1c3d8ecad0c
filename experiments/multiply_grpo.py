"""GRPO on multiplication without a tool: the no-tool arm of benchmarks/tools.py.

Task: products of two integers of 1–3 digits each ("37*485=" → "17945", `polrl.tasks.multiplication`),
10% of the problem space held out for test. The model answers in one turn, in its head: it can
memorize one-digit facts and products by 0 or 1, not compute 3-digit products.
Recipe (the same budget as experiments/multiply_flow_grpo.py, the tool arm):
  1. SFT warm start: 1000 labelled demonstrations (the products), 300 steps of batch 64, lr 2e-3.
  2. GRPO from prompts and the exact-match verifier: 600 steps of 32 prompts × 8 samples, lr 3e-4,
     k3 KL β = 0.01 to the warm start, zero-variance groups masked, one update per batch.
Model: 2-layer decoder, d_model 128, 4 heads / 2 KV heads, MLP 384, the 64-entry char vocabulary.

Launch (CPU):
  python -m polrl.launch --config experiments/multiply_grpo.py --workdir runs/multiply_grpo
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/multiply_grpo.py:smoke --workdir /tmp/polrl/smoke

<!-- report: multiply.grpo -->
Expected result (benchmarks/tools.md, written by `python benchmarks/tools.py` from
benchmarks/results/tools.jsonl; CPU AMD EPYC / unrecorded; held-out greedy exact match on 500
problems, mean ± std over 3 seeds (0, 1, 2)): 9.2 ± 1.6% after SFT → 11.6 ± 0.7% after 600 RL steps;
with the tool: 82.3 ± 6.1% → 96.5 ± 3.4%.
<!-- /report -->
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 600
    c.eval_every = 100
    c.checkpoint_every = 200
    c.log_every = 1

    c.task = ml_collections.ConfigDict(dict(name="multiplication", data_dir="", num_digits=3, num_train=20_000,
                                            num_test=500, seed=0, tool_demonstrations=False))
    c.model = ml_collections.ConfigDict(dict(d_model=128, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=384, max_len=64))
    c.demos = ml_collections.ConfigDict(dict(num=1000, batch_size=64))
    c.warmup = ml_collections.ConfigDict(dict(steps=300, learning_rate=2e-3))

    c.algorithm = "grpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, kl_coef=0.01, filter_zero_variance=True))
    c.collector = "group_samples"
    c.rollout = ml_collections.ConfigDict(dict(batch_size=256, group_size=8, max_new_tokens=0, temperature=1.0, top_k=0, top_p=1.0))
    c.eval = ml_collections.ConfigDict(dict(num_examples=500, batch_size=256))
    # Data parallel over every device (on a CPU the launcher makes one device per core).
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

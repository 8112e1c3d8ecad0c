"""GRPO on embedded multi-digit arithmetic, from an SFT warm start (the main job).

Launch (CPU, a few minutes):
  python -m polrl.launch --config experiments/arithmetic_grpo.py --workdir /tmp/polrl/arithmetic_grpo
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_grpo.py:smoke --workdir /tmp/polrl/smoke

Expected result: TBD
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 1000
    c.eval_every = 50
    c.checkpoint_every = 200
    c.log_every = 1

    c.task = ml_collections.ConfigDict(dict(name="arithmetic", data_dir="", num_digits=1, num_operands=3, ops="+", num_train=5_000, num_test=500, seed=0, reverse_answer=False))
    c.model = ml_collections.ConfigDict(dict(d_model=128, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=384, max_len=64))
    c.demos = ml_collections.ConfigDict(dict(num=300, batch_size=64))
    c.warmup = ml_collections.ConfigDict(dict(steps=200, learning_rate=2e-3))

    c.algorithm = "grpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, kl_coef=0.01, filter_zero_variance=True))
    c.batches = "rollouts"
    c.rollout = ml_collections.ConfigDict(dict(batch_size=256, group_size=8, max_new_tokens=0, temperature=1.0, top_k=0, top_p=1.0))
    c.eval = ml_collections.ConfigDict(dict(num_examples=500, batch_size=250))

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
    elif arg:
        raise ValueError(f"unknown config arg {arg!r}; use '' or 'smoke'")
    return c

"""GRPO on the programs task (stack-language programs from input/output examples, rewarded by
running them on hidden unit tests) from an SFT warm start: the baseline of programs_gepo.

Task: a hidden function of x (1–3 binary operators from "+-*" over x and the digits 1–9) shown
on the inputs 0–3 ("0:1,1:3,2:5,3:7="); the answer is a program of the stack language of
``polrl.tasks.program_interpreter`` ("x2*1+"), rewarded 1 iff it crashes on none of the 8 hidden
unit tests (x = −2 … 5) and outputs what the labelled program outputs on each (OORL's binary
unit-test reward, computed on device by the compiled interpreter). The labelled answers are
drawn among several equivalent programs per problem. 10% of the prompts are held out.

Launch (CPU):
  python -m polrl.launch --config experiments/programs_grpo.py --workdir runs/programs_grpo
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/programs_grpo.py:smoke --workdir /tmp/polrl/programs_grpo_smoke

Recipe:
  1. SFT warm start: 8000 labelled demonstrations, 200 steps of batch 64 (1.6 passes), lr 2e-3.
  2. GRPO from prompts only: 16 prompts × 8 samples per step for 200 steps, lr 3e-4, no KL, one
     update per batch, token-mean loss.
Model: 2-layer decoder, d_model 128, 4 heads / 2 KV heads, MLP 384, the 64-entry char vocabulary.

Expected result: not measured by a benchmark yet (no report block). The run logs the held-out
greedy accuracy (all 8 unit tests passed) of the warm start and after GRPO (eval/accuracy), and
the fraction of sampled programs that pass (accuracy) per step.
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 200
    c.eval_every = 50
    c.checkpoint_every = 200
    c.log_every = 1

    c.task = ml_collections.ConfigDict(dict(name="programs", data_dir="", min_ops=1, max_ops=3, ops="+-*",
                                            num_train=20_000, num_test=500, seed=0))
    c.model = ml_collections.ConfigDict(dict(d_model=128, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=384, max_len=64))
    c.demos = ml_collections.ConfigDict(dict(num=8000, batch_size=64))
    c.warmup = ml_collections.ConfigDict(dict(steps=200, learning_rate=2e-3))

    c.algorithm = "grpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, kl_coef=0.0, aggregation="token_mean"))
    c.collector = "group_samples"
    c.rollout = ml_collections.ConfigDict(dict(batch_size=128, group_size=8, max_new_tokens=0, temperature=1.0, top_k=0, top_p=1.0))
    c.eval = ml_collections.ConfigDict(dict(num_examples=500, batch_size=250))

    if arg == "smoke":
        c.total_steps = 3
        c.eval_every = 3
        c.checkpoint_every = 3
        c.model.update(d_model=32, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=64)
        c.task.update(num_train=300, num_test=50)
        c.demos.update(num=32, batch_size=16)
        c.warmup.steps = 2
        c.rollout.update(batch_size=16, group_size=4)
        c.eval.update(num_examples=16, batch_size=16)
    elif arg:
        raise ValueError(f"unknown config arg {arg!r}; use '' or 'smoke'")
    return c

"""GRPO on the programs task (an expression in infix or prefix notation translated into a
stack-language program, rewarded by running it on hidden unit tests) from an SFT warm start: the
baseline of programs_gepo.

Task: an expression of x with 2–4 binary operators from "+-*" over x and the digits 1–9, written
in one of two source languages drawn per problem, infix ("x*2+1=") or prefix ("+*x21="); the
answer is a program of the stack language of ``polrl.tasks.program_interpreter`` ("x2*1+"),
rewarded 1 iff it crashes on none of the 8 hidden unit tests (x = −2 … 5) and outputs what the
labelled (canonical postfix) program outputs on each (OORL's binary unit-test reward, computed on
device by the compiled interpreter; "On-Policy Optimization with Group Equivalent Preference for
Multi-Programming Language Understanding", arXiv 2505.12723). 10% of the expressions are held
out, in both languages at once.

Launch (CPU):
  python -m polrl.launch --config experiments/programs_grpo.py --workdir runs/programs_grpo
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/programs_grpo.py:smoke --workdir /tmp/polrl/programs_grpo_smoke

Recipe:
  1. SFT warm start: 8000 labelled demonstrations, 200 steps of batch 64 (1.6 passes), lr 2e-3,
     sized to stop well short of the task (the expressions with 4 operators and the prefix
     source are the hard part), leaving room for RL.
  2. GRPO from prompts only: 16 prompts × 8 samples per step for 200 steps, lr 3e-4, no KL, one
     update per batch, token-mean loss.
Model: 2-layer decoder, d_model 128, 4 heads / 2 KV heads, MLP 384, the 64-entry char vocabulary.

<!-- report: preference.programs_grpo -->
Expected result (benchmarks/preference.md, written by `python benchmarks/preference.py` from
benchmarks/results/preference.jsonl; CPU AMD EPYC; held-out greedy accuracy (every unit test passed)
on 500 prompts, the mean of a run's last 3 evaluations; both arms of a seed from the same SFT warm
start; 200 RL steps; mean ± std over 3 seeds (0, 1, 2)): SFT warm start 43.8 ± 9.8% → 43.6 ± 11.0%
with GRPO, 51.2 ± 11.1% with GEPO (+7.6 points over GRPO on paired seeds, ahead on 3 of 3 seeds).
<!-- /report -->

The run logs the held-out greedy accuracy (all 8 unit tests passed) of the warm start and every
50 steps (eval/accuracy), and the fraction of sampled programs that pass (accuracy) per step.
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 200
    c.eval_every = 50
    c.checkpoint_every = 200
    c.log_every = 1

    c.task = ml_collections.ConfigDict(dict(name="programs", data_dir="", min_ops=2, max_ops=4, ops="+-*",
                                            source="infix,prefix", num_train=20_000, num_test=500, seed=0))
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

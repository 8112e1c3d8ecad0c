"""GRPO on the chain task (a scratchpad of running sums, then the final answer) from an SFT warm start.

Task: sums of 3–10 one-digit operands ("5+8+3+9=") answered with a scratchpad of running totals,
then "#" and the final value ("5+8=13,13+3=16,16+9=25#25"): 13–74 tokens, the length uniform in
the number of operands; only the final answer is rewarded (``polrl.tasks.chain``). 10% of the
problem space is held out as the test split. Recipe:
  1. SFT warm start: 500 labelled demonstrations, 500 steps of batch 64.
  2. GRPO from prompts only: 16 prompts × 8 samples per step, lr 3e-4, no KL, zero-variance
     groups masked out, one update per batch, token-mean loss (TreePO's aggregation, so that
     experiments/chain_treepo.py differs from this config only in its rollouts and advantage).
Model: 2-layer decoder, d_model 128, 4 heads / 2 KV heads, MLP 384, the 64-entry char vocabulary.

Launch (CPU):
  python -m polrl.launch --config experiments/chain_grpo.py --workdir runs/chain_grpo
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/chain_grpo.py:smoke --workdir /tmp/polrl/chain_smoke

<!-- report: chain.grpo -->
Expected result (benchmarks/treepo.md, written by `python benchmarks/treepo.py` from
benchmarks/results/treepo.jsonl; CPU AMD EPYC / unrecorded; held-out greedy exact match of the final
answer on 500 prompts, each reading the mean of the last 3 evaluations; mean ± std over 3 seeds (0,
1, 2)): SFT warm start 48.5 ± 5.9% → 62.7 ± 11.6% after 400 GRPO steps.
<!-- /report -->
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 400
    c.eval_every = 50
    c.checkpoint_every = 200
    c.log_every = 1

    c.task = ml_collections.ConfigDict(dict(name="chain", data_dir="", min_terms=3, max_terms=10, ops="+", num_train=20_000, num_test=500, seed=0))
    c.model = ml_collections.ConfigDict(dict(d_model=128, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=384, max_len=128))
    c.demos = ml_collections.ConfigDict(dict(num=500, batch_size=64))
    c.warmup = ml_collections.ConfigDict(dict(steps=500, learning_rate=2e-3))

    c.algorithm = "grpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, kl_coef=0.0, filter_zero_variance=True, aggregation="token_mean"))
    c.collector = "group_samples"
    c.rollout = ml_collections.ConfigDict(dict(batch_size=128, group_size=8, max_new_tokens=0, temperature=1.0, top_k=0, top_p=1.0))
    c.eval = ml_collections.ConfigDict(dict(num_examples=500, batch_size=250))

    if arg == "smoke":
        c.total_steps = 2
        c.eval_every = 2
        c.checkpoint_every = 2
        c.model.update(d_model=32, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=64)
        c.task.update(max_terms=5, num_train=300, num_test=50)
        c.demos.update(num=32, batch_size=16)
        c.warmup.steps = 2
        c.rollout.update(batch_size=16, group_size=4)
        c.eval.update(num_examples=16, batch_size=16)
    elif arg:
        raise ValueError(f"unknown config arg {arg!r}; use '' or 'smoke'")
    return c

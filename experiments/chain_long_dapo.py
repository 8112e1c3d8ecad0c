"""DAPO on the long chain task: clip-higher, token-level loss, dynamic sampling, overlong shaping.

The recipe of ``experiments/chain_long_grpo.py`` (same task, model, warm start, lr, β = 0) with
the four changes of "DAPO: An Open-Source LLM Reinforcement Learning System at Scale"
(arXiv 2503.14476): clip ε_low = 0.2 / ε_high = 0.28; the loss is the mean over every token of
the batch (``token_mean``), so a long response weighs in proportion to its length; each step
samples 2× the prompts and keeps the groups whose rewards differ (dynamic sampling, a
``dynamic_sampling`` collector; the extra samples are counted in the compute of
benchmarks/length.md); and a soft overlong penalty over the last 40 tokens of the 160-token budget
(it starts at 120 tokens, beyond the longest right answer, 114). The paper's claim for the
token-level loss: with a per-response mean, long responses' tokens weigh less, so their bad
patterns (repetition, gibberish) are under-penalised and length and entropy grow unhealthily.

Launch (CPU):
  python -m polrl.launch --config experiments/chain_long_dapo.py --workdir runs/chain_long_dapo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/chain_long_dapo.py:smoke --workdir /tmp/polrl/chain_long_dapo_smoke

<!-- report: length.dapo -->
Expected result (benchmarks/length.md, written by `python benchmarks/length.py` from
benchmarks/results/length.jsonl; CPU AMD EPYC; held-out greedy exact match of the final answer on
500 prompts, the mean of a run's last 3 evaluations; every arm of a seed from the same warm start;
200 steps; mean ± std over 5 seeds (0, 1, 2, 3, 4)): 90.2 ± 4.0% at 1.30 ± 0.03× GRPO's counted
compute (GRPO 84.2 ± 9.9%); GRPO with DAPO's token-level loss alone: 88.1 ± 4.6%.
<!-- /report -->
"""
import ml_collections

from experiments import chain_long_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_long_grpo.get_config(arg)
    c.algorithm = "dapo"
    budget = c.rollout.max_new_tokens
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, oversample=2, overlong_max_len=budget, overlong_buffer=40))
    return c

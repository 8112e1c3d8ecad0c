"""SOPHIA on the chain task: GRPO's groups from chain_grpo's SFT warm start, each with semi-off-policy
rows in which a frozen larger teacher writes the scratchpad and the policy writes the final total.

SOPHIA ("Semi-off-Policy Reinforcement Learning for Vision-Language Slow-thinking Reasoning", arXiv
2507.16814): every step the policy samples 8 answers to each of 16 prompts; the teacher writes 2
reasonings per prompt (its sample up to its last "#"), the policy writes 4 final totals after each
(``polrl.collectors.with_borrowed_reasoning``); each row is verified, the teacher's scratchpad is
credited with the mean outcome of its 4 continuations and the policy's total with its own; the
advantage is that reward minus the mean over the prompt's 16 rows, the teacher's tokens weighted by
min(π_old/μ_teacher, 2) (``polrl.algorithms.sophia``). Semi-off-policy rows are marked TEACHER: the
logged ``accuracy`` is the policy's own, ``teacher_accuracy`` / ``sophia/*`` describe the borrowed
reasoning. Held-out prompts are answered by the policy alone.
Recipe:
  1. Teacher: ``large`` = experiments/chain_sft_large.py (chain_grpo's SFT warm start on a 5-layer,
     d_model 256 model).
  2. Student: chain_grpo's model and SFT warm start (500 demonstrations, 500 steps of batch 64).
  3. SOPHIA: 16 prompts × (8 own + 2 × 4 semi-off-policy rows) per step at temperature 1, lr 3e-4
     and token-mean loss (chain_grpo's), PPO's ε = 0.2, C = 2, no KL, one update per batch.
The policy's answer after a reasoning takes prompt + response budget + answer positions (171), so
``model.max_len`` is 176 (RoPE positions only: the parameters and the warm start are chain_grpo's).

Launch (CPU; the teacher first):
  python -m polrl.launch --config experiments/chain_sft_large.py --workdir runs/chain_sft_large
  python -m polrl.launch --config experiments/chain_sophia.py --workdir runs/chain_sophia
Smoke (seconds, run by the test suite; its teacher is the committed smoke checkpoint
experiments/data/arithmetic_cdr_smoke/strong, a tiny model of the same char vocabulary):
  python -m polrl.launch --config experiments/chain_sophia.py:smoke --workdir /tmp/polrl/chain_sophia_smoke

<!-- report: guided.sophia -->
Expected result (benchmarks/guided.md, from `python benchmarks/guided_sophia.py --steps 100
--eval_every 25`; raw: benchmarks/results/guided_sophia.jsonl; CPU AMD EPYC; 100 steps of this
config and of chain_grpo.py from each seed's SFT warm start, 3 seeds (0, 1, 2); held-out greedy
exact match of the final answer on 500 prompts, the policy alone, each run's mean of its last 3
evaluations): large teacher 66.5 ± 12.1%, warm start 48.5 ± 5.9% → SOPHIA 58.5 ± 0.6%, GRPO 50.6 ±
5.2% (paired differences +8.8, +12.1, +2.9 points). Over training 61.2 ± 13.6% of the
semi-off-policy rows (the teacher's scratchpad, the policy's total) were right; the teacher's tokens
had importance weight 0.992 ± 0.002 on average, 0.11 ± 0.04% of them truncated at C = 2.
<!-- /report -->
"""
import pathlib

import ml_collections

from experiments import arithmetic_grpo, chain_grpo, chain_sft_large

SMOKE_TEACHER = pathlib.Path(__file__).resolve().parent / "data" / "arithmetic_cdr_smoke" / "strong"
TEACHER = ("large", "runs/chain_sft_large/checkpoints/sft_warmup")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_grpo.get_config(arg)
    smoke = arg == "smoke"
    if not smoke:
        c.model.max_len = 176
    name, path = TEACHER
    c.algorithm = "sophia"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(
        teacher=name, reasonings=2, continuations=4, learning_rate=3e-4, aggregation="token_mean"))
    c.collector = "group_samples"
    c.models = ml_collections.ConfigDict({name: dict(path=path, model=chain_sft_large.get_config().model.to_dict(),
                                                     value_head=False)})
    if smoke:
        c.algorithm_kwargs.update(reasonings=2, continuations=2)
        model = dict(arithmetic_grpo.get_config("smoke").model.to_dict(), max_len=c.model.max_len)
        c.models[name].update(path=str(SMOKE_TEACHER), model=model)
    return c

"""AMPO on the chain task: GRPO from chain_grpo's SFT warm start whose unsolved prompts get solutions
from a pool of two frozen teachers of different quality, the ones the policy comprehends best.

AMPO ("More Than One Teacher: Adaptive Multi-Guidance Policy Optimization for Diverse
Exploration", arXiv 2510.02227): every step the policy samples 8 answers to each of 16 prompts;
each teacher samples one answer per prompt; for a prompt none of whose 8 samples is right, up to
k = 2 of them are replaced by the right teacher answers ranked by the policy's mean probability of
the labelled final total (the digits after "#") written after the teacher's scratchpad
(``polrl.collectors.with_multi_guidance``). The advantage is r − mean over the mixed group (no std);
the policy's rows take PPO's clip (ε = 0.2, dual clip 10), the teachers' rows −A·π/(π + 0.1)
(``polrl.algorithms.ampo``). Teacher rows are marked TEACHER: the logged ``accuracy`` is the
policy's own, ``teacher_accuracy`` / ``guidance/*`` describe the guidance. Held-out prompts are
answered by the policy alone.
Recipe:
  1. Teachers: ``large`` = experiments/chain_sft_large.py (chain_grpo's SFT warm start on a 5-layer,
     d_model 256 model); ``small`` = chain_grpo's SFT warm start itself (the run below with no GRPO
     step, the same seed as this run, so the student starts equal to it).
  2. Student: chain_grpo's model and SFT warm start (500 demonstrations, 500 steps of batch 64).
  3. AMPO: 16 prompts × 8 samples per step at temperature 1, lr 3e-4 and token-mean loss (chain_grpo's),
     the authors' ε, dual clip, γ and entropy bonus 0.001, no KL, one update per batch.
Scoring a teacher's scratchpad followed by the labelled answer takes up to prompt + response budget +
answer positions (171), so ``model.max_len`` is 176 (RoPE positions only: the parameters and the
warm start are chain_grpo's).

Launch (CPU; the teachers first):
  python -m polrl.launch --config experiments/chain_sft_large.py --workdir runs/chain_sft_large
  python -m polrl.launch --config experiments/chain_grpo.py --config.total_steps=0 --workdir runs/chain_sft
  python -m polrl.launch --config experiments/chain_ampo.py --workdir runs/chain_ampo
Smoke (seconds, run by the test suite; its teachers are the committed smoke checkpoints
experiments/data/arithmetic_cdr_smoke/{strong,weak}, tiny models of the same char vocabulary that
never solve a chain, so the smoke injects their wrong answers, ``wrong_teachers="force"``):
  python -m polrl.launch --config experiments/chain_ampo.py:smoke --workdir /tmp/polrl/chain_ampo_smoke

<!-- report: guided.ampo -->
Expected result (benchmarks/guided.md, from `python benchmarks/guided_ampo.py`; raw:
benchmarks/results/guided_ampo.jsonl; CPU AMD EPYC; 200 steps of this config and of chain_grpo.py
from each seed's SFT warm start, 3 seeds (0, 1, 2); held-out greedy exact match of the final answer
on 500 prompts, the policy alone, each run's mean of its last 3 evaluations): warm start 48.5 ± 5.9%
→ AMPO 62.9 ± 6.4%, GRPO 58.0 ± 7.2% (paired differences +7.1, +8.3, -0.7 points), single-teacher
AMPO 61.4 ± 9.9% (paired differences -0.9, +6.7, -1.2 points). Over training 27.2 ± 5.0% of the
groups had no right sample and 13.8 ± 6.2% were given teacher rows, 66.5 ± 16.1% of them from the
large teacher.
<!-- /report -->
"""
import pathlib

import ml_collections

from experiments import arithmetic_grpo, chain_grpo, chain_sft_large

SMOKE_TEACHERS = pathlib.Path(__file__).resolve().parent / "data" / "arithmetic_cdr_smoke"
TEACHERS = {"large": "runs/chain_sft_large/checkpoints/sft_warmup", "small": "runs/chain_sft/checkpoints/sft_warmup"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_grpo.get_config(arg)
    smoke = arg == "smoke"
    if not smoke:
        c.model.max_len = 176
    c.algorithm = "ampo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(
        teachers=tuple(TEACHERS), k=2, wrong_teachers="drop", learning_rate=3e-4, aggregation="token_mean"))
    c.collector = "group_samples"
    models = {"large": chain_sft_large.get_config().model.to_dict(), "small": chain_grpo.get_config().model.to_dict()}
    c.models = ml_collections.ConfigDict({name: dict(path=path, model=models[name], value_head=False)
                                          for name, path in TEACHERS.items()})
    if smoke:  # its tiny teachers never solve a chain: their wrong answers are injected, so the teacher-row path runs
        c.algorithm_kwargs.wrong_teachers = "force"
        model = dict(arithmetic_grpo.get_config("smoke").model.to_dict(), max_len=c.model.max_len)
        c.models.large.update(path=str(SMOKE_TEACHERS / "strong"), model=model)
        c.models.small.update(path=str(SMOKE_TEACHERS / "weak"), model=dict(model))
    return c

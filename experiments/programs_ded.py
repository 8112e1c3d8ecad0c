"""DED on the programs task: programs_grpo's SFT student distilled on a small verified corpus of
diverse programs from the teacher of a pool that helps it most.

DED ("Beyond Scaling Law: A Data-Efficient Distillation Framework for Reasoning", arXiv
2508.09883), ``polrl.algorithms.ded`` / ``polrl.collectors.with_distilled_corpus``: on each of the
first 4 steps the 32 prompts are split in two halves; each teacher's right answers to the first
half distil a copy of the student (8 Adam steps at lr 1e-3) and the copy's sampled accuracy on the
second half (8 samples per prompt) minus the student's is that teacher's gain; the teacher with the
largest summed gain is kept. Every step it samples 8 programs per prompt, the unit tests keep the
right ones, and up to 4 of them, chosen far apart in token edit distance, are the SFT rows
(token-mean NLL, lr 1e-3). The student never samples during training; held-out prompts are
answered by the student alone.
Recipe:
  1. Teachers: ``large`` = experiments/programs_sft_large.py (4 layers, d_model 256, 16000
     demonstrations, 600 SFT steps); ``small`` = experiments/programs_sft_small.py (the student's
     model, 8000 demonstrations, 600 SFT steps).
  2. Student: programs_grpo's model and SFT warm start (8000 canonical demonstrations, 200 steps).
  3. DED: 32 prompts per step for 200 steps.

Launch (CPU; the teachers first):
  python -m polrl.launch --config experiments/programs_sft_large.py --workdir runs/programs_sft_large
  python -m polrl.launch --config experiments/programs_sft_small.py --workdir runs/programs_sft_small
  python -m polrl.launch --config experiments/programs_ded.py --workdir runs/programs_ded
Smoke (seconds, run by the test suite; its teachers are the committed smoke checkpoints
experiments/data/arithmetic_cdr_smoke/{strong,weak}, tiny models of the same char vocabulary that
never write a right program, so the corpus is empty and the run only exercises the path):
  python -m polrl.launch --config experiments/programs_ded.py:smoke --workdir /tmp/polrl/programs_ded_smoke

<!-- report: guided.ded -->
Expected result (benchmarks/guided.md, from `python benchmarks/guided_ded.py`; raw:
benchmarks/results/guided_ded.jsonl; CPU Intel(R) Xeon(R) Processor; 200 steps of this config from
each seed's SFT warm start, 3 seeds (0, 1, 2); held-out greedy accuracy (every unit test passed) on
500 prompts, the student alone, each run's mean of its last 3 evaluations): warm start 40.5 ± 7.3% →
DED 52.0 ± 12.9%, the large teacher's corpus alone 53.2 ± 10.9% (paired differences +0.6, +0.0, -4.3
points), the small teacher's alone 51.0 ± 14.1% (paired differences +0.0, +0.1, +2.6 points). The
probe chose small (seed 0), large (seed 1), small (seed 2). The chosen teacher's samples were right
66.3 ± 9.5% of the time, with 1.00 ± 0.02 different right programs per prompt.
<!-- /report -->
"""
import pathlib

import ml_collections

from experiments import arithmetic_grpo, programs_grpo, programs_sft_large, programs_sft_small

SMOKE_TEACHERS = pathlib.Path(__file__).resolve().parent / "data" / "arithmetic_cdr_smoke"
TEACHERS = {"large": "runs/programs_sft_large/checkpoints/sft_warmup",
            "small": "runs/programs_sft_small/checkpoints/sft_warmup"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = programs_grpo.get_config(arg)
    smoke = arg == "smoke"
    c.algorithm = "ded"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(
        teachers=tuple(TEACHERS), samples=8, keep=4, select_steps=4, probe_steps=8, probe_lr=1e-3, probe_samples=8,
        learning_rate=1e-3))
    c.rollout.batch_size = 256  # 32 prompts per step (batch_size / group_size)
    models = {"large": programs_sft_large.get_config().model.to_dict(),
              "small": programs_sft_small.get_config().model.to_dict()}
    c.models = ml_collections.ConfigDict({name: dict(path=path, model=models[name], value_head=False)
                                          for name, path in TEACHERS.items()})
    if smoke:
        c.rollout.batch_size = 16
        c.algorithm_kwargs.update(samples=4, keep=2, select_steps=1, probe_steps=1, probe_samples=2)
        model = dict(arithmetic_grpo.get_config("smoke").model.to_dict(), max_len=c.model.max_len)
        c.models.large.update(path=str(SMOKE_TEACHERS / "strong"), model=model)
        c.models.small.update(path=str(SMOKE_TEACHERS / "weak"), model=dict(model))
    return c

"""GKD on the chain task: the chain_grpo student distilled on its own samples from a teacher about ten times
larger, by the generalized Jensen–Shannon divergence of the two models' token distributions.

GKD ("On-Policy Distillation of Language Models: Learning from Self-Generated Mistakes", arXiv
2306.13649): every step the student samples its answers to 16 prompts (8 samples each), the frozen
teacher scores every response token with its full next-token distribution, and the student
minimises JSD(β = 0.5) between the teacher's and its own distribution at each position (mean over
the answer's tokens, then over answers); no verifier reward enters the loss. ``:supervised_kd`` is
the paper's baseline with the same loss on the teacher's samples instead (λ = 0).
Recipe:
  1. Teacher: experiments/chain_sft_large.py (chain_grpo's SFT warm start on a 5-layer, d_model
     256 model), frozen (``config.models.teacher``).
  2. Student: chain_grpo's model and SFT warm start (500 demonstrations, 500 steps of batch 64).
  3. GKD: 16 prompts × 8 student samples per step at temperature 1, β = 0.5, λ = 1, lr 3e-4 (GRPO's
     in chain_grpo), one update per batch.
Models: student 2-layer decoder, d_model 128, 4 heads / 2 KV heads, MLP 384; teacher as
experiments/chain_sft_large.py; the 64-entry char vocabulary for both.

Launch (after the teacher, whose run writes runs/chain_sft_large/checkpoints/sft_warmup):
  python -m polrl.launch --config experiments/chain_sft_large.py --workdir runs/chain_sft_large
  python -m polrl.launch --config experiments/chain_gkd.py --workdir runs/chain_gkd
  python -m polrl.launch --config experiments/chain_gkd.py:supervised_kd --workdir runs/chain_supervised_kd
Smoke (seconds, run by the test suite; its teacher is the committed smoke checkpoint
experiments/data/arithmetic_cdr_smoke/weak, a tiny SFT warm start of experiments/arithmetic_grpo.py:smoke
that shares the char vocabulary):
  python -m polrl.launch --config experiments/chain_gkd.py:smoke --workdir /tmp/polrl/chain_gkd_smoke

<!-- report: guided.gkd -->
Expected result (benchmarks/guided.md, from `python benchmarks/guided_distill.py`; raw:
benchmarks/results/guided_distill.jsonl; CPU AMD EPYC; 200 steps from each seed's chain_grpo SFT
warm start with that seed's chain_sft_large teacher, 3 seeds (0, 1, 2); held-out greedy exact match
of the final answer on 500 prompts, each run's mean of its last 3 evaluations): teacher 66.5 ±
12.1%, student warm start 48.5 ± 5.9% → GKD 69.7 ± 8.9%; supervised KD (the same divergence on the
teacher's samples) 68.9 ± 7.2%; GRPO on the verifier 58.0 ± 7.2%.
<!-- /report -->
"""
import pathlib

import ml_collections

from experiments import arithmetic_grpo, chain_grpo, chain_sft_large

SMOKE_TEACHER = pathlib.Path(__file__).resolve().parent / "data" / "arithmetic_cdr_smoke" / "weak"
ARGS = ("", "smoke", "supervised_kd", "supervised_kd_smoke")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if (arg or "") not in ARGS:
        raise ValueError(f"unknown config arg {arg!r}; use one of {list(ARGS)}")
    smoke = arg in ("smoke", "supervised_kd_smoke")
    c = chain_grpo.get_config("smoke" if smoke else None)
    c.algorithm = "gkd"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(
        beta=0.5, temperature=1.0, student_fraction=1.0, teacher="teacher", learning_rate=3e-4))
    c.collector = "group_samples"
    c.total_steps = 3 if smoke else 400
    c.models = ml_collections.ConfigDict(dict(teacher=dict(
        path="runs/chain_sft_large/checkpoints/sft_warmup",
        model=chain_sft_large.get_config().model.to_dict(), value_head=False)))
    if arg in ("supervised_kd", "supervised_kd_smoke"):
        c.algorithm_kwargs.student_fraction = 0.0
    if smoke:
        c.models.teacher.path = str(SMOKE_TEACHER)
        c.models.teacher.model = dict(arithmetic_grpo.get_config("smoke").model.to_dict(), max_len=c.model.max_len)
    return c

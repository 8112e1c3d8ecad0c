"""DPO from a fixed file of preference pairs (offline data), not from the model's own samples.

The pairs are experiments/data/arithmetic_pairs.jsonl (written by scripts/make_arithmetic_pairs.py):
2000 train-split prompts, chosen = the right answer, rejected = the answer off by 1 to 3. The
collector `offline_pairs` turns each step's pairs into the rows [chosen, rejected, …] in groups of
two, the layout of the sampled pairs of experiments/arithmetic_dpo.py, so the same `dpo` noun
trains on them; the reference is the SFT warm start, as there.

Launch:
  python -m polrl.launch --config experiments/arithmetic_dpo_offline.py --workdir /tmp/polrl/arithmetic_dpo_offline
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_dpo_offline.py:smoke --workdir /tmp/polrl/dpo_offline_smoke

Recipe: the arithmetic_grpo warm start; 32 pairs per step from the file, β = 0.1, lr 3e-4, 600
steps (about ten passes over the file).

<!-- report: preference.dpo_offline -->
Expected result (benchmarks/preference.md, written by `python benchmarks/preference.py` from
benchmarks/results/preference.jsonl; CPU AMD EPYC; held-out greedy exact match on 500 prompts, the
mean of a run's last 3 evaluations; every arm of a seed from the same SFT warm start; 600 steps;
mean ± std over 3 seeds (0, 1, 2)): SFT warm start 30.9 ± 3.9% → 52.9 ± 10.2% on the file's pairs
(DPO on pairs of the warm model's samples: 38.5 ± 4.0%; of the current policy's samples: 56.0 ±
4.2%).
<!-- /report -->

What it shows: offline pairs from a user's file train every pair noun through the ordinary trainer;
the run logs the DPO loss, pref_accuracy (the implicit reward ranks the chosen first) and
pref_margin on the file's pairs, and the held-out greedy accuracy of the task (eval/accuracy) beside
the warm start's.
"""
import pathlib

import ml_collections

from experiments import arithmetic_grpo

PAIRS = pathlib.Path(__file__).resolve().parent / "data" / "arithmetic_pairs.jsonl"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.total_steps = 600
    c.algorithm = "dpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(beta=0.1, learning_rate=c.algorithm_kwargs.learning_rate))
    c.collector = "offline_pairs"
    c.data = "pairs"
    c.pairs = ml_collections.ConfigDict(dict(path=str(PAIRS), batch_size=32))
    c.phase_name = "dpo_offline"
    if arg == "smoke":
        c.total_steps = 3
        c.pairs.batch_size = 8
    return c

"""A Bradley–Terry reward model of a hidden closeness rule, trained on offline pairs.

The pairs are experiments/data/arithmetic_closeness_pairs.jsonl (written by
scripts/make_arithmetic_pairs.py): 3000 train-split prompts, each with two candidate answers
ranked by the hidden rule s(y, t) = 1/(1 + |y − t|) (polrl.tasks.closeness). The `reward_model`
noun trains the SFT warm start's trunk and its scalar value head with −log σ(r(x, y_w) − r(x, y_l))
("Training language models to follow instructions with human feedback", arXiv 2203.02155), r read
at the response's last token (the EOS). The phase's checkpoints (WORKDIR/checkpoints/reward_model)
are the reward model of experiments/arithmetic_rlhf_grpo.py.

Launch:
  python -m polrl.launch --config experiments/arithmetic_reward_model.py --workdir runs/arithmetic_reward_model
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_reward_model.py:smoke --workdir /tmp/polrl/reward_model_smoke
Held-out pair accuracy (500 pairs on test-split prompts, never trained on):
  python scripts/reward_model_accuracy.py --config experiments/arithmetic_reward_model.py \
      --checkpoint runs/arithmetic_reward_model/checkpoints/reward_model \
      --pairs experiments/data/arithmetic_closeness_pairs_test.jsonl

Recipe: the arithmetic_grpo model and SFT warm start (whose value head starts at 0), then 1000
steps of 64 pairs (about 21 passes over the file), AdamW lr 3e-4.

<!-- report: preference.reward_model -->
Expected result (benchmarks/preference.md, written by `python benchmarks/preference.py` from
benchmarks/results/preference.jsonl; CPU AMD EPYC; 1000 steps from each seed's SFT warm start, mean
± std over 3 seeds (0, 1, 2)): pair accuracy 0.988 ± 0.001 on its training pairs at the end and
0.825 ± 0.030 on the 500 held-out pairs (0.5 is chance).
<!-- /report -->

What it shows: the run logs the Bradley–Terry loss and rm_accuracy / rm_margin on each step's
training pairs; the command above measures the pair accuracy on held-out prompts (0.5 is chance).
"""
import pathlib

import ml_collections

from experiments import arithmetic_grpo

DATA = pathlib.Path(__file__).resolve().parent / "data"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.total_steps = 1000
    c.algorithm = "reward_model"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4))
    c.collector = "offline_pairs"
    c.data = "pairs"
    c.pairs = ml_collections.ConfigDict(dict(path=str(DATA / "arithmetic_closeness_pairs.jsonl"), batch_size=64))
    c.phase_name = "reward_model"
    if arg == "smoke":
        c.total_steps = 3
        c.pairs.batch_size = 8
    return c

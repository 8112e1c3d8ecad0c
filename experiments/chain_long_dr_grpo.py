"""Dr.GRPO on the long chain task: GRPO without the std division and the 1/|o_i| length weight.

The recipe of ``experiments/chain_long_grpo.py`` (same task, model, warm start, prompts, lr,
β = 0, clip 0.2) with the two changes of "Understanding R1-Zero-Like Training: A Critical
Perspective" (arXiv 2503.20783): the group advantage is r_i − mean(r) (no std), and the loss sums
each response's tokens and divides by the constant generation budget T_max = 160
(``seq_mean_token_sum_norm``) instead of by the response's own length. The paper's claim: GRPO's
1/|o_i| lets wrong responses grow long (a long wrong answer is penalised less per token), and
Dr.GRPO keeps their length in check at the same accuracy.

Launch (CPU):
  python -m polrl.launch --config experiments/chain_long_dr_grpo.py --workdir runs/chain_long_dr_grpo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/chain_long_dr_grpo.py:smoke --workdir /tmp/polrl/chain_long_dr_grpo_smoke

<!-- report: length.dr_grpo -->
Expected result (benchmarks/length.md, written by `python benchmarks/length.py` from
benchmarks/results/length.jsonl; CPU AMD EPYC; held-out greedy exact match of the final answer on
500 prompts, the mean of a run's last 3 evaluations; every arm of a seed from the same warm start;
200 steps; mean ± std over 5 seeds (0, 1, 2, 3, 4)): 84.9 ± 4.6% (GRPO 84.2 ± 9.9%); its wrong
samples are 67.7 ± 5.8 tokens long over the last quarter of the steps (GRPO's 68.3 ± 2.6).
<!-- /report -->
"""
import ml_collections

from experiments import chain_long_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_long_grpo.get_config(arg)
    c.algorithm = "dr_grpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, max_len=c.rollout.max_new_tokens))
    return c

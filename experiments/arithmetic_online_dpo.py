"""Online DPO: pairs sampled from the current policy, ranked by the arithmetic verifier.

"Preference Fine-Tuning of LLMs Should Leverage Suboptimal, On-Policy Data" (Tajwar et al. 2024,
arXiv 2404.14367) separates what a preference method gains from on-policy sampling (the pairs come
from the policy being trained, so probability mass moves where the policy actually puts it) and
from a negative gradient (a loss that pushes the rejected response down, as DPO's does). This
config is experiments/arithmetic_dpo.py with one change: each step samples G answers per prompt
from the *current* policy (collector `preference_pairs`, policy="current") instead of the frozen
warm model, and pairs the best with the worst; the loss and its reference (the frozen SFT warm
start) are DPO's. The two configs and experiments/arithmetic_dpo_offline.py (a fixed file of
pairs) are the offline → on-policy comparison of benchmarks/preference.md.

Launch:
  python -m polrl.launch --config experiments/arithmetic_online_dpo.py --workdir /tmp/polrl/arithmetic_online_dpo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_online_dpo.py:smoke --workdir /tmp/polrl/online_dpo_smoke

Recipe: the arithmetic_grpo warm start; each step samples 8 answers for each of 32 prompts from
the current policy, pairs the best with the worst (ties ignored); β = 0.1, lr 3e-4, 600 steps.

<!-- report: preference.online_dpo -->
Expected result (benchmarks/preference.md, written by `python benchmarks/preference.py` from
benchmarks/results/preference.jsonl; CPU AMD EPYC; held-out greedy exact match on 500 prompts, the
mean of a run's last 3 evaluations; every arm of a seed from the same SFT warm start; 600 steps;
mean ± std over 3 seeds (0, 1, 2)): SFT warm start 30.9 ± 3.9% → 56.0 ± 4.2% (the same loss on pairs
of the warm model's samples: 38.5 ± 4.0%; on the fixed file of pairs: 52.9 ± 10.2%; GRPO: 58.9 ±
3.2%).
<!-- /report -->

What it shows: the DPO loss, pref_accuracy and pref_margin on the policy's own fresh pairs, and the
held-out greedy accuracy (eval/accuracy) beside the warm start's.
"""
import ml_collections

from experiments import arithmetic_dpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_dpo.get_config(arg)
    c.total_steps = 600 if arg != "smoke" else c.total_steps
    c.collector_kwargs = ml_collections.ConfigDict(dict(policy="current"))
    c.phase_name = "online_dpo"
    return c

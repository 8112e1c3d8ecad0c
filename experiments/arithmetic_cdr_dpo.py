"""CDR: DPO on the warm model's own samples, ranked by a strong-over-weak density ratio, not the verifier.

CDR ("CDR: Customizable Density Ratios of Strong-over-weak LLMs for Preference Annotation",
arXiv 2411.02481) labels preference pairs with r(x, y) = log π_strong(y|x) − log π_weak(y|x)
(`polrl.collectors.with_density_ratio`). Here strong = a policy after GRPO and weak = its SFT warm
start, both from one arithmetic_grpo run; the verifier is never used to label. Each step samples
G answers per prompt from the frozen warm model (the DPO reference), ranks them by r, and pairs
the best with the worst (`preference_pairs` with `scored_by`). The verifier is logged beside the
labels: verifier_reward_mean and accuracy of the samples; pair_agreement — of the pairs r
chooses, the fraction the verifier orders the same way among those it does not tie (pair_untied:
the fraction of prompts whose pair it does not tie); verifier_pair_accuracy — of the verifier's
own pairs (a right and a wrong answer), the fraction r orders the same way (verifier_pairs: the
fraction of prompts with such a pair), the paper's RewardBench measure.

Launch (after training the strong and weak policies with the launch command of
experiments/arithmetic_grpo.py, which writes runs/arithmetic_grpo):
  python -m polrl.launch --config experiments/arithmetic_cdr_dpo.py --workdir runs/arithmetic_cdr_dpo
  (another pair: --config.density_ratio.strong=WORKDIR/checkpoints/rl
   --config.density_ratio.weak=WORKDIR/checkpoints/sft_warmup)
Smoke (run by the test suite; its two policies are the committed checkpoints
experiments/data/arithmetic_cdr_smoke/{strong,weak}, written by scripts/make_cdr_smoke.py):
  python -m polrl.launch --config experiments/arithmetic_cdr_dpo.py:smoke --workdir /tmp/polrl/cdr_smoke

Recipe: experiments/arithmetic_dpo.py's (the arithmetic_grpo SFT warm start; each step 8 samples
for each of 32 prompts from the frozen warm model, best vs worst, ties ignored; β = 0.1, lr 3e-4)
with pairs ranked by the density ratio of runs/arithmetic_grpo's GRPO policy (checkpoints/rl)
over its warm start (checkpoints/sft_warmup), 600 steps. With the same seed the weak model is
this run's own warm start, so r = log π_strong − log π_ref. Unlike the verifier, r also ranks two
wrong answers: a prompt whose samples are all wrong (no pair for verifier-ranked DPO) still gives a
pair, so this run also trains on wrong-over-wrong preferences, which the verifier ties (the pairs
it can judge are the pair_untied fraction).

<!-- report: preference.cdr_dpo -->
Expected result (benchmarks/preference.md, written by `python benchmarks/preference.py` from
benchmarks/results/preference.jsonl; CPU AMD EPYC; held-out greedy exact match on 500 prompts, the
mean of a run's last 3 evaluations; every arm of a seed from the same SFT warm start; 600 steps;
mean ± std over 3 seeds (0, 1, 2); strong = the seed's GRPO run of the same benchmark): SFT warm
start 30.9 ± 3.9% → 32.9 ± 10.4% (DPO on the same samples ranked by the verifier: 38.5 ± 4.0%). Over
the last tenth of the steps the ratio's pairs are ones the verifier does not tie for 19.4 ± 2.5% of
the prompts, and on those it agrees with the verifier 98.2 ± 1.0% of the time: its other pairs rank
two answers the verifier scores alike (both wrong or both right).
<!-- /report -->

What it shows: held-out accuracy after DPO on density-ratio labels, beside pair_agreement and
verifier_pair_accuracy, the quality of those labels against the verifier, step by step.
"""
import pathlib

import ml_collections

from experiments import arithmetic_dpo

SMOKE_POLICIES = pathlib.Path(__file__).resolve().parent / "data" / "arithmetic_cdr_smoke"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_dpo.get_config(arg)
    c.total_steps = 600
    c.density_ratio = ml_collections.ConfigDict(dict(
        strong="runs/arithmetic_grpo/checkpoints/rl", weak="runs/arithmetic_grpo/checkpoints/sft_warmup"))
    c.phase_name = "cdr_dpo"
    if arg == "smoke":
        c.total_steps = 3
        c.density_ratio.update(strong=str(SMOKE_POLICIES / "strong"), weak=str(SMOKE_POLICIES / "weak"))
    return c

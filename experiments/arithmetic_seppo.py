"""SePPO on embedded arithmetic: the labelled answer against a sample of an earlier checkpoint,
with the Anchor-based Adaptive Flipper.

"SePPO: Semi-Policy Preference Optimization for Diffusion Alignment" (Zhang, Lan et al. 2024,
arXiv 2410.05255), on the text policy. No reward model and no preference annotation: each step
draws one checkpoint θ_c uniformly from a pool of the policy's earlier checkpoints
(`checkpoint_pool` collector), samples one answer per prompt from it (y_l) and pairs it with the
prompt's labelled answer (y_w, `answer_ba`); θ_c is also the pair's reference. The `seppo` loss
−log σ(β (r_w − I·r_l)), r = log π_θ − log π_θc, flips y_l's role (I = −1: pushed up like y_w)
when the policy's likelihood of the labelled answer is below the checkpoint's (r_w < 0).

Launch:
  python -m polrl.launch --config experiments/arithmetic_seppo.py --workdir /tmp/polrl/arithmetic_seppo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_seppo.py:smoke --workdir /tmp/polrl/seppo_smoke

Recipe: the arithmetic_grpo warm start (200 SFT steps); 600 SePPO steps, each on 32 prompts (one
pair per prompt: the labelled answer vs one sample at temperature 1 of the chosen checkpoint); a
snapshot of the policy every 50 steps into a pool of 12 (θ_0, θ_50, …, θ_550: in 600 steps the
ring never overwrites, so the draw is uniform over every earlier checkpoint, as in the paper);
β = 0.1, lr 3e-4 (the arithmetic_dpo recipe). The verifier scores the samples for the logs only.

<!-- report: preference.seppo -->
Expected result (benchmarks/preference.md, written by `python benchmarks/preference.py` from
benchmarks/results/preference.jsonl; CPU AMD EPYC; held-out greedy exact match on 500 prompts, the
mean of a run's last 3 evaluations; every arm of a seed from the same SFT warm start; 600 steps;
mean ± std over 3 seeds (0, 1, 2)): SFT warm start 30.9 ± 3.9% → 77.4 ± 4.0% (DPO with the same
labelled answers as winners against the warm model's samples: 52.0 ± 6.6%; GRPO: 58.9 ± 3.2%; SFT on
the same labelled answers: 83.0 ± 4.1%).
<!-- /report -->

What it shows: seppo_flipped (the fraction of pairs whose sample was judged a winner and pushed up),
seppo_anchor (the mean log-ratio of the labelled answer against the chosen checkpoint),
pool_staleness (steps between the chosen checkpoint and the policy), accuracy (the chosen
checkpoint's samples, by the verifier) and the held-out greedy accuracy (eval/accuracy) beside the
warm start's.
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    if arg != "smoke":
        c.total_steps = 600
    c.algorithm = "seppo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(beta=0.1, learning_rate=c.algorithm_kwargs.learning_rate))
    c.collector = "checkpoint_pool"
    # Smoke: a ring of 2 refreshed every step, so its 3 steps overwrite the oldest snapshot.
    pool = dict(pool_size=2, refresh_every=1) if arg == "smoke" else dict(pool_size=12, refresh_every=50)
    c.collector_kwargs = ml_collections.ConfigDict(pool)
    c.phase_name = "seppo"
    return c

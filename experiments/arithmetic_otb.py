"""OTB (per-position baseline weighted by the prefix's gradient energy) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_otb.py --workdir /tmp/polrl/arithmetic_otb
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_otb.py:smoke --workdir /tmp/polrl/otb_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4). A_t = r − B_t with B_t = Σ_g r·W_t / Σ_g W_t, W_t = Σ_{s≤t}(1 − 2π_s +
Σπ²_s) computed from the update's own logits (one update per batch, so they are π_old's), PPO clip ε
= 0.2, token-mean, no KL.

<!-- report: catalogue.otb -->
Expected result (benchmarks/catalogue.md, written by `python benchmarks/algorithms.py --results
benchmarks/results/catalogue.jsonl`: 600 steps of this config from the shared SFT warm start of each
seed, 3 seeds (0, 1, 2), the launcher's default of one XLA device per core, CPU AMD EPYC; held-out
greedy exact match on 500 test prompts, mean ± std over seeds): 30.9 ± 3.9% → 58.3 ± 5.2% (GRPO in
the same benchmark: 60.7 ± 3.6%; paired by seed, ahead of it on 1 of 3).
<!-- /report -->

What the run logs to watch: ``otb_energy_mean`` (mean logit-gradient energy 1 − 2π + Σπ² per token: it falls as the
policy becomes confident), ``otb_adv_abs_mean`` (mean |A_t|) and the held-out greedy exact match
(``eval/accuracy``) every 100 steps.
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "otb"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4))
    return c

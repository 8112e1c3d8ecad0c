"""Lp-Reg (GRPO whose rarest negative-advantage tokens are pulled toward a min-p proxy) on
embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_lp_reg.py --workdir /tmp/polrl/arithmetic_lp_reg
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_lp_reg.py:smoke --workdir /tmp/polrl/lp_reg_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, lr 3e-4, one update per batch). GRPO advantage; the lowest-probability 10% of the
negative-advantage tokens that the min-p filter (κ = 0.02, relative) keeps and that the policy
rates below the proxy get −Aρ + β·k3(π‖π_proxy) with β = 1 instead of the clip (clip range
[0, 10]); no reference KL; ``token_mean``. The on-policy recipe's ρ⁻ = 1% is for long
reasoning traces: here a batch holds ~700 response tokens (256 rows × ~2.7), so 1% of the
negative-advantage ones is at most a couple of tokens, and those rarest tokens were always noise
that the filter removes, so with ρ⁻ = 1% no token is regularized (GRPO without KL); with
ρ⁻ = 10% the regularizer acts on a small fraction of the tokens (``lp_reg_frac``).

<!-- report: arithmetic.lp_reg -->
Expected result (benchmarks/algorithms.py: 600 steps of this config from the shared SFT warm start
of each seed, 3 seeds (0, 1, 2), held-out greedy exact match on 500 test prompts, mean ± std over
seeds; measured with one XLA device before the rollout engine replaced the fixed sampler (CPU
unrecorded; raw: benchmarks/results/algorithms.jsonl)): 32.1 ± 3.8% → 63.5 ± 5.5% (GRPO at the same
budget: 56.6 ± 3.6%).
<!-- /report -->
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "lp_reg"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, neg_frac=0.1, beta=1.0, min_p=0.02))
    return c

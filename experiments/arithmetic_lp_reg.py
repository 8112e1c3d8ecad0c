"""Lp-Reg (GRPO whose rarest negative-advantage tokens are pulled toward a min-p proxy) on
embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_lp_reg.py --workdir /tmp/polrl/arithmetic_lp_reg
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_lp_reg.py:smoke --workdir /tmp/polrl/lp_reg_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, lr 3e-4, one update per batch). GRPO advantage; the lowest-probability 1% of the
negative-advantage tokens that the min-p filter (κ = 0.02, relative) keeps and that the policy
rates below the proxy get −Aρ + β·k3(π‖π_proxy) with β = 1 instead of the clip (clip range
[0, 10]); no reference KL; ``token_mean`` (the on-policy recipe).

Expected result (2-core CPU, seed 0, held-out greedy exact match): not yet measured.
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "lp_reg"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, neg_frac=0.01, beta=1.0, min_p=0.02))
    return c

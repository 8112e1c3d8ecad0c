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
that the filter removes — measured over 3000 steps, no token was ever regularized (73.6% final, i.e. GRPO without KL); with ρ⁻ = 10% the regularizer
acts in 14% of the steps (0.05% of the tokens on average, up to 1.8% in a step).

Expected result (seed 0, one run; held-out greedy exact match on the 500 test prompts):
  SFT warm start 28.4% → 76.4% after the 3000 Lp-Reg steps (also the best evaluation);
  arithmetic_grpo gives 72.2% from the same warm start. Wall time 739 s on the shared
  2-core CPU machine under heavy load from other jobs (load average ≈ 11).

These figures were measured with one XLA device, the launcher's default until it gave XLA one
host device per core, and before the rollout engine and collectors replaced the fixed sampler;
the default now splits the rollout over every device, which draws a different random stream, so a
rerun gives different figures (`XLA_FLAGS=--xla_force_host_platform_device_count=1` keeps one
device).
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "lp_reg"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, neg_frac=0.1, beta=1.0, min_p=0.02))
    return c

"""OPMD (online policy mirror descent: group-mean REINFORCE / (1 + τ), k2 KL) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_opmd.py --workdir /tmp/polrl/arithmetic_opmd
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_opmd.py:smoke --workdir /tmp/polrl/opmd_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, lr 3e-4, one update per batch). A = r − mean_g r (no std), loss token-mean(−A·log π)/(1 + τ)
with τ = 1, k2 KL to the warm start with β = 0.001 (Trinity's OPMD defaults).

Expected result (seed 0, one run; held-out greedy exact match on the 500 test prompts):
  SFT warm start 28.4% → 76.0% after the 3000 OPMD steps (best evaluation 77.0% at step 2400);
  arithmetic_grpo gives 72.2% from the same warm start. Wall time 1140 s on the shared
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
    c.algorithm = "opmd"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, tau=1.0, kl_coef=0.001, kl_estimator="k2"))
    return c

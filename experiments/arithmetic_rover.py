"""ROVER (regression of Q = ρ(log π_θ − log π_old) onto the advantage) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_rover.py --workdir /tmp/polrl/arithmetic_rover
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_rover.py:smoke --workdir /tmp/polrl/rover_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, lr 3e-4). GRPO advantage broadcast to every token; ρ = 1; one update per batch (the Math
recipe's single PPO epoch), where q = 0 and the next-state term vanishes, so the step is
−2ρ·A·∇log π; no KL, no entropy; ``token_mean``. Rollouts at temperature 1 (the recipe samples
at 0.6).

Expected result (seed 0, one run; held-out greedy exact match on the 500 test prompts):
  SFT warm start 28.4% → 78.0% after the 3000 ROVER steps (best evaluation 80.2% at step 2600);
  arithmetic_grpo gives 72.2% from the same warm start. Wall time 764 s on the shared
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
    c.algorithm = "rover"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, rho=1.0))
    return c

"""PPO (value head, GAE, clipped value loss) on embedded arithmetic, from the same SFT warm start.

Launch:
  python -m polrl.launch --config experiments/arithmetic_ppo.py --workdir /tmp/polrl/arithmetic_ppo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_ppo.py:smoke --workdir /tmp/polrl/ppo_smoke

Recipe: the arithmetic_grpo warm start and prompts (32 × 8 samples per step, 3000 steps), then
PPO with a value head (zero-initialized on the warm model), token-level GAE (γ = 1, λ = 0.95) of
the sequence reward, whitened advantages, clip 0.2 with dual clip 3, clipped value loss, k3 KL
β = 0.01, 2 epochs × 2 minibatches per batch (π_old recomputed once per batch).

Expected result (2-core CPU, seed 0, held-out greedy exact match): 28.4% after the SFT warm
start → 70.6% after 3000 PPO steps (GRPO from the same start: 72.2%).

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
    c.algorithm = "ppo"
    c.algorithm_kwargs = ml_collections.ConfigDict(
        dict(learning_rate=c.algorithm_kwargs.learning_rate, num_epochs=2, num_minibatches=2, kl_coef=0.01)
    )
    return c

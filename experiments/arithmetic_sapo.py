"""SAPO (soft, sign-dependent gate instead of a hard clip) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_sapo.py --workdir /tmp/polrl/arithmetic_sapo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_sapo.py:smoke --workdir /tmp/polrl/sapo_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4). GRPO advantage, gate (4/τ)σ(τ(ρ − 1)) with τ_pos = 1, τ_neg = 1.05,
seq_mean_token_mean, no KL; each rollout batch is split into 2 minibatches so the gate acts on
the second, off-policy step.

Expected result (2-core CPU, seed 0, held-out greedy exact match on 500 test prompts, one run):
28.4% after the SFT warm start → 75.2% after 3000 SAPO steps (best evaluation 77.2%; GRPO from the
same start: 72.2%). Wall time 343 s for the whole run on the 2-core machine shared with other jobs
(load average between 4 and 13 during these runs), so not a speed figure. The gate stays almost open
(mean gradient weight 0.9999, no token below ½): with two minibatches per batch the ratios stay
close to 1.

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
    c.algorithm = "sapo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, num_minibatches=2))
    return c

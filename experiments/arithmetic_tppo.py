"""T-PPO (PPO with Extended GAE over generation windows) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_tppo.py --workdir /tmp/polrl/arithmetic_tppo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_tppo.py:smoke --workdir /tmp/polrl/tppo_smoke

Recipe: exactly arithmetic_ppo (the arithmetic_grpo warm start and prompts, value head, clip
0.2 with dual clip 3, clipped value loss, k3 KL β = 0.01, 2 epochs × 2 minibatches, lr 3e-4)
with T-PPO's advantages: windows of 2 tokens (answers are 2–3 tokens with the EOS, so the
two-digit answers span two windows and their first window bootstraps from the value head),
policy GAE λ = 0.95 within a window, Monte-Carlo value targets (λ_v = 1), and advantages NOT
whitened: until the zero-initialised value head has learnt, the digits of a two-digit answer
get advantages near 0 (their window ends before the reward), and whitening shifts all of them
negative by the batch mean — in a trial with whitening (seed 0) accuracy fell from 28.4% to
about 5% within 1000 steps.

Expected result (seed 0, held-out greedy exact match on the 500 test prompts; measured once on
the shared 2-core CPU machine while other jobs ran, load average 10–17; steps counted with the
200 warm-up steps): SFT warm start 28.4% → 17–19% at steps 400–600 while the value head learns
(the digits' advantages come from it) → 35–41% at steps 1100–1600 → 42.2% after 3000 T-PPO
steps (36–49% over the last 800). PPO from the same start with whole-response GAE: 70.6%.
With 2–3-token answers a 2-token window mostly removes the reward from the digits'
advantages; T-PPO is meant for responses thousands of tokens long. Wall time 35 min under
that load.

These figures were measured with one XLA device, the launcher's default until it gave XLA one
host device per core, and before the rollout engine and collectors replaced the fixed sampler;
the default now splits the rollout over every device, which draws a different random stream, so a
rerun gives different figures (`XLA_FLAGS=--xla_force_host_platform_device_count=1` keeps one
device).
"""
import ml_collections

from experiments import arithmetic_ppo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_ppo.get_config(arg)
    c.algorithm = "tppo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(c.algorithm_kwargs, window=2, lambda_=0.95, value_lambda=1.0, whiten=False))
    return c

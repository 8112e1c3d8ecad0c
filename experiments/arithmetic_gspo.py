"""GSPO (sequence-level clipped ratio) on embedded arithmetic, from the same SFT warm start.

Launch:
  python -m polrl.launch --config experiments/arithmetic_gspo.py --workdir /tmp/polrl/arithmetic_gspo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_gspo.py:smoke --workdir /tmp/polrl/gspo_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4). GRPO advantage, sequence ratio s_i = exp(mean_t log π/π_old) clipped
to [1 − 3e-4, 1 + 4e-4] (the paper's range), seq_mean_token_mean, no KL; each rollout batch is
split into 2 minibatches so the second step is off-policy and the clip acts.

Expected result (2-core CPU, seed 0, held-out greedy exact match on 500 test prompts, one run):
28.4% after the SFT warm start → 79.6% after 3000 GSPO steps (best evaluation 81.2%; GRPO from the
same start: 72.2%). Wall time 677 s for the whole run on the 2-core machine shared with other jobs
(load average between 4 and 13 during these runs), so not a speed figure. Clip fraction 1.1% of
tokens averaged over the run (the second minibatch's sequence ratios leave [1 − 3e-4, 1 + 4e-4]).

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
    c.algorithm = "gspo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, num_minibatches=2))
    return c

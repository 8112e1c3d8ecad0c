"""Dr.GRPO (no-std advantage, constant-normalizer loss) on embedded arithmetic, from the same SFT warm start.

Launch:
  python -m polrl.launch --config experiments/arithmetic_dr_grpo.py --workdir /tmp/polrl/arithmetic_dr_grpo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_dr_grpo.py:smoke --workdir /tmp/polrl/dr_grpo_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4, one update per batch). A = r − mean_g r (no std), PPO clip ε = 0.2,
aggregation seq_mean_token_sum_norm with T_max = 3 (the generation budget: the task's longest
answer, EOS included), no KL (β = 0, the authors' recipe).

Expected result (2-core CPU, seed 0, held-out greedy exact match on 500 test prompts, one run):
28.4% after the SFT warm start → 73.4% after 3000 Dr.GRPO steps (best evaluation 76.8%; GRPO from
the same start: 72.2%). Wall time 745 s for the whole run on the 2-core machine shared with other
jobs (load average between 4 and 13 during these runs), so not a speed figure.

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
    c.algorithm = "dr_grpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, max_len=3))
    c.rollout.max_new_tokens = 3  # = max_len: the constant normalizer is the generation budget
    return c

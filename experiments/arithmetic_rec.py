"""REC-OneSide-NoIS (REINFORCE with a one-sided ratio mask, several updates per batch) on
embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_rec.py --workdir /tmp/polrl/arithmetic_rec
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_rec.py:smoke --workdir /tmp/polrl/rec_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step). A = r − mean_g r; 4 minibatches per batch (so π_θ drifts from π_old = the rollout
policy and the mask acts), lr 1e-4; tokens whose detached ratio left the one-sided range
(A ≥ 0 and ρ > 1.2, or A ≤ 0 and ρ < 0.8) are dropped from the REINFORCE term; no KL;
``token_mean``.

Expected result (seed 0, one run; held-out greedy exact match on the 500 test prompts):
  SFT warm start 28.4% → 67.8% after the 3000 REC steps (best evaluation 73.4% at step 2500);
  arithmetic_grpo gives 72.2% from the same warm start. Wall time 787 s on the shared
  2-core CPU machine under heavy load from other jobs (load average ≈ 11).
  The one-sided mask dropped 0.06% of the tokens on average (at most 1.7% in a step): at lr 1e-4
  the policy rarely leaves the ratio range within one batch's four updates.

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
    c.algorithm = "rec"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(
        learning_rate=1e-4, clip_mode="one_side", weight="none", eps_low=0.2, eps_high=0.2, num_minibatches=4,
    ))
    return c

"""OTR (one-token rollouts: a token-level policy gradient on demonstrations) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_otr.py --workdir /tmp/polrl/arithmetic_otr
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_otr.py:smoke --workdir /tmp/polrl/otr_smoke

Recipe: the arithmetic_grpo task, model and SFT warm start (300 demonstrations, 200 steps), then
3000 OTR steps on the same demonstrations (batches of 64, lr 5e-4): at every answer token 8
candidates are drawn from the policy at temperature 1, rewarded +1 when they equal the
demonstrated token and −0.1 otherwise. (At the warm start's lr 2e-3, seed 0 held 33–35% until
step ~3100 and then destabilised to 10% at step 3200: once the demonstrations are memorised
the gradients are ~1e-4 except for a rare wrong candidate, whose O(β) gradient Adam then
turns into a large step.) The baseline is SFT-only on the same
demonstrations for the same 3200 steps (arithmetic_sft's docstring: 35.8% for seed 0).

Expected result (seed 0, held-out greedy exact match on the 500 test prompts; measured once on
the shared 2-core CPU machine while other jobs ran, load average ~11): SFT warm start 28.4% →
31–34% throughout the OTR phase → 32.2% after 3000 OTR steps, i.e. no gain over SFT-only
(35.8%) on this task: the 300 demonstrations are memorised by the warm start (candidates
match the demonstrated token 95–100% of the time, gradients ~0), so there is little left for
a token-level policy gradient on the same data to do. Wall time 9 min under that load.

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
    c.algorithm = "otr"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(
        learning_rate=5e-4, num_samples=8, sample_temperature=1.0, negative_reward=0.1,
    ))
    c.collector = "demonstrations"
    c.data = "demos"
    c.phase_name = "sft"
    return c

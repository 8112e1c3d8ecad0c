"""GPG (REINFORCE on α-corrected group-relative advantages) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_gpg.py --workdir /tmp/polrl/arithmetic_gpg
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_gpg.py:smoke --workdir /tmp/polrl/gpg_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step, 3000 steps, lr 3e-4). A = α (r − mean_g r) with α = B/(B − M) (M: rows of all-equal groups),
loss −A·log π with no ratio and no clip, token-mean, no KL, one update per batch.

Expected result: not measured yet; no run of this config has been recorded. What the run logs to
watch: ``gpg_alpha`` (α: how much of each batch falls in groups without signal; 1 when every group
has distinct rewards), ``pg`` and the held-out greedy exact match (``eval/accuracy``) every 100
steps.
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "gpg"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4))
    return c

"""MDPO (unclipped surrogate + (1/t_k)·KL(π_θ ‖ π_old), t_k = 1 − k/K) on embedded arithmetic.

Launch:
  python -m polrl.launch --config experiments/arithmetic_mdpo.py --workdir /tmp/polrl/arithmetic_mdpo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_mdpo.py:smoke --workdir /tmp/polrl/mdpo_smoke

Recipe: the arithmetic_grpo task, model, SFT warm start and prompts (32 prompts × 8 samples per
step). GRPO advantage; m = 4 full-batch Adam steps per batch (``num_epochs=4``), lr 1e-4; KL
weight 1/t_k with K = ``total_steps`` (a reference to it, so a shorter ``--config.total_steps``
shortens the schedule too), sampled k3 estimator; no clipping, no reference KL; ``token_mean``.

Expected result (2-core CPU, seed 0, held-out greedy exact match): not yet measured.
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "mdpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(
        learning_rate=1e-4, num_updates=c.get_ref("total_steps"), num_epochs=4, kl_estimator="k3",
    ))
    return c

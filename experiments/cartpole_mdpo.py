"""On-policy MDPO on CartPole-v1: unclipped ratio·A with an exact-KL mirror-descent step.

Launch:
  python -m polrl.launch --config experiments/cartpole_mdpo.py --workdir /tmp/polrl/cartpole_mdpo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/cartpole_mdpo.py:smoke --workdir /tmp/polrl/cartpole_mdpo_smoke

Recipe: the cartpole_ppo environment budget (4 envs × 128 steps, 5e5 steps, γ 0.99, λ 0.95),
then per update m = 10 full-batch Adam steps (3e-4, ε 1e-5, grad-norm 0.5) on
−ρ·Â + (1/t_k)·KL(π_θ ‖ π_k) + value loss, t_k = 1 − k/K (Tomar et al. 2020, arXiv 2005.09814).

<!-- report: control.cartpole_mdpo -->
Expected result (benchmarks/results/control.jsonl, from `python benchmarks/control.py --runs
cartpole_mdpo`: 3 seeds (0, 1, 2) in one vmapped call, 499,712 environment steps, CPU AMD EPYC; mean
± std over seeds of each seed's final return): mean return 500.0 ± 0.0; the seed mean first reaches
475 at 130k steps (PPO, same budget: 143k steps).
<!-- /report -->
"""
import ml_collections

from experiments import cartpole_ppo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = cartpole_ppo.get_config(None)
    c.algorithm = "mdpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(
        learning_rate=3e-4, anneal_lr=False, sgd_steps=10, ent_coef=0.0, vf_coef=0.5, vf_clip=0.2,
        max_grad_norm=0.5, gae_lambda=0.95, kl_estimator="exact",
    ))
    if arg == "smoke":
        c.num_seeds = 2
        c.num_steps = 16
        c.total_timesteps = 2 * 4 * 16
        c.algorithm_kwargs.sgd_steps = 2
    elif arg is not None:
        raise ValueError(f"cartpole_mdpo: unknown arg {arg!r}; use ':smoke' or nothing")
    return c

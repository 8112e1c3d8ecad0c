"""PPO with a diagonal-Gaussian policy (state-independent log-std) on Pendulum-v1.

Launch:
  python -m polrl.launch --config experiments/pendulum_ppo.py --workdir /tmp/polrl/pendulum_ppo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/pendulum_ppo.py:smoke --workdir /tmp/polrl/pendulum_ppo_smoke

Recipe: 16 envs × 128 steps per update, 1e6 environment steps, 10 epochs × 32 minibatches,
Adam 1e-3 linearly annealed, γ 0.95, λ 0.95, clip 0.2, no entropy bonus, value 0.5,
grad-norm 0.5, tanh 64×64; episodes are 200 steps and always end by truncation, so the
V(final obs) bootstrap is what makes the value targets right.

<!-- report: control.pendulum_ppo -->
Expected result (benchmarks/results/control.jsonl, from `python benchmarks/control.py --runs
pendulum_ppo`: 3 seeds (0, 1, 2) in one vmapped call, 999,424 environment steps, CPU AMD EPYC; mean
± std over seeds of each seed's final return): mean episode return -155 ± 22 (-171 at half the
budget; a random policy scores around −1200).
<!-- /report -->
"""
import ml_collections

from experiments import cartpole_ppo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = cartpole_ppo.get_config(None)
    c.env_name = "Pendulum-v1"
    c.num_envs = 16
    c.num_steps = 128
    c.total_timesteps = 1_000_000
    c.gamma = 0.95
    c.algorithm_kwargs.update(dict(learning_rate=1e-3, ent_coef=0.0, num_epochs=10, num_minibatches=32))
    if arg == "smoke":
        c.num_seeds = 2
        c.num_envs = 4
        c.num_steps = 16
        c.total_timesteps = 2 * 4 * 16
        c.algorithm_kwargs.update(dict(num_epochs=1, num_minibatches=2))
    elif arg is not None:
        raise ValueError(f"pendulum_ppo: unknown arg {arg!r}; use ':smoke' or nothing")
    return c

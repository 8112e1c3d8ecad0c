"""ReLIC-style in-context RL: a causal transformer over 64-pull contexts of Bernoulli bandit trials,
trained by PPO with partial updates.

Launch:
  python -m polrl.launch --config experiments/bandit_relic.py --workdir /tmp/polrl/bandit_relic
Smoke (run by tests/test_control_relic.py):
  python -m polrl.launch --config experiments/bandit_relic.py:smoke --workdir /tmp/polrl/bandit_relic_smoke
One full update per context instead of partial updates, for comparison:
  python -m polrl.launch --config experiments/bandit_relic.py:full_only --workdir /tmp/polrl/bandit_relic_full

Task (``polrl.control.relic``): each context is a new 5-armed Bernoulli bandit (arm means
U[0, 1]), 8 episodes of 8 pulls; random play earns 0.5 per pull, the best arm 0.83 on average.

Recipe: 64 contexts in parallel, T = 64 steps per context; 2 layers × d 32 × 2 heads; a PPO
update every 16 steps (U = 4 per context), the loss on the new 16 steps with the forward over
the whole context, every 2nd update full (loss from step 0; F = 2); PPO: 2 epochs × 2
minibatches of whole contexts, Adam 1e-3 annealed, clip 0.2, entropy 0.01, value 0.5,
γ 0.99, λ 0.95 (episode ends cut the returns).

<!-- report: control.bandit_relic -->
Expected result (benchmarks/results/control.jsonl, from `python benchmarks/control.py --runs
bandit_relic`: 3 seeds (0, 1, 2) in one vmapped call, 819,200 environment steps, CPU AMD EPYC; mean
± std over seeds of each seed's final return): mean episode return over the context 5.98 ± 0.12
(random play 4.0, the best arm 6.67); with one full update per context instead (`:full_only`): 5.53
± 0.05.
<!-- /report -->
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.trainer = "control"
    c.run = "relic"  # polrl.control.relic trains this config
    c.seed = 0
    c.num_seeds = 3
    c.algorithm = "relic"
    c.env_name = "BernoulliBandit"
    c.task = ml_collections.ConfigDict(dict(num_arms=5, episode_length=8))
    c.num_envs = 64
    c.num_steps = 64
    c.total_timesteps = 819_200  # 200 contexts per seed
    c.gamma = 0.99
    c.relic = ml_collections.ConfigDict(dict(d_model=32, num_layers=2, num_heads=2, updates_per_rollout=4,
                                             full_updates_per_rollout=2))
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(
        learning_rate=1e-3, anneal_lr=True, clip_eps=0.2, ent_coef=0.01, vf_coef=0.5,
        max_grad_norm=0.5, gae_lambda=0.95, num_epochs=2, num_minibatches=2,
    ))
    if arg == "smoke":
        c.num_seeds = 2
        c.num_envs = 4
        c.num_steps = 16
        c.task.episode_length = 4
        c.total_timesteps = 2 * 4 * 16
        c.relic.update(dict(d_model=8, num_layers=1, num_heads=2))
    elif arg == "full_only":
        c.relic.update(dict(updates_per_rollout=1, full_updates_per_rollout=1))
    elif arg is not None:
        raise ValueError(f"bandit_relic: unknown arg {arg!r}; use ':smoke', ':full_only' or nothing")
    return c

"""MAPPO (centralised critic on the global state) on JaxMARL's MPE simple_spread_v3.

Launch:
  python -m polrl.launch --config experiments/mpe_spread_mappo.py --workdir /tmp/polrl/mpe_spread_mappo
Smoke (run by tests/test_control_marl.py):
  python -m polrl.launch --config experiments/mpe_spread_mappo.py:smoke --workdir /tmp/polrl/mpe_mappo_smoke

Task: 3 agents cover 3 landmarks (``MPE_simple_spread_v3``, 25-step episodes, 5 discrete
actions, reward per agent ½ global coverage + ½ own collisions). Shared actor over each agent's
observation and one-hot id; the critic reads all observations and the agent id
(``polrl.control.marl``); the repo's PPO loop and shared transforms otherwise.

Recipe: 16 parallel environments × 128 steps per update (6144 agent transitions), 1M
environment steps, 4 epochs × 4 minibatches, Adam 2.5e-3 linearly annealed, γ 0.99, λ 0.95,
clip 0.2, entropy 0.01, value 0.5, grad-norm 0.5, tanh 64×64; time-limit ends bootstrapped.

<!-- report: control.mpe_spread_mappo -->
Expected result (benchmarks/results/control.jsonl, from `python benchmarks/control.py --runs
mpe_spread_mappo`: 3 seeds (0, 1, 2) in one vmapped call, 999,424 environment steps, CPU AMD EPYC;
mean ± std over seeds of each seed's final return): mean per-agent episode return -17.51 ± 1.76,
from -27.2 at the first update; -21.4 at 250k steps. IPPO with the same recipe: -18.16 ± 0.96.
<!-- /report -->
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.trainer = "control"
    c.run = "marl"  # polrl.control.marl trains this config
    c.seed = 0
    c.num_seeds = 3
    c.algorithm = "mappo"
    c.env_name = "MPE_simple_spread_v3"
    c.env_params = ml_collections.ConfigDict()
    c.num_envs = 16
    c.num_steps = 128
    c.total_timesteps = 1_000_000
    c.gamma = 0.99
    c.bootstrap_truncation = True
    c.hidden = (64, 64)
    c.activation = "tanh"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(
        learning_rate=2.5e-3, anneal_lr=True, clip_eps=0.2, ent_coef=0.01, vf_coef=0.5,
        max_grad_norm=0.5, gae_lambda=0.95, num_epochs=4, num_minibatches=4,
    ))
    if arg == "smoke":
        c.num_seeds = 2
        c.num_envs = 2
        c.num_steps = 8
        c.total_timesteps = 2 * 2 * 8
        c.algorithm_kwargs.update(dict(num_epochs=1, num_minibatches=2))
    elif arg is not None:
        raise ValueError(f"mpe_spread_mappo: unknown arg {arg!r}; use ':smoke' or nothing")
    return c

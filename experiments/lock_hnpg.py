"""HNPG (hybrid NPG: on-policy NPG + a critic fitted on offline and on-policy data) on HNPG's
continuous combination lock.

Launch:
  python -m polrl.launch --config experiments/lock_hnpg.py --workdir /tmp/polrl/lock_hnpg
Smoke (run by tests/test_control_hnpg.py):
  python -m polrl.launch --config experiments/lock_hnpg.py:smoke --workdir /tmp/polrl/lock_hnpg_smoke
On-policy NPG alone (the reference's HYBRID = False), for comparison:
  python -m polrl.launch --config experiments/lock_hnpg.py:onpolicy --workdir /tmp/polrl/lock_npg

Task: ``polrl.control.combination_lock``, horizon H = 5, K = 10 action coordinates (a digit is
drawn from softmax(u/0.1)), lock seed 0 — the reference's default horizon. A uniformly random
policy opens it with probability 10⁻⁵; an episode pays 1 when it opens, else 0.1 with
probability ½ (the distractor, expected 0.05).

Offline data (``polrl.control.offline_data``, generated once into ``data_dir``): 16 × 1000 steps
= 3200 episodes of HNPG's ε-greedy optimal behaviour with ε = 1/H = 0.2 (mean return 0.40).

Recipe (reference ``trpo.py`` / ``main.py``): 200 on-policy episodes (1000 steps) per update,
200 offline transitions per step h, per-step tanh 16×16 Gaussian policies and tanh 64×64 Q_h,
30 Adam steps (3e-4) of the hybrid critic per h and update, GAE τ = 0.97 with γ = 1, NPG with
10 CG iterations, damping 0.1, max KL 0.01 and a 10-step backtracking line search.

<!-- report: control.lock_hnpg -->
Expected result (benchmarks/results/control.jsonl, from `python benchmarks/control.py --runs
lock_hnpg`: 3 seeds (0, 1, 2) in one vmapped call, 100,000 environment steps, CPU AMD EPYC; mean ±
std over seeds of each seed's final return): mean return 0.998 ± 0.003 (the seed mean first reaches
0.95 at 45k steps); on-policy NPG alone (`:onpolicy`, same budget): 0.050 ± 0.002, the distractor.
<!-- /report -->
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.trainer = "control"
    c.run = "hnpg"  # polrl.control.hnpg trains this config
    c.seed = 0
    c.num_seeds = 3
    c.algorithm = "hnpg"
    c.env_name = "CombinationLock"
    lock = dict(horizon=5, action_dim=10, lock_seed=0)
    c.env_params = ml_collections.ConfigDict(lock)
    c.num_envs = 200  # on-policy episodes per update
    c.total_timesteps = 100_000
    c.gamma = 1.0
    c.data_dir = ""  # "" → $POLRL_DATA_DIR or ~/.cache/polrl/data
    c.offline_data = ml_collections.ConfigDict(dict(
        env_name="CombinationLock", env_kwargs=lock, train_timesteps=0, num_envs=16, num_steps=1000,
        expert_fraction=0.0, noise=0.2, seed=0,
    ))
    c.hnpg = ml_collections.ConfigDict(dict(offline_batch=200, critic_steps=30, max_kl=0.01, damping=0.1, hybrid=True))
    if arg == "smoke":
        c.num_seeds = 2
        c.num_envs = 4
        c.total_timesteps = 2 * 4 * 5
        c.offline_data.update(num_envs=2, num_steps=20)
        c.hnpg.update(offline_batch=4, critic_steps=2)
    elif arg == "onpolicy":
        c.hnpg.hybrid = False
    elif arg is not None:
        raise ValueError(f"lock_hnpg: unknown arg {arg!r}; use ':smoke', ':onpolicy' or nothing")
    return c

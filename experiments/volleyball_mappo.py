"""MAPPO on a 2 vs 2 volleyball court against a scripted team (``polrl.control.volleyball``).

Launch:
  python -m polrl.launch --config experiments/volleyball_mappo.py --workdir /tmp/polrl/volleyball_mappo
Smoke (run by tests/test_volleyball.py):
  python -m polrl.launch --config experiments/volleyball_mappo.py:smoke --workdir /tmp/polrl/volleyball_mappo_smoke
1 vs 1:
  python -m polrl.launch --config experiments/volleyball_mappo.py:1v1 --workdir /tmp/polrl/volleyball_mappo_1v1

Task (after "VolleyBots: A Testbed for Multi-Drone Volleyball Game Combining Motion Control and
Strategic Play", arXiv 2502.01932): team 0's two players learn (up to 3 touches a side, never
the same player twice in a row); team 1 is the scripted pair (each moves under the ball and
returns it with a lob). A rally pays +1 / −1 when it is won / lost, 0 on
a draw at the 100-step limit. 7 discrete actions (stay, away from / toward the net, four shots).
Shared actor over each agent's own-frame observation and one-hot id; the critic reads the global
state (``polrl.control.marl``); the repo's PPO loop and shared transforms otherwise. After every
update the policy plays 64 rallies against the scripted and 64 against a random team:
``win_rate_scripted``, ``loss_rate_scripted``, ``win_rate_random``. With ``:1v1`` the one
learning agent's global state is its own observation, so MAPPO and IPPO train the same run.

Recipe: 16 parallel courts × 128 steps per update, 409,600 environment steps, 4 epochs × 4
minibatches, Adam 2.5e-3 linearly annealed, γ 0.99, λ 0.95, clip 0.2, entropy 0.01, value 0.5,
grad-norm 0.5, tanh 64×64; decided rallies terminal, the time limit bootstrapped.

<!-- report: frontier.volleyball_mappo -->
Expected result (benchmarks/frontier.md, from `python benchmarks/frontier_volleyball.py`; raw:
benchmarks/results/frontier_volleyball.jsonl; CPU AMD EPYC; 3 seeds in one vmapped call, 409,600
environment steps; mean ± std over seeds of the last 10 updates' win rates, 64 rallies per opponent
each): against the scripted team 59.8 ± 7.8% won, 30.6 ± 7.8% lost; against a random team 90.6 ±
3.0% won.
<!-- /report -->"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.trainer = "control"
    c.run = "volleyball"  # polrl.control.volleyball trains this config
    c.seed = 0
    c.num_seeds = 3
    c.algorithm = "mappo"
    c.env_name = "Volleyball"
    c.env_params = ml_collections.ConfigDict(dict(players_per_team=2, opponent="scripted"))
    c.evaluate_games = 64
    c.num_envs = 16
    c.num_steps = 128
    c.total_timesteps = 409_600
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
        c.evaluate_games = 4
        c.algorithm_kwargs.update(dict(num_epochs=1, num_minibatches=2))
    elif arg == "1v1":
        c.env_params.players_per_team = 1
    elif arg is not None:
        raise ValueError(f"volleyball_mappo: unknown arg {arg!r}; use ':smoke', ':1v1' or nothing")
    return c

"""Self-play MAPPO on the 2 vs 2 volleyball court: both teams are the learning policy.

Launch:
  python -m polrl.launch --config experiments/volleyball_selfplay.py --workdir /tmp/polrl/volleyball_selfplay
Smoke (run by tests/test_volleyball.py):
  python -m polrl.launch --config experiments/volleyball_selfplay.py:smoke --workdir /tmp/polrl/volleyball_sp_smoke

The recipe of ``volleyball_mappo`` with ``env_params.opponent = "self"``: the agents are both teams'
players, one shared actor (each player sees the court in its own team's frame, with its team
one-hot), the centralised critic on the global state; rewards are zero-sum, so the logged
``mean_return`` (the mean over both teams' rows, which end their rallies together) is 0. The
scripted team is never trained against: ``win_rate_scripted`` / ``win_rate_random`` (the policy as
team 0, 64 rallies each after every update) measure what self-play alone learns.

<!-- report: frontier.volleyball_selfplay -->
Expected result (benchmarks/frontier.md, from `python benchmarks/frontier_volleyball.py`; raw:
benchmarks/results/frontier_volleyball.jsonl; CPU AMD EPYC; 3 seeds in one vmapped call, 409,600
environment steps; mean ± std over seeds of the last 10 updates' win rates, 64 rallies per opponent
each): against the scripted team 21.6 ± 20.6% won, 29.6 ± 4.7% lost; against a random team 93.7 ±
0.2% won.
<!-- /report -->"""
import ml_collections

from experiments import volleyball_mappo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in (None, "smoke"):
        raise ValueError(f"volleyball_selfplay: unknown arg {arg!r}; use ':smoke' or nothing")
    c = volleyball_mappo.get_config(arg)
    c.env_params.opponent = "self"
    return c

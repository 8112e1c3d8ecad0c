"""IPPO (independent PPO, shared parameters, per-agent critic) on the 2 vs 2 volleyball court
against the scripted team.

Launch:
  python -m polrl.launch --config experiments/volleyball_ippo.py --workdir /tmp/polrl/volleyball_ippo
Smoke (run by tests/test_volleyball.py):
  python -m polrl.launch --config experiments/volleyball_ippo.py:smoke --workdir /tmp/polrl/volleyball_ippo_smoke

The recipe of ``volleyball_mappo`` with ``algorithm = "ippo"``: the critic reads the agent's own
observation and id instead of the global state.

<!-- report: frontier.volleyball_ippo -->
Expected result (benchmarks/frontier.md, from `python benchmarks/frontier_volleyball.py`; raw:
benchmarks/results/frontier_volleyball.jsonl; CPU AMD EPYC; 3 seeds in one vmapped call, 409,600
environment steps; mean ± std over seeds of the last 10 updates' win rates, 64 rallies per opponent
each): against the scripted team 59.4 ± 3.4% won, 36.1 ± 3.1% lost; against a random team 87.9 ±
3.7% won.
<!-- /report -->"""
import ml_collections

from experiments import volleyball_mappo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in (None, "smoke"):
        raise ValueError(f"volleyball_ippo: unknown arg {arg!r}; use ':smoke' or nothing")
    c = volleyball_mappo.get_config(arg)
    c.algorithm = "ippo"
    return c

"""IPPO (independent PPO, shared parameters, per-agent critic) on JaxMARL's MPE simple_spread_v3.

Launch:
  python -m polrl.launch --config experiments/mpe_spread_ippo.py --workdir /tmp/polrl/mpe_spread_ippo
Smoke (run by tests/test_control_marl.py):
  python -m polrl.launch --config experiments/mpe_spread_ippo.py:smoke --workdir /tmp/polrl/mpe_ippo_smoke

The recipe of ``mpe_spread_mappo`` with ``algorithm = "ippo"``: the critic reads the agent's own
observation and id instead of the global state.

<!-- report: control.mpe_spread_ippo -->
Expected result (benchmarks/results/control.jsonl, from `python benchmarks/control.py --runs
mpe_spread_ippo`: 3 seeds (0, 1, 2) in one vmapped call, 999,424 environment steps, CPU AMD EPYC;
mean ± std over seeds of each seed's final return): mean per-agent episode return -18.16 ± 0.96,
from -27.2 at the first update; -22.7 at 250k steps. MAPPO with the same recipe: -17.51 ± 1.76.
<!-- /report -->
"""
import ml_collections

from experiments import mpe_spread_mappo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in (None, "smoke"):
        raise ValueError(f"mpe_spread_ippo: unknown arg {arg!r}; use ':smoke' or nothing")
    c = mpe_spread_mappo.get_config(arg)
    c.algorithm = "ippo"
    return c

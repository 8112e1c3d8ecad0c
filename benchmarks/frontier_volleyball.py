"""MAPPO, IPPO and self-play on the volleyball court (``polrl.control.volleyball``).

Arms (each trains its experiment's seeds in one vmapped call, as ``python -m polrl.launch`` does):

* ``mappo``      ``experiments/volleyball_mappo.py``: 2 vs 2 against the scripted team, centralised critic;
* ``ippo``       ``experiments/volleyball_ippo.py``: 2 vs 2 against the scripted team, per-agent critic;
* ``selfplay``   ``experiments/volleyball_selfplay.py``: 2 vs 2, both teams the learning policy (MAPPO);
* ``mappo_1v1``  ``experiments/volleyball_mappo.py:1v1``: 1 vs 1 against the scripted player (IPPO
                 trains the same run there: the one agent's global state is its own observation).

After every update each run's policy plays 64 rallies as team 0 against the scripted team and 64
against a random team. A record keeps, per seed, the last update's win / loss rates and their
mean over the last ``LAST`` updates, the seed-mean curves, the wall time of the training call
and where it was measured. One JSON line per arm is appended to ``--results``; arms already there
at the same budget are skipped; a markdown table is printed (``render``).

Usage (from the repository root)::

  python benchmarks/frontier_volleyball.py --total_timesteps 409600
"""
from __future__ import annotations

import argparse
import importlib
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import companion  # noqa: E402
from benchmarks.provenance import append, provenance, read  # noqa: E402
from benchmarks.stats import mean_std  # noqa: E402

ARMS = {"mappo": ("volleyball_mappo", None), "ippo": ("volleyball_ippo", None),
        "selfplay": ("volleyball_selfplay", None), "mappo_1v1": ("volleyball_mappo", "1v1")}
RATES = ("win_rate_scripted", "loss_rate_scripted", "win_rate_random")
LAST = 10


def _r(x: float) -> float:
    return float(f"{x:.6g}")


def run_arm(arm: str, total_timesteps: int) -> dict:
    from polrl.control.experiment import train

    module, arg = ARMS[arm]
    config = importlib.import_module(f"experiments.{module}").get_config(arg)
    config.total_timesteps = total_timesteps
    trainer, curves, _, wall = train(config)
    k = curves["mean_return"].shape[1]
    return {
        "arm": arm, "config": module, "arg": arg, "players_per_team": int(config.env_params.players_per_team),
        "budget": total_timesteps, "seed": int(config.seed),
        "num_seeds": int(config.num_seeds), "evaluate_games": int(config.evaluate_games),
        "steps_per_update": int(trainer.steps_per_update), "env_steps": int(k * trainer.steps_per_update),
        **{f"final_{name}_by_seed": [_r(x) for x in curves[name][:, -1]] for name in RATES},
        **{f"last{LAST}_{name}_by_seed": [_r(x) for x in curves[name][:, -LAST:].mean(1)] for name in RATES},
        "curves": {name: [_r(x) for x in curves[name].mean(0)] for name in (*RATES, "mean_return")},
        "wall_s": round(wall, 1), **provenance(),
    }


def render(records: list[dict]) -> str:
    """A markdown table: one row per arm, seed mean ± std of the win rate (%) against the scripted
    and the random team at the last update and over the last ``LAST`` updates."""
    rows = ["| arm | players per team | seeds | env steps | win vs scripted (last update) | win vs scripted (last "
            f"{LAST} updates) | loss vs scripted (last {LAST}) | win vs scripted (first update) | "
            f"win vs random (last {LAST}) | wall s |", "|" + "---|" * 10]
    for r in sorted(records, key=lambda r: (list(ARMS).index(r["arm"]), r["budget"])):
        first = r["curves"]["win_rate_scripted"][0]
        rows.append(
            f"| {r['arm']} | {r['players_per_team']} | {r['num_seeds']} | {r['env_steps']:,} | "
            f"{mean_std(r['final_win_rate_scripted_by_seed'], 100.0)} | "
            f"{mean_std(r[f'last{LAST}_win_rate_scripted_by_seed'], 100.0)} | "
            f"{mean_std(r[f'last{LAST}_loss_rate_scripted_by_seed'], 100.0)} | {100 * first:.1f} | "
            f"{mean_std(r[f'last{LAST}_win_rate_random_by_seed'], 100.0)} | {r['wall_s']} |")
    rows.append("")
    rows.append(f"Win rates in %, mean ± std over seeds; each evaluation is {records[0]['evaluate_games']} rallies "
                "per opponent with the policy's sampled actions; a rally undecided after 100 steps is a draw."
                if records else "No records.")
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--total_timesteps", type=int, default=409_600)
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "frontier_volleyball.jsonl"))
    args = p.parse_args(argv)
    arms = companion.parse_arms(args.arms, list(ARMS))
    have = {(r["arm"], r["budget"]) for r in read(args.results)}
    for arm in arms:
        if (arm, args.total_timesteps) in have:
            print(f"{arm}: in {args.results}, skipped")
            continue
        record = run_arm(arm, args.total_timesteps)
        append(args.results, record)
        print(f"{arm}: win rate vs scripted {np.mean(record[f'last{LAST}_win_rate_scripted_by_seed']):.3f} "
              f"({record['num_seeds']} seeds, {record['env_steps']} env steps, {record['wall_s']} s)", flush=True)
    print(render([r for r in read(args.results) if r["budget"] == args.total_timesteps]))


if __name__ == "__main__":
    main()

"""The control track's results: every control experiment trained with its seeds, raw curves kept.

    python benchmarks/control.py                      # every run below, appended to results/control.jsonl
    python benchmarks/control.py --runs cartpole_ppo  # some of them

Each run trains a config of ``experiments/`` (its seeds in one vmapped call, exactly as
``python -m polrl.launch --config experiments/<config>.py`` does) and appends one JSON line to
``benchmarks/results/control.jsonl``: the per-seed final return, the seed-mean of every
per-update curve the trainer reports (``Run.report``), its summary scalars, the environment steps
per update, the wall time of the training call and where it was measured
(``benchmarks.provenance``). A run already in the file is skipped (delete its line to re-measure).
``benchmarks/report.py`` writes every control figure of the README and of the experiments'
docstrings from this file.
"""
from __future__ import annotations

import argparse
import importlib
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import provenance  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "control.jsonl"

# run name → (experiment module, config arg, config overrides). The baselines each experiment
# compares against are runs of their own.
RUNS = {
    "cartpole_ppo": ("cartpole_ppo", None, {}),
    "cartpole_mdpo": ("cartpole_mdpo", None, {}),
    "pendulum_ppo": ("pendulum_ppo", None, {}),
    "cartpole_props": ("cartpole_props", None, {}),
    "cartpole_props_onpolicy": ("cartpole_props", "onpolicy", {}),
    "lock_hnpg": ("lock_hnpg", None, {}),
    "lock_hnpg_onpolicy": ("lock_hnpg", "onpolicy", {}),
    "cartpole_unio4": ("cartpole_unio4", None, {}),
    "cartpole_ppo_unio4_budget": ("cartpole_ppo", None, {"total_timesteps": 102_400}),
    "mpe_spread_mappo": ("mpe_spread_mappo", None, {}),
    "mpe_spread_ippo": ("mpe_spread_ippo", None, {}),
    "bandit_relic": ("bandit_relic", None, {}),
    "bandit_relic_full_only": ("bandit_relic", "full_only", {}),
}


def _rounded(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


def run_one(name: str) -> dict:
    """Trains run ``name`` (``polrl.control.experiment.train``) and returns its raw record."""
    from polrl.control.experiment import train

    module, arg, overrides = RUNS[name]
    config = importlib.import_module(f"experiments.{module}").get_config(arg)
    for key, value in overrides.items():
        config[key] = value
    trainer, curves, summary, wall = train(config)
    num_seeds = int(config.get("num_seeds", 1))
    returns = curves["mean_return"]
    return {
        "run": name, "config": module, "arg": arg, "overrides": overrides,
        "seed": int(config.seed), "num_seeds": num_seeds, "steps_per_update": int(trainer.steps_per_update),
        "env_steps": int(returns.shape[1] * trainer.steps_per_update),
        "final_return_by_seed": [_rounded(x) for x in returns[:, -1]],
        "curves": {k: [_rounded(x) for x in v.mean(0)] for k, v in curves.items() if v.ndim == 2},
        "return_std_curve": [_rounded(x) for x in returns.std(0)],
        "summary": {k: _rounded(float(v)) for k, v in summary.items()},
        "wall_s": round(wall, 1), **provenance.provenance(),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=",".join(RUNS), help="comma-separated run names")
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)
    names = args.runs.split(",")
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        raise SystemExit(f"--runs: unknown run(s) {unknown}; known: {sorted(RUNS)}")
    done = {r["run"] for r in provenance.read(args.results)}
    for name in names:
        if name in done:
            print(f"{name}: in {args.results}, skipped")
            continue
        record = run_one(name)
        provenance.append(args.results, record)
        print(f"{name}: final return {sum(record['final_return_by_seed']) / record['num_seeds']:.4g} "
              f"({record['num_seeds']} seeds, {record['env_steps']} env steps, {record['wall_s']} s)", flush=True)


if __name__ == "__main__":
    main()

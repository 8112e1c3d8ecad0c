"""Policy-Guided Diffusion on CartPole's offline data (``polrl.control.pgd``,
``experiments/cartpole_pgd.py``): does policy-guided synthetic data help an offline agent?

Arms (each trains the config's seeds in one vmapped call, as ``python -m polrl.launch`` does):

* ``real_only``  IQL + AWR on the real transitions alone (the run's target policy);
* ``unguided``   the same agent on real + synthetic rows sampled with guidance λ = 0 (the
                 behaviour distribution);
* ``guided``     real + synthetic rows sampled with policy guidance λ = ``--guidance`` by the
                 real-only policy.

``real_only`` is read from the ``guided`` run (its first phase trains on real data only, with the
same keys in every run). A record keeps, per seed, the final return (sampled actions, 1000 steps
of 4 environments), the mean log π of the target policy on the synthetic and the real rows, the
seed-mean return curve, the wall time of the training call and where it was measured. One JSON
line per arm is appended to ``--results`` (``guidance``: the guided arm's λ of the pair); arms
already there at the same λ are skipped; a
markdown table is printed (``render``).

Usage (from the repository root)::

  python benchmarks/frontier_pgd.py --guidance 1.0
"""
from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import companion  # noqa: E402
from benchmarks.provenance import append, provenance, read  # noqa: E402
from benchmarks.stats import mean_std  # noqa: E402

ARMS = ("real_only", "unguided", "guided")


def _r(x: float) -> float:
    return float(f"{x:.6g}")


def run_pair(guidance: float) -> list[dict]:
    """The three arms' records from two runs (λ = 0 and λ = ``guidance``)."""
    from experiments import cartpole_pgd
    from polrl.control.experiment import train

    out = []
    for arm, lam in (("unguided", 0.0), ("guided", guidance)):
        config = cartpole_pgd.get_config()
        config.pgd.guidance = lam
        trainer, curves, summary, wall = train(config)
        run = dict(guidance=guidance, seed=int(config.seed), num_seeds=int(config.num_seeds),
                   steps_per_update=int(trainer.steps_per_update), wall_s=round(wall, 1), **provenance())
        pairs = [(arm, "mean_return")] + ([("real_only", "target_return")] if arm == "guided" else [])
        for name, curve in pairs:
            out.append({
                "arm": name, **run, "final_return_by_seed": [_r(x) for x in curves[curve][:, -1]],
                "curve": [_r(x) for x in curves[curve].mean(0)],
                "synthetic_logp": None if name == "real_only" else _r(summary["synthetic_logp"]),
                "real_logp": _r(summary["real_logp"]),
            })
    return out


def render(records: list[dict]) -> str:
    """A markdown table: one row per arm and λ, seed mean ± std of the final return, and the target
    policy's mean log π on the synthetic and the real rows."""
    rows = ["| arm | guided arm's λ | seeds | final return | return curve (seed mean) | log π on synthetic | log π on real | wall s |",
            "|" + "---|" * 8]
    for r in sorted(records, key=lambda r: (r["guidance"], ARMS.index(r["arm"]))):
        syn = "–" if r["synthetic_logp"] is None else f"{r['synthetic_logp']:.3f}"
        rows.append(f"| {r['arm']} | {r['guidance']} | {r['num_seeds']} | {mean_std(r['final_return_by_seed'])} | "
                    f"{' → '.join(f'{x:.0f}' for x in r['curve'])} | {syn} | {r['real_logp']:.3f} | {r['wall_s']} |")
    rows.append("")
    rows.append(f"Returns with sampled actions, mean ± std over seeds; one curve point every "
                f"{records[0]['steps_per_update']} gradient steps." if records else "No records.")
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "frontier_pgd.jsonl"))
    args = p.parse_args(argv)
    arms = companion.parse_arms(args.arms, list(ARMS))
    have = {(r["arm"], r["guidance"]) for r in read(args.results)}
    if any((arm, args.guidance) not in have for arm in arms):
        for record in run_pair(args.guidance):
            if record["arm"] in arms and (record["arm"], args.guidance) not in have:
                append(args.results, record)
                print(f"{record['arm']}: final return {record['final_return_by_seed']}", flush=True)
    print(render([r for r in read(args.results) if r["guidance"] == args.guidance]))


if __name__ == "__main__":
    main()

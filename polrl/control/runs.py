"""Launcher entry for the control trainers with their own loop: HNPG, Uni-O4, MAPPO/IPPO, ReLIC.

``polrl.control.run(config, workdir)`` (``experiment.run``) hands a config whose ``algorithm`` is
in ``ALGORITHMS`` to ``run`` here. It loads the offline data the algorithm needs (generated into
``config.data_dir`` once), trains ``config.num_seeds`` seeds from ``config.seed`` in one
``jit(vmap(train))`` (``seeds.train_seeds``) and writes, as ``experiment.run`` does,
``WORKDIR/metrics.jsonl`` (one record per update: ``step`` = environment steps so far,
``phase = "control"``, every per-update metric averaged over the seeds, ``mean_return_std``
across seeds) and ``WORKDIR/curves.png``. Uni-O4's offline phases happen before the first
online update; their results (``bc_return``, ``offline_return``, mean and std over seeds) go to
the summary, its online PPO curve to the records.
"""
from __future__ import annotations

import os
import time

import jax
import numpy as np

from polrl.control import hnpg, marl, relic, unio4
from polrl.control.seeds import train_seeds
from polrl.train.metrics import MetricWriter

ALGORITHMS = ("hnpg", "unio4", "mappo", "ippo", "relic")


def _trainer(config):
    """(Run, data tuple, steps per update) of ``config.algorithm``."""
    name = config.algorithm
    if name == "hnpg":
        horizon = int(dict(config.env_params)["horizon"])
        return hnpg.make_train(config), (hnpg.load_data(config),), int(config.num_envs) * horizon
    if name == "unio4":
        return unio4.make_train(config), (unio4.load_data(config),), int(config.num_envs) * int(config.num_steps)
    if name in ("mappo", "ippo"):
        return marl.make_train(config), (), int(config.num_envs) * int(config.num_steps)
    if name == "relic":
        return relic.make_train(config), (), int(config.num_envs) * int(config.num_steps)
    raise ValueError(f"algorithm={name!r} is not one of {ALGORITHMS}")


def per_update_metrics(name: str, metrics: dict) -> tuple[dict, dict]:
    """(per-update curves {name: [seeds, K]}, summary scalars) of a trainer's metrics."""
    metrics = {k: np.asarray(v, np.float64) for k, v in metrics.items()}
    if name != "unio4":
        return metrics, {}
    curves = {k[len("online/"):]: v for k, v in metrics.items() if k.startswith("online/")}
    summary = {}
    for key in ("bc_return", "offline_return"):
        summary[key] = float(metrics[key].mean())
        summary[key + "_std"] = float(metrics[key].std())
    return curves, summary


def run(config, workdir: str) -> dict:
    """Trains ``config.num_seeds`` seeds; writes metrics.jsonl and curves.png; returns the summary."""
    from polrl.control.experiment import plot_returns

    run_def, data, steps_per_update = _trainer(config)
    num_seeds = int(config.get("num_seeds", 1))
    keys = jax.random.split(jax.random.key(int(config.seed)), num_seeds)
    start = time.time()
    _, metrics = jax.block_until_ready(train_seeds(run_def, keys, *data))
    wall = time.time() - start
    curves, summary = per_update_metrics(config.algorithm, metrics)
    returns = curves["mean_return"]
    writer = MetricWriter(workdir, tensorboard=False)
    try:
        for k in range(returns.shape[1]):
            record = {name: float(v[:, k].mean()) for name, v in curves.items() if v.ndim == 2}
            record.update(step=(k + 1) * steps_per_update, phase="control", mean_return_std=float(returns[:, k].std()))
            writer.write(record)
    finally:
        writer.close()
    plot_returns(returns, steps_per_update, os.path.join(workdir, "curves.png"), f"{config.env_name} {config.algorithm}")
    final = returns[:, -1]
    summary.update(
        env_steps=returns.shape[1] * steps_per_update, num_seeds=num_seeds,
        final_mean_return=float(final.mean()), final_std=float(final.std()), wall_s=round(wall, 2),
    )
    return {"control": summary}

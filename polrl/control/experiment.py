"""Launcher entry for control configs: ``polrl.control.run(config, workdir)`` (this module's ``run``).

``python -m polrl.launch --config experiments/cartpole_ppo.py --workdir DIR`` reaches here for a
config with ``trainer = "control"``. All ``num_seeds`` seeds train in one jitted, vmapped call;
then ``DIR/metrics.jsonl`` gets one record per update (``step`` = environment steps so far,
``phase = "control"``, ``mean_return`` and every metric averaged over the seeds, with
``mean_return_std`` across seeds) and ``DIR/curves.png`` the return curve (mean ± std).
"""
from __future__ import annotations

import os
import time

import jax
import numpy as np

from polrl.control.props import make_train_props
from polrl.control.train import make_train
from polrl.train.metrics import MetricWriter


def make_any_train(config):
    """PROPS (``algorithm = "props"``, target noun in ``config.props_target``) or ``make_train``."""
    if config.algorithm == "props":
        target = config.copy_and_resolve_references()
        with target.unlocked():
            target.algorithm = config.get("props_target", "ppo")
        return make_train_props(target)
    return make_train(config)


def run(config, workdir: str) -> dict:
    """Trains ``config.num_seeds`` seeds from ``config.seed``; returns the summary dict."""
    from polrl.control import runs  # trainers with their own loop (HNPG, Uni-O4, …)

    if config.algorithm in runs.ALGORITHMS:
        return runs.run(config, workdir)
    train = make_any_train(config)
    num_seeds = int(config.get("num_seeds", 1))
    keys = jax.random.split(jax.random.key(int(config.seed)), num_seeds)
    start = time.time()
    _, metrics = jax.block_until_ready(jax.jit(jax.vmap(train))(keys))
    wall = time.time() - start
    metrics = {k: np.asarray(v, np.float64) for k, v in metrics.items()}  # [seeds, K]
    steps_per_update = int(config.num_envs) * int(config.num_steps)
    num_updates = metrics["mean_return"].shape[1]
    writer = MetricWriter(workdir, tensorboard=False)
    try:
        for k in range(num_updates):
            record = {name: float(v[:, k].mean()) for name, v in metrics.items()}
            record.update(step=(k + 1) * steps_per_update, phase="control",
                          mean_return_std=float(metrics["mean_return"][:, k].std()))
            writer.write(record)
    finally:
        writer.close()
    plot_returns(metrics["mean_return"], steps_per_update, os.path.join(workdir, "curves.png"), config.env_name)
    final = metrics["mean_return"][:, -1]
    summary = dict(
        env_steps=num_updates * steps_per_update, num_seeds=num_seeds,
        final_mean_return=float(final.mean()), final_std=float(final.std()),
        wall_s=round(wall, 2),
    )
    for key in ("sampling_error", "sampling_error_pooled"):
        if key in metrics:
            summary[key] = float(metrics[key][:, 1:].mean())
    return {"control": summary}


def plot_returns(returns: np.ndarray, steps_per_update: int, path: str, title: str) -> str:
    """PNG of the mean return over seeds (± one std) against environment steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = (np.arange(returns.shape[1]) + 1) * steps_per_update
    mean, std = returns.mean(0), returns.std(0)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(x, mean, color="C0", label=f"mean of {returns.shape[0]} seeds")
    ax.fill_between(x, mean - std, mean + std, color="C0", alpha=0.25)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

"""Launcher entry for control configs: ``polrl.control.run(config, workdir)`` (this module's ``run``).

``python -m polrl.launch --config experiments/cartpole_ppo.py --workdir DIR`` reaches here for a
config with ``trainer = "control"``. The config names the module that trains it:
``config.run = NAME`` imports ``polrl.control.NAME`` and calls its ``make_run(config)``, which
returns a ``polrl.control.seeds.Run`` (the protocol every trainer module follows). All
``num_seeds`` seeds from ``config.seed`` train in one jitted, vmapped call
(``seeds.train_seeds``); then ``DIR/metrics.jsonl`` gets one record per update (``step`` =
environment steps so far, ``phase = "control"``, every per-update curve of ``Run.report``
averaged over the seeds, with ``mean_return_std`` across seeds) and ``DIR/curves.png`` the return
curve (mean ± std). The summary holds ``Run.report``'s scalars and the final return.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import time
from types import ModuleType

import jax
import numpy as np

from polrl.control.seeds import train_seeds
from polrl.train.metrics import MetricWriter


def trainer_names() -> list[str]:
    """The modules of ``polrl.control`` that define ``make_run``: what ``config.run`` may name."""
    package = importlib.import_module("polrl.control")
    names = [m.name for m in pkgutil.iter_modules(package.__path__)]
    return sorted(n for n in names if hasattr(importlib.import_module(f"polrl.control.{n}"), "make_run"))


def trainer_module(config) -> ModuleType:
    """``polrl.control.<config.run>``, the module whose ``make_run`` trains ``config``."""
    name = config.get("run")
    package = importlib.import_module("polrl.control")
    if isinstance(name, str) and name in {m.name for m in pkgutil.iter_modules(package.__path__)}:
        module = importlib.import_module(f"polrl.control.{name}")
        if hasattr(module, "make_run"):
            return module
    raise ValueError(
        f"config.run={name!r} is not a control trainer; set it to the module polrl.control.<run> that "
        f"trains this config, one of {trainer_names()}"
    )


def train(config):
    """Trains ``config.num_seeds`` seeds from ``config.seed`` in one call; returns
    ``(run, curves, summary, wall_s)``: the ``Run``, its per-update curves ([seeds, K] each) and
    summary scalars (``Run.report``), and the wall time of the training call."""
    trainer = trainer_module(config).make_run(config)
    num_seeds = int(config.get("num_seeds", 1))
    keys = jax.random.split(jax.random.key(int(config.seed)), num_seeds)
    start = time.time()
    _, metrics = jax.block_until_ready(train_seeds(trainer, keys))
    wall = time.time() - start
    curves, summary = trainer.report({k: np.asarray(v, np.float64) for k, v in metrics.items()})
    return trainer, curves, summary, wall


def run(config, workdir: str) -> dict:
    """Trains ``config.num_seeds`` seeds from ``config.seed``; returns the summary dict."""
    trainer, curves, summary, wall = train(config)
    num_seeds = int(config.get("num_seeds", 1))
    returns = curves["mean_return"]  # [seeds, K]
    steps = trainer.steps_per_update
    writer = MetricWriter(workdir, tensorboard=False)
    try:
        for k in range(returns.shape[1]):
            record = {name: float(v[:, k].mean()) for name, v in curves.items() if v.ndim == 2}
            record.update(step=(k + 1) * steps, phase="control", mean_return_std=float(returns[:, k].std()))
            writer.write(record)
    finally:
        writer.close()
    plot_returns(returns, steps, os.path.join(workdir, "curves.png"), f"{config.env_name} {config.algorithm}")
    final = returns[:, -1]
    summary.update(
        env_steps=returns.shape[1] * steps, num_seeds=num_seeds,
        final_mean_return=float(final.mean()), final_std=float(final.std()), wall_s=round(wall, 2),
    )
    return {"control": summary}


def plot_returns(returns: np.ndarray, steps_per_update: int, path: str, title: str) -> str:
    """PNG of the mean return over seeds (± one std) against environment steps."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's) is left alone

    x = (np.arange(returns.shape[1]) + 1) * steps_per_update
    mean, std = returns.mean(0), returns.std(0)
    fig = Figure(figsize=(5, 3.4))
    ax = fig.subplots()
    ax.plot(x, mean, color="C0", label=f"mean of {returns.shape[0]} seeds")
    ax.fill_between(x, mean - std, mean + std, color="C0", alpha=0.25)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path

"""PPO on CartPole-v1: polrl vs PureJaxRL's own ``purejaxrl/ppo.py``, same jax, gymnax and process.

  flock /tmp/polrl_heavy.lock python benchmarks/ppo_control.py --purejaxrl_path PATH [--rounds 10]

``PATH`` is a copy of the PureJaxRL repository (Lu et al. 2022, "Discovered Policy Optimisation",
arXiv 2210.05639): a checkout or a bare git directory (its ``HEAD`` is read). Its
``purejaxrl/ppo.py`` and ``purejaxrl/wrappers.py`` run unmodified; they need ``distrax``
(``pip install distrax``; only this benchmark does). Two things are supplied around them:

* gymnax ≥ 1.0 returns ``obs, state, reward, terminated, truncated, info`` from ``step``;
  PureJaxRL's wrappers unpack the older ``obs, state, reward, done, info``. ``ppo.py`` therefore
  gets a ``gymnax.make`` whose environments return that older form (done = terminated ∨
  truncated, info = {"discount"} as gymnax < 1.0 had it), which is also why PureJaxRL does not
  bootstrap time-limit truncations;
* ``wrappers.py`` imports brax and navix for wrappers ``ppo.py`` does not use; where they are not
  installed, empty modules stand in for them.

Both trainers run PureJaxRL's CartPole configuration (its ``ppo.py`` ``__main__``: 4 envs × 128
steps, 5e5 steps = 976 updates, 4 epochs × 4 minibatches; polrl: ``experiments/cartpole_ppo.py``)
as one jitted call per training run, compiled before timing. Each round times polrl then
PureJaxRL with the same fresh seeds; a round's speedup is PureJaxRL's wall time / polrl's.
The JSON line printed last holds ``speedup_vs_purejaxrl`` (the median of the per-round
speedups), the same with process CPU time, env steps per second (medians) and final returns.
Every timed run and the summary are appended to ``--results`` (one JSON object per line).
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
import types

import gymnax
import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.provenance import provenance  # noqa: E402
from experiments import cartpole_ppo  # noqa: E402
from polrl.control import make_train  # noqa: E402

# purejaxrl/ppo.py's __main__ configuration, without DEBUG (a host callback printing every episode)
PUREJAXRL_CONFIG = {
    "LR": 2.5e-4, "NUM_ENVS": 4, "NUM_STEPS": 128, "TOTAL_TIMESTEPS": 5e5, "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 4, "GAMMA": 0.99, "GAE_LAMBDA": 0.95, "CLIP_EPS": 0.2, "ENT_COEF": 0.01,
    "VF_COEF": 0.5, "MAX_GRAD_NORM": 0.5, "ACTIVATION": "tanh", "ENV_NAME": "CartPole-v1",
    "ANNEAL_LR": True,
}


class PreOneStep:
    """A gymnax ≥ 1.0 environment whose ``step`` returns gymnax < 1.0's five values."""

    def __init__(self, env):
        self._env = env

    def __getattr__(self, name):
        return getattr(self._env, name)

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, state, reward, jnp.logical_or(terminated, truncated), {"discount": info["discount"]}


def _source(path: str, rel: str) -> str:
    if os.path.isfile(os.path.join(path, rel)):
        with open(os.path.join(path, rel)) as f:
            return f.read()
    return subprocess.run(["git", "--git-dir", path, "show", f"HEAD:{rel}"], check=True, capture_output=True,
                          text=True).stdout


def _commit(path: str) -> str:
    git_dir = path if not os.path.isdir(os.path.join(path, ".git")) else os.path.join(path, ".git")
    out = subprocess.run(["git", "--git-dir", git_dir, "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def load_purejaxrl(path: str) -> types.ModuleType:
    """PureJaxRL's ``purejaxrl/ppo.py`` as a module, with its ``wrappers`` and the gymnax shim."""
    for name in ("brax", "brax.envs", "brax.envs.wrappers", "brax.envs.wrappers.training", "navix"):
        try:
            importlib.import_module(name)
        except ImportError:
            stand_in = types.ModuleType(name)
            stand_in.EpisodeWrapper = stand_in.AutoResetWrapper = None
            sys.modules[name] = stand_in
    modules = {}
    for name, rel in (("wrappers", "purejaxrl/wrappers.py"), ("purejaxrl_ppo", "purejaxrl/ppo.py")):
        modules[name] = sys.modules[name] = types.ModuleType(name)  # ppo.py imports ``wrappers``
        exec(compile(_source(path, rel), rel, "exec", dont_inherit=True), modules[name].__dict__)
    ppo = modules["purejaxrl_ppo"]

    def make(name, **kwargs):
        env, params = gymnax.make(name, **kwargs)
        return PreOneStep(env), params

    ppo.gymnax = types.SimpleNamespace(make=make)
    return ppo


def purejaxrl_final_return(metrics, seed: int) -> float:
    """Mean return of the episodes that ended in the last update (PureJaxRL's plotted metric)."""
    done = np.asarray(metrics["returned_episode"][seed, -1], bool)
    returns = np.asarray(metrics["returned_episode_returns"][seed, -1])
    return float(returns[done].mean()) if done.any() else float("nan")


def _nanmean(values) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def build(purejaxrl_path: str, num_seeds: int, bootstrap_truncation: bool):
    config = cartpole_ppo.get_config()
    config.bootstrap_truncation = bootstrap_truncation
    polrl_train = jax.jit(jax.vmap(make_train(config)))
    peer_train = jax.jit(jax.vmap(load_purejaxrl(purejaxrl_path).make_train(dict(PUREJAXRL_CONFIG))))
    per_update = config.num_envs * config.num_steps
    steps = int(config.total_timesteps) // per_update * per_update

    def polrl_run(keys):
        _, metrics = jax.block_until_ready(polrl_train(keys))
        return float(np.asarray(metrics["mean_return"])[:, -1].mean())

    def peer_run(keys):
        metrics = jax.block_until_ready(peer_train(keys))["metrics"]
        return _nanmean([purejaxrl_final_return(metrics, i) for i in range(keys.shape[0])])

    return {"polrl": polrl_run, "purejaxrl": peer_run}, steps



def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--purejaxrl_path", required=True, help="PureJaxRL repository: a checkout or a git dir")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--num_seeds", type=int, default=1)
    parser.add_argument("--polrl_bootstrap_truncation", type=int, default=1)
    parser.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "results", "ppo_control.jsonl"))
    parser.add_argument("--label", default="", help="free text stored with every record")
    args = parser.parse_args()
    runs, steps = build(args.purejaxrl_path, args.num_seeds, bool(args.polrl_bootstrap_truncation))
    session = {
        "session": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "label": args.label, **provenance(), "jax": jax.__version__,
        "gymnax": importlib.metadata.version("gymnax"), "purejaxrl_commit": _commit(args.purejaxrl_path),
        "num_seeds": args.num_seeds, "env_steps_per_run": steps,
        "polrl_bootstrap_truncation": bool(args.polrl_bootstrap_truncation),
    }
    records = []
    for name, fn in runs.items():
        t = time.perf_counter()
        fn(jax.random.split(jax.random.key(10_000), args.num_seeds))
        records.append({**session, "name": name, "round": -1, "compile_and_run_s": round(time.perf_counter() - t, 3)})
        print(f"{name}: compile + first run {records[-1]['compile_and_run_s']:.1f}s", flush=True)
    for r in range(args.rounds):
        keys = jax.random.split(jax.random.key(r), args.num_seeds)
        for name, fn in runs.items():
            t, c = time.perf_counter(), time.process_time()
            ret = fn(keys)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            records.append({**session, "name": name, "round": r, "wall_s": round(wall, 4), "cpu_s": round(cpu, 4),
                            "final_return": ret, "load_average_1m": os.getloadavg()[0]})
            print(f"round {r} {name}: {wall:.2f}s wall, {cpu:.2f}s CPU, {steps * args.num_seeds / wall:,.0f} "
                  f"env steps/s, return {ret:.1f}", flush=True)
    timed = [x for x in records if x["round"] >= 0]
    by = {name: [x for x in timed if x["name"] == name] for name in runs}
    ratio = lambda key: [p[key] / q[key] for p, q in zip(by["purejaxrl"], by["polrl"])]
    summary = {**session, "summary": True, "rounds": args.rounds,
               "speedup_vs_purejaxrl": round(statistics.median(ratio("wall_s")), 4),
               "cpu_speedup_vs_purejaxrl": round(statistics.median(ratio("cpu_s")), 4),
               "speedup_per_round": [round(x, 4) for x in ratio("wall_s")]}
    for name, rows in by.items():
        summary[f"{name}_env_steps_per_s"] = round(steps * args.num_seeds / statistics.median(x["wall_s"] for x in rows))
        # PureJaxRL's return is NaN for a run whose last update ended no episode (a 500-step
        # episode outlasts a 128-step rollout); such runs are left out of its mean
        summary[f"{name}_mean_return"] = round(_nanmean([x["final_return"] for x in rows]), 1)
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    with open(args.results, "a") as f:
        for record in records + [summary]:
            f.write(json.dumps(record) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

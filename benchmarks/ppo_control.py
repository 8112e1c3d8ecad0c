"""PPO on CartPole-v1 (PureJaxRL's default config): polrl vs the PureJaxRL peer, same process.

  python benchmarks/ppo_control.py [--repeats 3] [--num_seeds 1]

Both runs are one jitted call for the whole training (5e5 environment steps), compiled once
before timing; the timed calls alternate polrl, peer, polrl, peer… with fresh seeds, so a load
change on the machine hits both. ``--num_seeds N`` vmaps N seeds into one call for both.
Prints per-run lines, then one JSON object: ``env_steps_per_s`` (median over repeats, counting
all seeds; ``env_steps_per_cpu_s`` divides by the process's CPU time instead, which is steadier
when other jobs share the cores), ``mean_return`` (final update, mean over seeds and repeats) for polrl and for the
peer, and ``speedup_vs_purejaxrl`` = polrl throughput / peer throughput (``cpu_speedup_vs_purejaxrl``
the same with CPU time). The peer is
``benchmarks/purejaxrl_peer.py`` (a re-implementation; PureJaxRL is not on PyPI; needs distrax).

polrl runs ``experiments/cartpole_ppo.py`` (the same hyper-parameters), with
``--polrl_bootstrap_truncation`` deciding whether it bootstraps time-limit truncations (one extra
critic forward per step on the final observations; the peer never does).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import purejaxrl_peer  # noqa: E402
from experiments import cartpole_ppo  # noqa: E402
from polrl.control import make_train  # noqa: E402


def build(num_seeds: int, bootstrap_truncation: bool):
    config = cartpole_ppo.get_config()
    config.bootstrap_truncation = bootstrap_truncation
    polrl_train = jax.jit(jax.vmap(make_train(config)))
    peer_train = jax.jit(jax.vmap(purejaxrl_peer.make_train(purejaxrl_peer.CARTPOLE_CONFIG)))
    steps = int(config.total_timesteps) // (config.num_envs * config.num_steps) * config.num_envs * config.num_steps

    def polrl_run(keys):
        _, metrics = jax.block_until_ready(polrl_train(keys))
        return float(np.asarray(metrics["mean_return"])[:, -1].mean())

    def peer_run(keys):
        out = jax.block_until_ready(peer_train(keys))
        m = out["metrics"]
        return float(np.nanmean([
            purejaxrl_peer.final_return(jax.tree.map(lambda x: x[i], m)) for i in range(keys.shape[0])
        ]))

    return {"polrl": polrl_run, "purejaxrl": peer_run}, steps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num_seeds", type=int, default=1)
    parser.add_argument("--polrl_bootstrap_truncation", type=int, default=1)
    args = parser.parse_args()
    runs, steps = build(args.num_seeds, bool(args.polrl_bootstrap_truncation))
    times = {name: [] for name in runs}
    cpu = {name: [] for name in runs}
    returns = {name: [] for name in runs}
    for name, fn in runs.items():  # compile
        t = time.perf_counter()
        fn(jax.random.split(jax.random.key(10_000), args.num_seeds))
        print(f"{name}: compile + first run {time.perf_counter() - t:.1f}s", flush=True)
    for r in range(args.repeats):
        for name, fn in runs.items():
            keys = jax.random.split(jax.random.key(r), args.num_seeds)
            t, c = time.perf_counter(), time.process_time()
            ret = fn(keys)
            dt, dc = time.perf_counter() - t, time.process_time() - c
            times[name].append(dt)
            cpu[name].append(dc)
            returns[name].append(ret)
            print(f"{name} repeat {r}: {dt:.2f}s wall, {dc:.2f}s CPU, {steps * args.num_seeds / dt:,.0f} env steps/s, "
                  f"return {ret:.1f}", flush=True)
    result = {"num_seeds": args.num_seeds, "env_steps_per_run": steps, "repeats": args.repeats,
              "polrl_bootstrap_truncation": bool(args.polrl_bootstrap_truncation),
              "load_average_1m": os.getloadavg()[0]}
    for name in runs:
        result[f"{name}_env_steps_per_s"] = round(steps * args.num_seeds / statistics.median(times[name]))
        result[f"{name}_env_steps_per_cpu_s"] = round(steps * args.num_seeds / statistics.median(cpu[name]))
        # the peer's return is NaN for a run whose last update ended no episode (500-step episodes
        # outlast a 128-step rollout); such runs are left out of its mean
        result[f"{name}_mean_return"] = round(float(np.nanmean(returns[name])), 1)
    result["speedup_vs_purejaxrl"] = round(result["polrl_env_steps_per_s"] / result["purejaxrl_env_steps_per_s"], 3)
    result["cpu_speedup_vs_purejaxrl"] = round(
        result["polrl_env_steps_per_cpu_s"] / result["purejaxrl_env_steps_per_cpu_s"], 3
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Asynchronous rollouts against the synchronous loop: steps/s and accuracy against wall time.

The long chain task (``experiments/chain_long_grpo.py``: 28–113-token scratchpads, 16 prompts ×
8 samples per step, generation budget 160 tokens) from one SFT warm start, trained for
``--steps`` GRPO steps by each arm:

* ``k = 0``: the synchronous trainer (generate, then update);
* ``k = 1, 2``: ``async_rollouts`` with ``staleness = k`` (``polrl.train.pipeline``): the batch of
  step s is generated from θ_{s−k} while the updates before it run. Its batches are those of
  the synchronous run with the same staleness, so any accuracy difference against k = 0 is
  the staleness's, not the asynchrony's;

each on the meshes of the same machine: ``one`` (one XLA device, the experiment's own layout;
XLA's intra-op threads use the cores), ``data`` (one CPU device per core, the batch split over
them: the launcher's ``mesh.data = -1``), asynchronous only, ``split``
(``async_rollout_devices = 1``: the first CPU device generates, the second updates, the weights
pushed to the first after every update), and ``processes``: two processes of one CPU device each
(``jax.distributed``, gloo), the first generating and the second updating
(``polrl.train.process_pipeline``; at k = 0 the two take turns). Every arm runs one after the
other, from the same warm start and with the same prompts; the ``processes`` arms in two child
processes, the others in this one.

Timing: the median ``step_time_s`` of a run's steps after the first ``SKIP`` (compilation, and
the batches an asynchronous run generates before its first update). An asynchronous step's
time is its wait for the batch plus its update; the run also logs, per step,
``pipeline/generate_s`` (the batch's generation, while updates ran beside it) and
``pipeline/wait_s`` (the update's wait). ``speedup_vs_sync`` (the last line, one JSON object)
is the fastest synchronous arm's median step time over the fastest k = 1 arm's. Accuracy:
held-out greedy exact match on 500 prompts every ``--eval_every`` steps; the wall-time axis
counts step times only (evaluations excluded).

Usage (from the repository root; minutes per arm on a 2-core CPU)::

  python benchmarks/async.py --steps 100
  python benchmarks/async.py --arms ""   # only rewrite benchmarks/async.md from the results
"""
from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.provenance import append, provenance, read  # noqa: E402
from polrl.devices import use_every_core  # noqa: E402

MESHES = ("one", "data", "split", "processes")
KS = (0, 1, 2)
ARMS = tuple(f"{mesh}_k{k}" for mesh in MESHES for k in KS if mesh != "split" or k)
WORKER = """
import sys
sys.path.insert(0, sys.argv[1])
from polrl.launch import initialize_distributed
initialize_distributed(multihost=False, coordinator=sys.argv[2], num_processes=2, process_id=int(sys.argv[3]),
                       cpu_collectives="gloo")
import importlib
importlib.import_module("benchmarks.async").train(*sys.argv[4:])
"""
SKIP = 5
RESULTS = ROOT / "benchmarks" / "results" / "async.jsonl"
OUT = ROOT / "benchmarks" / "async.md"


def config(arm: str, seed: int, steps: int, eval_every: int):
    import ml_collections

    from experiments import chain_long_grpo

    mesh, k = arm.rsplit("_k", 1)
    c = chain_long_grpo.get_config()
    c.seed, c.total_steps, c.eval_every, c.checkpoint_every = seed, steps, eval_every, 0
    c.staleness, c.async_rollouts = int(k), int(k) > 0 or mesh == "processes"
    c.mesh = ml_collections.ConfigDict(dict(data=-1 if mesh in ("data", "processes") else 1, fsdp=1, tensor=1,
                                            expert=1))
    c.async_rollout_devices = 1 if mesh in ("split", "processes") else 0
    return c


def train(arm: str, seed: str, steps: str, eval_every: str, workdir: str) -> None:
    """One arm's training run in ``workdir`` (the work of this process, or of each child process)."""
    from polrl.train.build import build_spec
    from polrl.train.trainer import Trainer

    Trainer(build_spec(config(arm, int(seed), int(steps), int(eval_every)), progress=False), workdir).run()


def two_processes(arm: str, seed: int, steps: int, eval_every: int, workdir: pathlib.Path) -> None:
    """``train`` in two child processes of one CPU device each, over jax.distributed."""
    import os
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f)
    env = dict(os.environ, XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count=1".strip(), JAX_PLATFORMS="cpu")
    args = [str(a) for a in (arm, seed, steps, eval_every, workdir)]
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(ROOT), f"127.0.0.1:{port}", str(i), *args], env=env,
                              cwd=ROOT, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"{arm}: a training process failed:\n{err[-3000:]}")


def warm_start(base: pathlib.Path, seed: int) -> pathlib.Path:
    """The seed's SFT warm start (the config's warm-up phase alone), trained once."""
    from polrl.train.build import build_spec
    from polrl.train.trainer import Trainer

    workdir = base / f"warm_seed{seed}"
    if not (workdir / "done").exists():
        shutil.rmtree(workdir, ignore_errors=True)
        c = config("one_k0", seed, 0, 0)
        Trainer(build_spec(c, progress=False), str(workdir)).run()
        (workdir / "done").write_text("")
    return workdir


def run_arm(arm: str, seed: int, steps: int, eval_every: int, base: pathlib.Path) -> dict:
    from polrl.train import metrics as metrics_lib

    warm = warm_start(base, seed)
    workdir = base / f"{arm}_seed{seed}"
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "checkpoints").mkdir(parents=True)
    shutil.copytree(warm / "checkpoints" / "sft_warmup", workdir / "checkpoints" / "sft_warmup")
    shutil.copy(warm / "metrics.jsonl", workdir / "metrics.jsonl")
    if arm.startswith("processes"):
        two_processes(arm, seed, steps, eval_every, workdir)
    else:
        train(arm, seed, steps, eval_every, str(workdir))
    records = [r for r in metrics_lib.read_metrics(str(workdir)) if r["phase"] != "sft_warmup"]
    trained = [r for r in records if "loss" in r]
    times = [r["step_time_s"] for r in trained]
    elapsed, curve = 0.0, []
    for r in records:
        elapsed += r.get("step_time_s", 0.0)
        if "eval/accuracy" in r:
            curve.append({"step": r.get("phase_step", 0), "train_s": elapsed, "accuracy": r["eval/accuracy"]})
    median = lambda key: statistics.median(r[key] for r in trained[SKIP:]) if key in trained[-1] else None
    return {"arm": arm, "mesh": arm.rsplit("_k", 1)[0], "k": int(arm.rsplit("_k", 1)[1]), "seed": seed,
            "steps": steps, "step_time_median_s": statistics.median(times[SKIP:]), "train_s": sum(times),
            "generate_median_s": median("pipeline/generate_s"), "wait_median_s": median("pipeline/wait_s"),
            "response_tokens_mean": statistics.mean(r["response_tokens"] for r in trained),
            "warm_accuracy": curve[0]["accuracy"], "accuracy": curve[-1]["accuracy"], "curve": curve,
            **provenance()}


def speedup(records: list[dict]) -> dict:
    if not {0, 1} <= {r["k"] for r in records}:
        return {}
    best = lambda k: min((r for r in records if r["k"] == k), key=lambda r: r["step_time_median_s"])
    sync, k1 = best(0), best(1)
    return {"speedup_vs_sync": round(sync["step_time_median_s"] / k1["step_time_median_s"], 3),
            "sync_arm": sync["arm"], "async_arm": k1["arm"]}


def latest(records: list[dict]) -> list[dict]:
    """The last record of every (arm, seed): a rerun arm replaces its earlier one."""
    return list({(r["arm"], r["seed"]): r for r in records}.values())


def render(records: list[dict]) -> str:
    if not records:
        return "# Asynchronous rollouts\n\nNo results yet: `python benchmarks/async.py`.\n"
    seeds = sorted({r["seed"] for r in records})
    cpu = records[0]["cpu"]
    lines = ["# Asynchronous rollouts (benchmarks/async.py)", "",
             f"Long chain task, {records[0]['steps']} GRPO steps from one SFT warm start, {cpu}, "
             f"{records[0]['cores']} cores; seed{'s' if len(seeds) > 1 else ''} {seeds} "
             f"({'single seed' if len(seeds) == 1 else f'{len(seeds)} seeds'}). Step times are medians over the "
             f"steps after the first {SKIP}; an asynchronous step is its wait for the batch plus its update.", "",
             "| mesh | k | step (s) | steps/s | generate (s) | wait (s) | train time (s) | accuracy: warm → final |",
             "|---|---|---|---|---|---|---|---|"]
    fmt = lambda x: "—" if x is None else f"{x:.3f}"
    for r in sorted(records, key=lambda r: (MESHES.index(r["mesh"]), r["k"], r["seed"])):
        lines.append(f"| {r['mesh']} | {r['k']} | {r['step_time_median_s']:.3f} | {1 / r['step_time_median_s']:.2f} | "
                     f"{fmt(r['generate_median_s'])} | {fmt(r['wait_median_s'])} | {r['train_s']:.0f} | "
                     f"{100 * r['warm_accuracy']:.1f}% → {100 * r['accuracy']:.1f}% |")
    s = speedup(records)
    if s:
        lines += ["", f"speedup_vs_sync (fastest synchronous arm `{s['sync_arm']}` over fastest k = 1 arm "
                  f"`{s['async_arm']}`): **{s['speedup_vs_sync']:.2f}×**."]
    step = {(r["mesh"], r["k"]): r["step_time_median_s"] for r in records if r["seed"] == seeds[0]}
    ratios = [f"{mesh} k = {k}: {step[(mesh, 0)] / step[(mesh, k)]:.2f}×" for mesh in MESHES for k in KS[1:]
              if (mesh, 0) in step and (mesh, k) in step]
    if ratios:
        lines.append(f"Against the synchronous step on the same mesh (seed {seeds[0]}): {'; '.join(ratios)}.")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--eval_every", type=int, default=50)
    p.add_argument("--workdir", default="/tmp/polrl_bench_async")
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args()
    use_every_core()  # before JAX starts: one CPU device per core, for the `data` mesh
    arms = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise SystemExit(f"--arms: unknown {unknown}; choose from {list(ARMS)}")
    for arm in arms:
        record = run_arm(arm, args.seed, args.steps, args.eval_every, pathlib.Path(args.workdir))
        append(args.results, record)
        print(json.dumps({k: v for k, v in record.items() if k != "curve"}), flush=True)
    records = latest(read(args.results))
    if pathlib.Path(args.results).resolve() == RESULTS:  # the committed table shows the committed results only
        OUT.write_text(render(records))
    if records:
        print(json.dumps(speedup(records)))


if __name__ == "__main__":
    main()

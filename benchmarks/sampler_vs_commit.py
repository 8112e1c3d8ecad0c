"""Is the sampler slower than at an earlier commit? ``benchmarks/sampler.py`` here vs there.

    python benchmarks/sampler_vs_commit.py --commit REV [--rounds 3] [--repeats 15]

Checks REV out into a temporary git worktree and runs its ``benchmarks/sampler.py`` and this
tree's, one process at a time, alternately (this, REV, this, REV, …), each on the same number of
host devices (``--devices``, set through ``XLA_FLAGS`` for both, since older scripts do not set
it themselves). Each run reports the median of its ``--repeats`` timed batches (the same fixed
shape: batch 32, prompt 16, 64 new tokens); a round's ratio is this tree's tokens/s over REV's,
and ``speedup_vs_commit`` is the median over rounds. Every run and the summary are appended to
``--results`` (default ``benchmarks/results/sampler_vs_commit.jsonl``); the last line printed is
the summary as one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.provenance import append, provenance  # noqa: E402


def run_sampler(tree: pathlib.Path, devices: int, repeats: int, results: pathlib.Path) -> dict:
    """One ``benchmarks/sampler.py`` process in ``tree``; its last JSON line."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(tree)}
    args = [sys.executable, "benchmarks/sampler.py", "--repeats", str(repeats)]
    if "--results" in (tree / "benchmarks" / "sampler.py").read_text():
        args += ["--results", str(results)]  # keep the runs out of the committed sampler.jsonl
    out = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", required=True, help="the earlier revision to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--devices", type=int, default=os.cpu_count())
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "sampler_vs_commit.jsonl"))
    args = parser.parse_args()
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.commit], check=True,
                         capture_output=True, text=True).stdout.strip()
    session = {**provenance(), "baseline_commit": rev, "devices": args.devices, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        old = pathlib.Path(tmp) / "baseline"
        scratch = pathlib.Path(tmp) / "scratch.jsonl"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), rev], check=True,
                       capture_output=True)
        try:
            ratios = []
            for r in range(args.rounds):
                now = run_sampler(ROOT, args.devices, args.repeats, scratch)
                then = run_sampler(old, args.devices, args.repeats, scratch)
                ratios.append(now["tokens_per_s"] / then["tokens_per_s"])
                for name, res in (("this", now), ("baseline", then)):
                    append(args.results, {**session, "round": r, "tree": name, "tokens_per_s": res["tokens_per_s"],
                                          "seconds": res["seconds"], "load_avg_1m": res.get("load_avg_1m")})
                print(f"round {r}: this {now['tokens_per_s']:.0f} tokens/s, {rev} {then['tokens_per_s']:.0f}, "
                      f"ratio {ratios[-1]:.3f}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
    summary = {**session, "summary": True, "rounds": args.rounds, "ratio_per_round": ratios,
               "speedup_vs_commit": statistics.median(ratios)}
    append(args.results, summary)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""What every raw result records about where it was measured, and how it is stored.

Float32 rounding, and so every accuracy figure, depends on the CPU; speed depends on the CPU,
the device count and the load. ``provenance()`` is those facts plus the commit measured;
``append`` writes one JSON object per line to a results file under ``benchmarks/results/`` and
``read`` reads them back (a benchmark that resumes skips the runs it finds).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_model() -> str:
    """The CPU's model name, e.g. ``AMD EPYC 7B13``."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def commit() -> str:
    """The measured repository's HEAD (``+dirty`` when the work tree has changes), or ``unknown``."""
    def git(*args):
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def provenance() -> dict:
    """``cpu``, ``cores``, ``commit`` and the UTC ``date`` of a measurement."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "commit": commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def read(path) -> list[dict]:
    """The records of a results file (none when it does not exist yet)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def append(path: str, record: dict) -> None:
    """Appends ``record`` as one JSON line to ``path`` (its folder is created)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")

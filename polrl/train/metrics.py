"""Where metrics go: ``WORKDIR/metrics.jsonl`` (one JSON object per line), TensorBoard, and a PNG
of the learning curves at the end of a run."""
from __future__ import annotations

import json
import math
import os
from typing import Mapping

import numpy as np


def to_python(metrics: Mapping) -> dict:
    """Host floats/ints from device scalars (one transfer for the whole dict)."""
    out = {}
    for k, v in metrics.items():
        v = np.asarray(v) if not isinstance(v, (str, int, float)) else v
        if isinstance(v, np.ndarray):
            v = v.item()
        out[k] = v
    return out


class MetricWriter:
    """Appends metric records to ``metrics.jsonl`` and TensorBoard under ``workdir``.

    A record is a dict with at least ``step`` (global step) and ``phase``. Each record is one
    ``write(2)`` of a whole line to a file opened with ``O_APPEND``, so a killed run leaves only
    complete lines (at worst a partial last one, which ``truncate`` and ``read_metrics`` drop).
    ``lines`` counts the complete lines in the file; checkpoints store it, and a resumed run
    ``truncate``s the file back to it, so no record is ever duplicated.

    ``active=False`` (every process but the first of a multi-host run) writes nothing.
    """

    def __init__(self, workdir: str, *, tensorboard: bool = True, active: bool = True):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.active = active
        self._fd = None
        self._tb = None
        self.lines = 0
        if not active:
            return
        os.makedirs(workdir, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        with open(self.path, "rb") as f:
            self.lines = f.read().count(b"\n")
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, record: Mapping) -> None:
        if not self.active:
            return
        record = to_python(record)
        line = (json.dumps(record, allow_nan=True) + "\n").encode("utf-8")
        if os.write(self._fd, line) != len(line):
            raise OSError(f"short write to {self.path}")
        self.lines += 1
        if self._tb is not None:
            step = record["step"]
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k if "/" in k else f"{record['phase']}/{k}", v, step)

    def truncate(self, lines: int) -> None:
        """Keeps the first ``lines`` complete lines of the file and drops everything after (a
        file with fewer lines, e.g. deleted by hand, loses only its partial last line)."""
        if not self.active:
            return
        with open(self.path, "rb") as f:
            data = f.read()
        end, kept = 0, 0
        while kept < lines and (nl := data.find(b"\n", end)) >= 0:
            end, kept = nl + 1, kept + 1
        os.ftruncate(self._fd, end)
        self.lines = kept

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir_or_path: str) -> list[dict]:
    path = workdir_or_path
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.endswith("\n") and line.strip()]


CURVES = (
    ("reward_mean", "train reward"),
    ("eval/accuracy", "held-out accuracy"),
    ("kl", "KL to reference"),
    ("entropy", "entropy"),
    ("response_length", "response length"),
    ("loss", "loss"),
)


def plot_curves(records: list[dict], path: str) -> str | None:
    """Writes a PNG grid of the standard curves (one colour per phase); returns its path."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's) is left alone

    present = [(k, t) for k, t in CURVES if any(k in r for r in records)]
    if not present:
        return None
    cols = min(3, len(present))
    rows = math.ceil(len(present) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    phases = list(dict.fromkeys(r["phase"] for r in records))
    colors = {phase: f"C{i}" for i, phase in enumerate(phases)}
    for ax, (key, title) in zip(axes.flat, present):
        for phase in phases:
            pts = [(r["step"], r[key]) for r in records if r["phase"] == phase and key in r]
            if not pts:
                continue
            xs, ys = map(np.asarray, zip(*pts))
            if key.startswith("eval/"):
                ax.plot(xs, ys, marker="o", ms=3, color=colors[phase], label=phase)
                continue
            ax.plot(xs, ys, color=colors[phase], alpha=0.25, lw=0.6)
            window = max(1, len(ys) // 50)
            if window > 1:  # a moving average over ~2% of the phase, drawn on top of the raw steps
                smooth = np.convolve(ys, np.ones(window) / window, mode="valid")
                xs = xs[window - 1:]
            else:
                smooth = ys
            ax.plot(xs, smooth, color=colors[phase], label=phase)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    handles = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels())}
    axes.flat[0].legend(handles.values(), handles.keys())
    for ax in list(axes.flat)[len(present):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path

"""The loop every guided-benchmark companion script shares: run each (arm, seed) its results file
lacks at the requested budget, append each record as it finishes, and return every record."""
from __future__ import annotations

import json
import pathlib
from typing import Any, Callable, Sequence

from benchmarks.provenance import append, read

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def parse_arms(text: str, known: Sequence[str]) -> list[str]:
    """The comma-separated ``--arms``; SystemExit naming the unknown ones."""
    arms = [a.strip() for a in text.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(known))
    if unknown:
        raise SystemExit(f"--arms: unknown {unknown}; use some of {list(known)}")
    return arms


def run_missing(path: str, arms: Sequence[str], seeds: Sequence[int], budget: int,
                run: Callable[[str, int, Any], dict], shown: Sequence[str],
                prepare_seed: Callable[[int], Any] = lambda seed: None) -> list[dict]:
    """Runs ``run(arm, seed, prepared)`` for every (arm, seed) without a record of ``budget`` in
    ``path`` (``prepared = prepare_seed(seed)``, called only for seeds with a missing arm),
    appends each record and prints its ``shown`` fields; returns the file's records plus the new."""
    done = read(path)
    have = {(r["arm"], r["seed"], r.get("budget")) for r in done}
    for seed in seeds:
        missing = [arm for arm in arms if (arm, seed, budget) not in have]
        if not missing:
            continue
        prepared = prepare_seed(seed)
        for arm in missing:
            record = run(arm, seed, prepared)
            append(path, record)
            done.append(record)
            print(json.dumps({k: record.get(k) for k in shown}), flush=True)
    return done


def records(script: str) -> list[dict]:
    """The records of ``benchmarks/results/<script>.jsonl``, one per (arm, seed, budget): the last."""
    last = {(r["arm"], r["seed"], r.get("budget")): r for r in read(str(RESULTS / f"{script}.jsonl"))}
    return list(last.values())


def runs(script: str) -> dict:
    """``{(arm, seed): record}`` of a companion's results, at each arm's largest budget (empty when absent)."""
    by_arm_seed = {}
    for r in sorted(records(script), key=lambda r: r.get("budget") or 0):
        by_arm_seed[(r["arm"], r["seed"])] = r
    return by_arm_seed

"""Each paper's claim judged against the algorithm tables, paired by seed: ``algorithms_claims.md``.

    python benchmarks/claims.py          # rewrite benchmarks/algorithms_claims.md
    python benchmarks/claims.py --check  # exit 1 when the committed file is stale (the suite runs it)

Every noun's runs of a seed start from that seed's warm start, so a claim "X beats Y" is judged on
the paired differences d_s = acc_X(s) − acc_Y(s): their mean, the seeds X wins, a one-sided sign
test (ties dropped) and a 90% paired bootstrap interval of the mean difference (10,000 resamples
of the seeds, fixed generator). Verdicts:

* "better" claims — **reproduced** when the interval lies above 0 and X wins every seed;
  **direction only** when the mean difference is positive and X wins more seeds than it loses;
  **inconclusive** when the mean is positive but it does not; **not reproduced** when the mean
  difference is ≤ 0;
* "parity" claims (the same accuracy as the baseline, with another advantage) — **parity
  consistent** when the interval contains 0 or lies above it; **not reproduced** when it lies
  below 0;
* aspects the setting cannot show (response length, MoE, memory, pass@k on 2–3-token answers)
  are listed as **not checkable** with the reason.

With 3 seeds no sign test can reach p < 0.125, so "reproduced" here means a consistent direction,
not significance; the table says how many seeds each comparison has.
"""
from __future__ import annotations

import argparse
import math
import pathlib
import statistics
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import provenance  # noqa: E402

OUT = ROOT / "benchmarks" / "algorithms_claims.md"

# (noun, baseline, kind, the paper's claim, what the setting cannot check (or "")); the table a
# pair is read from is the one that holds both nouns (algorithms.jsonl first).
CLAIMS = (
    ("dapo", "grpo", "better", "higher accuracy than GRPO (clip-higher avoids entropy collapse)", "response-length shaping"),
    ("gspo", "grpo", "better", "better efficiency and accuracy than GRPO", "MoE routing stability"),
    ("sapo", "grpo", "better", "beats GRPO and GSPO, more stable", ""),
    ("sapo", "gspo", "better", "beats GSPO", ""),
    ("cispo", "grpo", "better", "beats the clipped variants", ""),
    ("cispo", "dapo", "better", "reaches DAPO's accuracy in about half the steps", ""),
    ("dr_grpo", "grpo", "parity", "GRPO's accuracy", "shorter incorrect answers (lengths are 2–3 tokens here; see length.md)"),
    ("drpo", "grpo", "parity", "GRPO's accuracy", "much shorter answers"),
    ("rloo", "ppo", "better", "beats PPO", ""),
    ("remax", "ppo", "parity", "matches PPO", "the memory saving"),
    ("reinforce_pp", "grpo", "better", "more stable than GRPO, with a smaller KL", "its KL sits in the reward"),
    ("chord", "grpo", "better", "beats SFT-then-RL", ""),
    ("opmd", "grpo", "better", "stable regularised REINFORCE (INFERRED)", ""),
    ("asymre", "grpo", "better", "a baseline slightly under the mean improves stably", ""),
    ("rec", "grpo", "better", "REINFORCE with the clip as a mask ≥ GRPO (INFERRED)", ""),
    ("lp_reg", "grpo", "better", "prevents entropy collapse; beats GRPO", ""),
    ("rover", "grpo", "better", "higher quality and diversity than GRPO", "diversity (pass@k) on 2–3-token answers"),
    ("rl_plus", "grpo", "better", "beats RLVR methods", "pass@k"),
    ("remix", "grpo", "better", "the same or better accuracy with far fewer rollouts", ""),
    ("mdpo", "ppo", "parity", "matches or beats PPO (a control-setting claim)", ""),
    ("tppo", "ppo", "parity", "PPO's accuracy at higher efficiency", "efficiency on long responses"),
    ("gmpo", "grpo", "better", "more stable and better than GRPO", ""),
    ("clip_cov", "grpo", "better", "keeps entropy up and beats GRPO", ""),
    ("kl_cov", "grpo", "better", "keeps entropy up and beats GRPO", ""),
    ("gpg", "grpo", "better", "a simpler baseline that beats GRPO", ""),
    ("opo", "grpo", "better", "more stable, higher entropy than GRPO", ""),
    ("passk_grpo", "grpo", "parity", "raises pass@k at little cost in pass@1 (INFERRED)", "pass@k (greedy evaluation only)"),
    ("simpo", "dpo", "better", "outperforms DPO without a reference model", "length exploitation"),
    ("orpo", "dpo", "better", "preference alignment without a reference model or a separate SFT phase, ≥ DPO", ""),
    ("kto", "dpo", "parity", "matches or exceeds DPO from binary (unpaired) signals", ""),
    ("otb", "grpo", "better", "a lower-variance baseline than the group mean, so better learning (INFERRED)", "gradient variance"),
)
TABLES = ("catalogue", "algorithms")  # the newer table first


def paired(table: list[dict], noun: str, base: str):
    a = {r["seed"]: r for r in table if r["noun"] == noun}
    b = {r["seed"]: r for r in table if r["noun"] == base}
    seeds = sorted(set(a) & set(b))
    return seeds, [a[s]["accuracy"] - b[s]["accuracy"] for s in seeds], [a[s].get("entropy") for s in seeds], \
        [b[s].get("entropy") for s in seeds]


def last_evals_mean(run: dict, n: int = 3) -> float:
    """A run's accuracy: the mean of its last ``n`` held-out evaluations (``run["evals"]``), one per
    step (a phase's end and the next phase's start evaluate the same parameters at the same step)."""
    by_step = {e["step"]: e["eval/accuracy"] for e in run["evals"]}
    tail = [by_step[s] for s in sorted(by_step)][-n:]
    return sum(tail) / len(tail)


def paired_runs(runs: dict, arm: str, base: str, fn):
    """``(seeds, [fn(arm's run) − fn(base's run)])`` over the seeds both arms ran; ``runs`` is keyed by
    ``(arm, seed)``."""
    seeds = sorted(s for (a, s) in runs if a == arm and (base, s) in runs)
    return seeds, [fn(runs[(arm, s)]) - fn(runs[(base, s)]) for s in seeds]


def sign_test(diffs) -> float:
    """One-sided P(wins ≥ observed) under a fair coin, ties dropped."""
    nonzero = [d for d in diffs if d != 0]
    n, wins = len(nonzero), sum(d > 0 for d in nonzero)
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2 ** n if n else 1.0


def bootstrap(diffs, level: float = 0.9, resamples: int = 10_000) -> tuple[float, float]:
    x = np.asarray(diffs, np.float64)
    rng = np.random.default_rng(0)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    return float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2))


def verdict(kind: str, diffs, low: float, high: float) -> str:
    mean = statistics.mean(diffs)
    if kind == "parity":
        return "parity consistent" if high >= 0 else "not reproduced"
    wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    if low > 0 and losses == 0 and wins == len(diffs):
        return "reproduced"
    if mean <= 0:
        return "not reproduced"
    return "direction only" if wins > losses else "inconclusive"


def render() -> str:
    tables = {name: provenance.read(ROOT / "benchmarks" / "results" / f"{name}.jsonl") for name in TABLES}
    lines = [
        "# What the algorithm tables say about each paper's claim",
        "",
        "Written by `python benchmarks/claims.py` from `benchmarks/results/algorithms.jsonl` "
        "([`algorithms.md`](algorithms.md): 600 steps, one XLA device, before the rollout engine) and "
        "`benchmarks/results/catalogue.jsonl` ([`catalogue.md`](catalogue.md): 600 steps, one device per core, "
        "after it); each comparison is read from the newest table that holds both nouns, paired by seed (every noun of a "
        "seed starts from the same warm start). Δ: mean paired difference in held-out accuracy, points; wins: seeds "
        "where the noun is ahead; p: one-sided sign test; 90% CI: paired bootstrap of the mean difference. The "
        "setting is a tiny dense model and 2–3-token answers, so claims about response length, MoE, memory or "
        "pass@k are not checkable here. Verdict rules are in the script's docstring. The claims come from each paper's abstract; "
        "INFERRED marks one the abstract does not state outright.",
        "",
        "| noun | paper's claim | baseline | table | seeds | Δ (points) | wins | p | 90% CI | entropy (noun / baseline) | verdict | not checkable here |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for noun, base, kind, claim, unchecked in CLAIMS:
        name = next((t for t in TABLES if paired(tables[t], noun, base)[0]), None)
        if name is None:
            lines.append(f"| `{noun}` | {claim} | `{base}` | – | 0 | – | – | – | – | – | no paired runs | {unchecked or '–'} |")
            continue
        seeds, diffs, ent_a, ent_b = paired(tables[name], noun, base)
        low, high = bootstrap(diffs)
        ent = lambda xs: "–" if any(x is None for x in xs) else f"{statistics.mean(xs):.3f}"
        lines.append(
            f"| `{noun}` | {claim} | `{base}` | {name} | {len(seeds)} | {100 * statistics.mean(diffs):+.1f} | "
            f"{sum(d > 0 for d in diffs)}/{len(diffs)} | {sign_test(diffs):.3f} | [{100 * low:+.1f}, {100 * high:+.1f}] | "
            f"{ent(ent_a)} / {ent(ent_b)} | {verdict(kind, diffs, low, high)} | {unchecked or '–'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        if OUT.read_text() != text:
            raise SystemExit(f"{OUT} is stale; run python benchmarks/claims.py")
        return
    OUT.write_text(text)


if __name__ == "__main__":
    main()

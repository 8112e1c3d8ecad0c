"""The long-reasoning testbed: GRPO, Dr.GRPO, DAPO and SFT on the long chain task, paired seeds.

Every arm of a seed starts from that seed's SFT warm start (``experiments/chain_long_grpo.py``:
1000 demonstrations, trained once and copied into every run, as in ``benchmarks/algorithms.py``)
and runs ``--steps`` main-phase steps with its own ``experiments/chain_long_<noun>.py`` config:

* ``grpo``             the GRPO paper's loss (std-normalised advantage, per-response token mean);
* ``grpo_token_mean``  the same with DAPO's token-level loss alone (the aggregation ablation);
* ``dr_grpo``          no std, per-response token sum over the constant budget T_max;
* ``dapo``             clip-higher, token-level loss, dynamic sampling (2× prompts drawn), overlong shaping;
* ``sft``              SFT continued on the same demonstrations (the control RL has to beat): one
                       SFT phase of warm-start + ``--steps`` steps, whose first steps are the warm
                       start's, read from the end of the warm start on.

Each run is evaluated every ``--eval_every`` steps on the 500 held-out prompts (greedy exact
match of the final answer, and the greedy response length) and logs, per step, the lengths of
its right and wrong samples, entropy and the tokens it samples and trains on.

Counted compute: forward FLOPs per token F = ``transformer_forward_flops`` (2 × matmul weights
+ attention at the mean context of a row, half its prompt + response length); a step costs
F × (sampled prompt + response tokens) for the rollout (DAPO's extra drawn prompts included)
plus 3F × (trained prompt + response tokens) per update epoch (forward + backward; no reference
or π_old forward runs here: β = 0 and one update per batch). SFT samples nothing.

Writes one JSON line per run to ``--results`` (per-step series and the evaluation curve), then
``benchmarks/length.md`` (seed mean ± std, paired differences against GRPO with a one-sided sign
test and a 90% bootstrap interval, per-seed values) and ``benchmarks/length.png`` (accuracy
against counted compute; length of wrong samples against steps). Runs already in the results
file are not run again.

Usage (from the repository root)::

  python benchmarks/length.py                          # seeds 0 1 2, 200 steps
  python benchmarks/length.py --seeds 0 --steps 50     # a quick look
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import algorithms as algorithms_bench  # noqa: E402
from benchmarks.claims import bootstrap, last_evals_mean, paired_runs, sign_test, verdict  # noqa: E402
from benchmarks.provenance import append, provenance, read  # noqa: E402
from benchmarks.stats import mean_std  # noqa: E402

FAMILY = "chain_long"
# arm → (noun, config overrides)
ARMS = {
    "grpo": ("grpo", {}),
    "grpo_token_mean": ("grpo", {"algorithm_kwargs.aggregation": "token_mean"}),
    "dr_grpo": ("dr_grpo", {}),
    "dapo": ("dapo", {}),
    "sft": ("sft", {}),
}
SERIES = ("accuracy", "response_length", "response_length_correct", "response_length_incorrect", "entropy",
          "response_tokens", "update_tokens", "update_prompt_tokens", "step_time_s", "clip_frac")
EVAL_KEYS = ("eval/accuracy", "eval/greedy_length")
LAST_EVALS = 3  # a run's accuracy: the mean of its last 3 evaluations
TAIL = 0.25  # lengths and entropy: the last quarter of the steps
MIN_SEEDS = 3  # a claim gets a verdict from this many paired seeds on
# (arm, baseline, kind, claim): judged on the paired differences in held-out accuracy
CLAIMS = (
    ("grpo", "sft", "better", "RL from unlabelled prompts goes beyond SFT on the demonstrations"),
    ("dr_grpo", "grpo", "parity", "Dr.GRPO: GRPO's accuracy (with shorter wrong answers, read in the length table)"),
    ("grpo_token_mean", "grpo", "better", "DAPO: the token-level loss trains better than the per-response mean"),
    ("dapo", "grpo", "better", "DAPO beats GRPO (same steps; it samples 2× the prompts)"),
)


def _config_model(noun: str):
    import importlib

    from polrl.models import TransformerConfig
    from polrl.tasks.tokenizer import CharTokenizer

    config = importlib.import_module(f"experiments.{FAMILY}_{noun}").get_config()
    return config, TransformerConfig(vocab_size=CharTokenizer().vocab_size, **dict(config.model))


def warm_steps() -> int:
    """The warm start's SFT steps: where every arm's main phase begins."""
    return _config_model("grpo")[0].warmup.steps


def compact(arm: str, record: dict) -> dict:
    """The run's record with its log reduced to the per-step ``SERIES`` and the evaluations from
    the end of the warm start on (the ``sft`` arm's single phase includes the warm start's steps)."""
    warm = warm_steps()
    records = [r for r in record.pop("records") if r["step"] >= warm]
    steps = [r for r in records if "loss" in r and r["step"] > warm]
    evals = [{"step": r["step"], **{k: r[k] for k in EVAL_KEYS}} for r in records if "eval/accuracy" in r]
    series = {k: [round(float(r[k]), 4) for r in steps] for k in SERIES if all(k in r for r in steps)}
    series["step"] = [r["step"] for r in steps]
    record["first_eval"], record["last_eval"] = evals[0], evals[-1]
    record["warm_accuracy"], record["steps"] = evals[0]["eval/accuracy"], len(steps)
    record.pop("run_means", None)
    return {**record, "arm": arm, "series": series, "evals": evals}


def step_flops(arm: str, series: dict) -> list[float]:
    """Counted training compute of every step (see the module docstring), FLOPs."""
    from polrl.models.flops import transformer_forward_flops

    noun, _ = ARMS[arm]
    config, model = _config_model(noun)
    oversample = config.algorithm_kwargs.get("oversample", 1)
    rows = config.demos.batch_size if noun == "sft" else config.rollout.batch_size
    out = []
    for resp, upd, upd_prompt in zip(series["response_tokens"], series["update_tokens"], series["update_prompt_tokens"]):
        sampled = 0.0 if noun == "sft" else resp + oversample * upd_prompt
        trained = upd + upd_prompt
        f = transformer_forward_flops(model, 1.0, 0.5 * trained / rows)
        out.append(f * sampled + 3.0 * f * trained)
    return out


def accuracy(run: dict) -> float:
    """The mean of the run's last ``LAST_EVALS`` held-out evaluations (``claims.last_evals_mean``)."""
    return last_evals_mean(run, LAST_EVALS)


def tail_mean(run: dict, key: str) -> float | None:
    """``key`` over the last ``TAIL`` of the steps; the lengths of right (wrong) samples are
    weighted by each step's count of right (wrong) samples. None when the run does not log ``key``
    (SFT samples nothing) or no step had any such sample."""
    s = run["series"]
    if key not in s:
        return None
    start = int(len(s["step"]) * (1 - TAIL))
    values = s[key][start:]
    weights = [1.0] * len(values)
    if key in ("response_length_correct", "response_length_incorrect"):
        acc = s["accuracy"][start:]
        weights = acc if key == "response_length_correct" else [1 - a for a in acc]
    total = sum(weights)
    return sum(v * w for v, w in zip(values, weights)) / total if total > 0 else None


def total_flops(run: dict) -> float:
    return sum(step_flops(run["arm"], run["series"]))


def _index(done: list[dict]):
    """``(runs by (arm, seed), arms present in ARMS order, seeds)``."""
    runs = {(r["arm"], r["seed"]): r for r in done}
    return runs, [a for a in ARMS if any(k[0] == a for k in runs)], sorted({s for _, s in runs})


def render(done: list[dict], steps: int) -> str:
    """``length.md`` from the run records (the module docstring)."""
    runs, arms, seeds = _index(done)
    of = lambda arm, fn: [fn(runs[(arm, s)]) for s in seeds if (arm, s) in runs]
    cpus = sorted({r.get("cpu") or "unrecorded" for r in done})
    lines = [
        "# The long-reasoning testbed: GRPO, Dr.GRPO, DAPO and SFT on the long chain task",
        "",
        f"Written by `python benchmarks/length.py` from `benchmarks/results/length.jsonl`; CPU {' / '.join(cpus)}; "
        f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))}), paired: every arm of a seed starts from the same SFT warm "
        f"start (1000 demonstrations, 600 steps); {steps} main-phase steps; mean ± std over seeds. Accuracy: greedy exact "
        f"match of the final answer on the 500 held-out prompts, the mean of a run's last {LAST_EVALS} evaluations. "
        f"Lengths (tokens) and entropy: the training samples of the last {int(100 * TAIL)}% of the steps; greedy length: "
        "the held-out greedy responses at the last evaluation. Compute: counted forward + backward FLOPs (the script's "
        "docstring), sampling included.",
        "",
        "| arm | accuracy % | Δ vs GRPO (points) | length, right samples | length, wrong samples | greedy length | "
        "entropy | compute, TFLOPs |",
        "|---|---|---|---|---|---|---|---|",
        f"| SFT warm start | {mean_std(of('grpo', lambda r: r['first_eval']['eval/accuracy']), 100)} | – | – | – | "
        f"{mean_std(of('grpo', lambda r: r['first_eval']['eval/greedy_length']))} | – | – |",
    ]
    for arm in arms:
        _, diffs = paired_runs(runs, arm, "grpo", accuracy)
        delta = "–" if arm == "grpo" or not diffs else f"{100 * statistics.mean(diffs):+.1f}"
        lines.append(
            f"| `{arm}` | {mean_std(of(arm, accuracy), 100)} | {delta} | "
            f"{mean_std(of(arm, lambda r: tail_mean(r, 'response_length_correct')))} | "
            f"{mean_std(of(arm, lambda r: tail_mean(r, 'response_length_incorrect')))} | "
            f"{mean_std(of(arm, lambda r: r['evals'][-1]['eval/greedy_length']))} | "
            f"{mean_std(of(arm, lambda r: tail_mean(r, 'entropy')), 1, 3)} | "
            f"{mean_std(of(arm, total_flops), 1e-12, 1)} |")
    lines += [
        "",
        "Claims, judged on the paired differences in held-out accuracy (Δ: mean, points; wins: seeds ahead; p: one-sided "
        "sign test; 90% CI: paired bootstrap; verdict rules: `benchmarks/claims.py`):",
        "",
        "| claim | arm | baseline | seeds | Δ | wins | p | 90% CI | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, base, kind, claim in CLAIMS:
        s, diffs = paired_runs(runs, arm, base, accuracy)
        if not diffs:
            continue
        low, high = bootstrap(diffs)
        judged = verdict(kind, diffs, low, high) if len(diffs) >= MIN_SEEDS else f"fewer than {MIN_SEEDS} seeds"
        lines.append(f"| {claim} | `{arm}` | `{base}` | {len(s)} | {100 * statistics.mean(diffs):+.1f} | "
                     f"{sum(d > 0 for d in diffs)}/{len(diffs)} | {sign_test(diffs):.3f} | "
                     f"[{100 * low:+.1f}, {100 * high:+.1f}] | {judged} |")
    _, wrong = paired_runs(runs, "dr_grpo", "grpo", lambda r: tail_mean(r, "response_length_incorrect") or 0.0)
    if wrong:
        lines += ["", f"Length of wrong samples, Dr.GRPO − GRPO, paired: {statistics.mean(wrong):+.1f} tokens "
                      f"({sum(d < 0 for d in wrong)}/{len(wrong)} seeds shorter)."]
    lines += ["", "Per seed (accuracy %; in parentheses: mean length of wrong samples, tokens):", "",
              "| seed | warm | " + " | ".join(f"`{a}`" for a in arms) + " |", "|---|---|" + "---|" * len(arms)]
    for s in seeds:
        warm = runs[("grpo", s)]["first_eval"]["eval/accuracy"] if ("grpo", s) in runs else None
        cells = []
        for a in arms:
            r = runs.get((a, s))
            wl = tail_mean(r, "response_length_incorrect") if r else None
            cells.append("–" if r is None else f"{100 * accuracy(r):.1f}" + (f" ({wl:.1f})" if wl is not None else ""))
        lines.append(f"| {s} | {'–' if warm is None else f'{100 * warm:.1f}'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(done: list[dict], path_md: pathlib.Path, steps: int) -> None:
    """``length.md`` and ``length.png`` beside it."""
    path_md.write_text(render(done, steps))
    _plot(*_index(done), path_md.with_suffix(".png"))


def _plot(runs, arms, seeds, path_png: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for arm in arms:
        rs = [runs[(arm, s)] for s in seeds if (arm, s) in runs]
        n = min(len(r["evals"]) for r in rs)
        steps = [e["step"] for e in rs[0]["evals"][:n]]
        acc = np.mean([[e["eval/accuracy"] for e in r["evals"][:n]] for r in rs], axis=0)
        flops = np.mean([np.concatenate([[0.0], np.cumsum(step_flops(arm, r["series"]))]) for r in rs], axis=0)
        first = rs[0]["series"]["step"][0] - 1
        ax1.plot([flops[s - first] / 1e12 for s in steps], 100 * acc, marker="o", ms=3, label=arm)
        if arm != "sft":
            wrong = np.mean([r["series"]["response_length_incorrect"] for r in rs], axis=0)
            k = 10
            ax2.plot(np.arange(k, len(wrong) + 1), np.convolve(wrong, np.ones(k) / k, mode="valid"), label=arm)
    ax1.set(xlabel="counted training compute, TFLOPs", ylabel="held-out accuracy, % (seed mean)")
    ax2.set(xlabel="main-phase step", ylabel="length of wrong samples, tokens (10-step mean)")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_png, dpi=110)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=200, help="main-phase steps per run")
    p.add_argument("--eval_every", type=int, default=25)
    p.add_argument("--workdir", default="/tmp/polrl_bench_length")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "length.jsonl"))
    p.add_argument("--report", default=str(ROOT / "benchmarks" / "length.md"))
    args = p.parse_args(argv)

    base = algorithms_bench.prepare(args.workdir)
    done = [r for r in read(args.results) if r["steps"] == args.steps]
    have = {(r["arm"], r["seed"]) for r in done}
    for seed in args.seeds:
        for arm in [a.strip() for a in args.arms.split(",") if a.strip()]:
            if (arm, seed) in have:
                continue
            noun, overrides = ARMS[arm]
            tag = "" if arm == noun else arm[len(noun):]
            total = args.steps + (warm_steps() if noun == "sft" else 0)  # sft: one phase from the start
            r = algorithms_bench.run_one(noun, seed, total, base, overrides=overrides, tag=tag, family=FAMILY,
                                         eval_every=args.eval_every)
            r = {**compact(arm, r), **provenance()}
            print(json.dumps({k: r[k] for k in ("arm", "seed", "warm_accuracy", "accuracy", "seconds")}), flush=True)
            append(args.results, r)
            done.append(r)
    write_report(done, pathlib.Path(args.report), args.steps)
    print(json.dumps({"report": args.report, "runs": len(done)}))


if __name__ == "__main__":
    main()

"""CT² detectability of the chain task's policies: the SFT warm start, GRPO, and GRPO with the
detectability penalty, each beside its accuracy.

"Counter Turing Test (CT^2): AI-Generated Text Detection is Not as Easy as You May Think --
Introducing AI Detectability Index" (arXiv 2310.05030) scores how detectable a generator's texts
are; here the texts are the policy's answers to held-out chain prompts, the reference ("human")
texts the task's labelled demonstrations of the same prompts, and the scorer the SFT warm start
(``polrl.detectability``). The setting is experiments/chain_grpo.py's (its model, demonstrations,
``--warmup`` SFT steps, 16 prompts × 8 samples per GRPO step, learning rate), with ``EVAL_PROMPTS``
held-out prompts. For every seed the arms start from that seed's SFT warm start (the
``sft_warmup`` phase, trained once under ``--workdir`` and copied into each run, as
``benchmarks/algorithms.py`` does) and run ``--steps`` GRPO steps:

* ``grpo``      ``experiments/chain_grpo.py`` with the detectability evaluation on;
* ``grpo_ct2``  ``experiments/chain_grpo_ct2.py`` with GRPO's advantage divided by the group's std
                (``algorithm_kwargs.scale = "std"``): the reward minus λ = 0.05 × the answer's mean
                token log-likelihood under the warm start (``config.detect_penalty``);
* ``grpo_mean``  ``grpo`` with the advantage r − mean_g(r), not divided by the group's std
                 (``algorithm_kwargs.scale = "none"``, Dr.GRPO's advantage; the loss is unchanged);
* ``grpo_mean_ct2``  ``experiments/chain_grpo_ct2.py`` as it ships: the penalty with that advantage.

GRPO's std normalisation makes a group whose answers are all right or all wrong — most groups at
this budget — carry the penalty at full strength: its only reward spread is λ·d, and dividing by
that spread's std undoes λ. Without the std the penalty moves the advantage by λ·(d − mean_g d),
small beside the verifier's ±1, so the ``grpo_mean`` arms compare the penalty at the strength λ
says.

Every run evaluates on ``EVAL_PROMPTS`` held-out prompts every ``--eval_every`` steps: greedy exact
match, and per detector (log-likelihood, perplexity, log-rank, entropy, burstiness) the AUROC of
generated against reference texts and the ADI, for the greedy answers and for 4 samples per prompt.
The warm start's row is the first evaluation of the main phase (the same parameters and scorer in
every arm); a run's accuracy is the mean of its last ``LAST_EVALS`` evaluations, its detectability
the last evaluation's. One JSON line per run is appended to ``--results``; runs already there are
not run again; a markdown table is printed (``render``).

Usage (from the repository root)::

  python benchmarks/frontier_ct2.py --seeds 0 1 2 --steps 100 --warmup 500
"""
from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import algorithms as algorithms_bench, companion  # noqa: E402
from benchmarks.claims import last_evals_mean  # noqa: E402
from benchmarks.provenance import provenance  # noqa: E402
from benchmarks.stats import mean_std  # noqa: E402

# arm → (experiment experiments/chain_<name>.py, λ of its detectability penalty or None for the experiment's,
#        algorithm_kwargs overrides)
ARMS = {"grpo": ("grpo", None, {}), "grpo_ct2": ("grpo_ct2", None, {"scale": "std"}),
        "grpo_mean": ("grpo", None, {"scale": "none"}), "grpo_mean_ct2": ("grpo_ct2", None, {"scale": "none"})}
LAST_EVALS = 2
EVAL_PROMPTS = 200
DETECTORS = ("log_likelihood", "perplexity", "log_rank", "entropy", "burstiness")
# the evaluation keys a record keeps, for the warm start (first evaluation) and the last one
KEYS = ("eval/accuracy", *(f"eval/detect_{s}auroc_{d}" for s in ("", "sampled_") for d in DETECTORS),
        "eval/detect_adi", "eval/detect_sampled_adi")
SETTING = {"task": dict(num_test=EVAL_PROMPTS),
           "eval": dict(num_examples=EVAL_PROMPTS, batch_size=EVAL_PROMPTS, detect=True, detect_separator=",", samples=4)}


def config(arm: str, seed: int, steps: int, warmup: int, eval_every: int):
    """The arm's experiment in the benchmark's ``SETTING``: ``warmup`` SFT steps, ``steps`` GRPO steps."""
    experiment, coef, algorithm = ARMS[arm]
    c = importlib.import_module(f"experiments.chain_{experiment}").get_config()
    for section, fields in SETTING.items():
        c[section].update(fields)
    if coef is not None:
        c.detect_penalty.coef = coef
    c.algorithm_kwargs.update(algorithm)
    c.warmup.steps = warmup
    c.update(seed=seed, total_steps=steps, eval_every=eval_every, checkpoint_every=0, log_every=1)
    return c


def warm_start(base: pathlib.Path, seed: int, warmup: int) -> pathlib.Path:
    """The seed's SFT warm start, trained once (a run with 0 GRPO steps)."""
    workdir = base / f"warm_seed{seed}_sft{warmup}"
    if not (workdir / "done").exists():
        shutil.rmtree(workdir, ignore_errors=True)
        algorithms_bench._run(config("grpo", seed, 0, warmup, 10**9), workdir)
        (workdir / "done").write_text("")
    return workdir


def run_arm(arm: str, seed: int, steps: int, warmup: int, eval_every: int, base: pathlib.Path) -> dict:
    from polrl.train import metrics as metrics_lib

    warm = warm_start(base, seed, warmup)
    workdir = base / f"{arm}_seed{seed}"
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "checkpoints").mkdir(parents=True)
    shutil.copytree(warm / "checkpoints" / "sft_warmup", workdir / "checkpoints" / "sft_warmup")
    with open(workdir / "metrics.jsonl", "w") as f:  # the run's log starts with its warm start's
        f.writelines(json.dumps(r) + "\n" for r in metrics_lib.read_metrics(str(warm)) if r["phase"] == "sft_warmup")
    c = config(arm, seed, steps, warmup, eval_every)
    _, _, seconds = algorithms_bench._run(c, workdir)
    records = [r for r in metrics_lib.read_metrics(str(workdir)) if r["phase"] != "sft_warmup"]
    evals = [r for r in records if "eval/accuracy" in r]  # first: the warm start
    steps_log = [r for r in records if "loss" in r]
    mean = lambda k: sum(r[k] for r in steps_log if k in r) / max(1, sum(k in r for r in steps_log))
    return {"arm": arm, "seed": seed, "budget": steps, "warmup": warmup, "seconds": seconds,
            "detect_penalty_coef": c.detect_penalty.coef if "detect_penalty" in c else None,
            "advantage_scale": c.algorithm_kwargs.get("scale", "std"),
            "evals": [{"step": r["step"], "phase": r["phase"], "eval/accuracy": r["eval/accuracy"]} for r in evals],
            "accuracy": evals[-1]["eval/accuracy"], "warm": {k: evals[0][k] for k in KEYS},
            "last": {k: evals[-1][k] for k in KEYS}, "reward_mean": mean("reward_mean"),
            "verifier_reward_mean": mean("verifier_reward_mean") if "detect_penalty" in c else mean("reward_mean"),
            **provenance()}


def render(done: list[dict]) -> str:
    """A markdown table: the warm start, then each arm, each as the seed mean ± std of held-out
    accuracy and of every detector's AUROC (greedy answers, then samples) and the ADI."""
    rows = ["| policy | seeds | GRPO steps | held-out accuracy | " +
            " | ".join(f"AUROC {d}" for d in DETECTORS) + " | ADI | " +
            " | ".join(f"sampled AUROC {d}" for d in DETECTORS) + " | sampled ADI |",
            "|" + "---|" * (4 + 2 * len(DETECTORS) + 2)]
    cell = lambda runs, f, scale=1.0, digits=3: mean_std([f(r) for r in runs], scale, digits)

    def row(name, runs, budget, which, accuracy):
        keys = [f"eval/detect_auroc_{d}" for d in DETECTORS] + ["eval/detect_adi"]
        keys += [f"eval/detect_sampled_auroc_{d}" for d in DETECTORS] + ["eval/detect_sampled_adi"]
        detect = [cell(runs, lambda r, k=k: r[which][k], 1.0, 1 if k.endswith("adi") else 3) for k in keys]
        return f"| {name} | {len(runs)} | {budget} | {cell(runs, accuracy, 100.0, 1)}% | " + " | ".join(detect) + " |"

    for budget in sorted({r["budget"] for r in done}):
        at = [r for r in done if r["budget"] == budget]
        warm = [r for r in at if r["arm"] == "grpo"]
        if warm:
            rows.append(row("SFT warm start", warm, 0, "warm", lambda r: r["warm"]["eval/accuracy"]))
        for arm in ARMS:
            runs = sorted((r for r in at if r["arm"] == arm), key=lambda r: r["seed"])
            if runs:
                rows.append(row(arm, runs, budget, "last", lambda r: last_evals_mean(r, LAST_EVALS)))
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=100, help="GRPO steps of every arm")
    p.add_argument("--warmup", type=int, default=500, help="SFT warm-start steps (shared by the arms of a seed)")
    p.add_argument("--eval_every", type=int, default=25)
    p.add_argument("--workdir", default="/tmp/polrl_bench_frontier_ct2")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "frontier_ct2.jsonl"))
    args = p.parse_args(argv)
    arms = companion.parse_arms(args.arms, ARMS)
    base = algorithms_bench.prepare(args.workdir)
    done = companion.run_missing(args.results, arms, args.seeds, args.steps,
                                 lambda arm, seed, _: run_arm(arm, seed, args.steps, args.warmup, args.eval_every, base),
                                 ("arm", "seed", "seconds", "accuracy", "last"))
    print(render(done))


if __name__ == "__main__":
    main()

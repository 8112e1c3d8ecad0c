"""On-policy distillation (GKD) against supervised KD and GRPO on the chain task.

For every seed all arms start from that seed's chain_grpo SFT warm start (the student: 2 layers,
d_model 128; trained once under ``--workdir`` and copied into each run, as
``benchmarks/algorithms.py`` does) and run ``--steps`` main-phase steps with the same prompts per
step (16 × 8 samples) and learning rate:

* ``gkd``            ``experiments/chain_gkd.py``: the student's own samples, every token scored by
                     the seed's frozen teacher, JSD(β = 0.5) to the teacher's token distribution
                     (arXiv 2306.13649, λ = 1);
* ``supervised_kd``  the same loss on the teacher's samples of the same prompts (λ = 0: the paper's
                     supervised-KD baseline);
* ``grpo``           ``experiments/chain_grpo.py``: RL with the verifier's reward, no teacher.

The teacher is the seed's ``experiments/chain_sft_large.py`` run (chain_grpo's warm start on a
5-layer, d_model 256 model): copied from ``--teacher_from``/large_seed<seed> when that run is
complete (the large_sft arm of ``benchmarks/guided.py`` trains the same config), else trained here.
The student's warm start is trained here, or copied from ``--warm_from``/warm_seed<seed> when that
option names a folder holding it (a chain_grpo warm start of benchmarks/guided.py's workdir; seed 0's
records were run with ``--warm_from /tmp/polrl_bench_guided/chain``, seed 1's with the same config's
warm start from ``--warm_from /tmp/polrl_bench_guided_ghpo``).

Each run is evaluated every ``--eval_every`` steps on the 500 held-out prompts (greedy exact match);
its accuracy is the mean of its last ``LAST_EVALS`` evaluations. The teacher's accuracy is its own
held-out evaluation at the end of its run. The paper's claim: on-policy GKD ends above supervised
KD. One JSON line per run is appended to ``--results``; runs already there are not run again; a
markdown table is printed (``render``).

Usage (from the repository root)::

  python benchmarks/guided_distill.py --seeds 0 1 2 --steps 200
"""
from __future__ import annotations

import pathlib
import shutil
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import algorithms as algorithms_bench, companion  # noqa: E402
from benchmarks.claims import last_evals_mean  # noqa: E402
from benchmarks.provenance import provenance  # noqa: E402
from benchmarks.stats import mean_std  # noqa: E402

ARMS = ("gkd", "supervised_kd", "grpo")
# arm → (noun of experiments/chain_<noun>.py, overrides besides the teacher's path)
CONFIGS = {"gkd": ("gkd", {}), "supervised_kd": ("gkd", {"algorithm_kwargs.student_fraction": 0.0}),
           "grpo": ("grpo", {})}
LAST_EVALS = 3
SERIES = ("accuracy", "teacher_accuracy", "gkd_forward_kl", "gkd_reverse_kl", "teacher_logp_mean", "loss")


def teacher_accuracy(run: pathlib.Path) -> float | None:
    """The last held-out accuracy in a teacher run's log (None when the run has not finished: no
    evaluation of its main phase yet)."""
    from polrl.train import metrics as metrics_lib

    if not (run / "metrics.jsonl").exists():
        return None
    evals = [r for r in metrics_lib.read_metrics(str(run)) if "eval/accuracy" in r and r["phase"] != "sft_warmup"]
    return evals[-1]["eval/accuracy"] if evals else None


def teacher_run(seed: int, base: pathlib.Path, teacher_from: pathlib.Path) -> pathlib.Path:
    """The seed's teacher run directory under ``base``: copied from a finished run of the same
    config, or trained (experiments/chain_sft_large.py with the seed)."""
    from experiments import chain_sft_large

    run = base / f"teacher_seed{seed}"
    if teacher_accuracy(run) is not None:
        return run
    shutil.rmtree(run, ignore_errors=True)
    source = teacher_from / f"large_seed{seed}"
    if teacher_accuracy(source) is not None and (source / "checkpoints" / "sft_warmup").exists():
        (run / "checkpoints").mkdir(parents=True)
        shutil.copytree(source / "checkpoints" / "sft_warmup", run / "checkpoints" / "sft_warmup")
        shutil.copy(source / "metrics.jsonl", run / "metrics.jsonl")
        return run
    config = chain_sft_large.get_config()
    config.seed = seed
    algorithms_bench._run(config, run)
    return run


def student_warm_start(seed: int, base: pathlib.Path, warm_from: pathlib.Path) -> None:
    """Copies the seed's chain warm start from ``warm_from`` when it is complete (run_one trains
    it otherwise)."""
    target, source = base / f"warm_seed{seed}", warm_from / f"warm_seed{seed}"
    if not (target / "done").exists() and (source / "done").exists():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)


def run_arm(arm: str, seed: int, steps: int, eval_every: int, base: pathlib.Path, teacher: pathlib.Path) -> dict:
    noun, changes = CONFIGS[arm]
    overrides = {**changes, **({"models.teacher.path": str(teacher / "checkpoints" / "sft_warmup")} if noun == "gkd" else {})}
    tag = "" if arm == noun else f"_{arm}"
    r = algorithms_bench.run_one(noun, seed, steps, base, overrides=overrides, tag=tag, family="chain",
                                 eval_every=eval_every)
    return {**companion.summarised(r, SERIES), "arm": arm, "budget": steps, "teacher_accuracy": teacher_accuracy(teacher),
            **provenance()}


def render(records: list[dict]) -> str:
    """A markdown table: one row per run, the seed mean ± std of each arm, and the paired
    difference GKD − supervised KD. The KL column is the mean forward KL per token over the last
    tenth of the steps, on the rows each arm trains on (the student's samples for gkd, the
    teacher's for supervised_kd), so the two arms' values are not on the same rows."""
    pct = lambda x: f"{100 * x:.1f}%"
    rows = ["| arm | seed | steps | teacher | warm start | held-out accuracy | KL(teacher ‖ student) on the trained rows, last tenth |",
            "|" + "---|" * 7]
    tail = lambda r: (lambda xs: statistics.mean(xs[-max(1, len(xs) // 10):]) if xs else None)(
        r["series"].get("gkd_forward_kl", []))
    for r in sorted(records, key=lambda r: (ARMS.index(r["arm"]), r["seed"])):
        kl = tail(r)
        rows.append(f"| {r['arm']} | {r['seed']} | {r['budget']} | {pct(r['teacher_accuracy'])} | "
                    f"{pct(r['warm_accuracy'])} | {pct(last_evals_mean(r, LAST_EVALS))} | "
                    f"{'–' if kl is None else f'{kl:.4f}'} |")
    for arm in ARMS:
        runs = [r for r in records if r["arm"] == arm]
        if len(runs) > 1:
            col = lambda f: mean_std([f(r) for r in runs], 100.0, 1)
            rows.append(f"| {arm} (mean ± std) | {len(runs)} seeds | | {col(lambda r: r['teacher_accuracy'])} | "
                        f"{col(lambda r: r['warm_accuracy'])} | {col(lambda r: last_evals_mean(r, LAST_EVALS))} | |")
    rows += companion.paired_sentence(records, "gkd", "supervised_kd", "GKD", "supervised KD",
                                      lambda r: last_evals_mean(r, LAST_EVALS))
    return "\n".join(rows)


def main(argv=None) -> None:
    companion.teacher_main(argv, __doc__, "guided_distill", ARMS, run_arm, render)


if __name__ == "__main__":
    main()

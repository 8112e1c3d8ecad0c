"""Several models in one run, and search: a process reward model, test-time search at counted
inference FLOPs against a larger model decoding greedily, and MCTS-DPO against instance-level pairs.

All arms run the chain task (``polrl.tasks.chain``: sums of 3–10 one-digit operands answered with a
scratchpad of running totals, one step per ","; only the final answer is rewarded). Per seed:

* ``prm``          ``experiments/chain_prm.py``: the small policy (the chain_grpo model, SFT warm
                   start) and a process reward model of the same size trained on its Monte-Carlo
                   step labels; scored on held-out steps (``scripts/prm_accuracy.py``: step
                   accuracy and Brier score against the best constant, the label mean);
* ``large_sft``    a policy ``LARGE`` (``size_ratio()``: at least 8× the small one's matmul weights) trained by the same
                   SFT warm start (same demonstrations, steps, batch and learning rate);
* ``search``       on ``--prompts`` held-out prompts: the small policy decoding greedily, the large
                   one decoding greedily, and the small policy + the PRM searching with every
                   (method, N) of ``GRID`` (``polrl.search.evaluate``: best-of-N, weighted best-of-N,
                   beam search and DVTS with beam width ``BEAM_WIDTH``), each prompt's correctness and
                   counted inference FLOPs (policy and PRM forwards, ``polrl.models.flops``) kept;
* ``mcts_dpo``     ``experiments/chain_mcts_dpo.py`` (3 iterations of DPO on step-level pairs read
                   off an MCTS over the policy's steps) from the chain_grpo warm start;
* ``instance_dpo`` the same iterations, prompts per step, β and learning rate with instance-level
                   on-policy pairs instead (best vs worst of ``INSTANCE_G`` samples of the current
                   policy, ranked by the verifier): the comparison the MCTS-DPO paper makes.

The compute-optimal selector (``polrl.search.select``, Snell et al. arXiv 2408.03314) is judged
without peeking: each seed's held-out prompts are split in two halves by index parity; the
selector picks (method, N) per difficulty bin (the answer's steps) on one half under the FLOP
budget of the large model's greedy decoding of that bin, and is scored on the other half (both
directions, averaged).

Writes one JSON line per (arm, seed) to ``--results`` and ``benchmarks/guided.md`` + PNG. Runs
already in the results file are not run again.

Usage (from the repository root)::

  python benchmarks/guided.py                          # every arm, seeds 0 1 2
  python benchmarks/guided.py --arms prm,large_sft,search --seeds 0   # the search headline, one seed
"""
from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import shutil
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import algorithms as algorithms_bench, companion  # noqa: E402
from benchmarks.claims import bootstrap, last_evals_mean, paired_runs, sign_test, verdict  # noqa: E402
from benchmarks.provenance import append, provenance, read  # noqa: E402
from benchmarks.stats import mean_std  # noqa: E402

ARMS = ("prm", "large_sft", "search", "mcts_dpo", "instance_dpo")
NEEDS = {"search": ("prm", "large_sft")}
RUN_DIR = {"prm": "prm", "large_sft": "large"}  # arm → its run directory's prefix (<prefix>_seed<seed>)
LARGE = dict(d_model=256, num_layers=5, num_heads=8, num_kv_heads=4, mlp_dim=768)
GRID = (("best_of_n", 4), ("weighted_best_of_n", 4), ("beam", 4), ("best_of_n", 16), ("weighted_best_of_n", 16),
        ("beam", 16), ("dvts", 16))
BEAM_WIDTH = 4
INSTANCE_G = 4
LAST_EVALS = 3
MIN_SEEDS = 3
WHAT = {
    "greedy_small": "small policy, greedy",
    "greedy_large": f"large policy (d_model {LARGE['d_model']}, {LARGE['num_layers']} layers), greedy",
    "best_of_n": "small + PRM: best-of-N (PRM-last)",
    "weighted_best_of_n": "small + PRM: weighted best-of-N (summed PRM score per answer)",
    "beam": f"small + PRM: beam search (width {BEAM_WIDTH}, keep N/{BEAM_WIDTH})",
    "dvts": f"small + PRM: DVTS (N/{BEAM_WIDTH} subtrees of width {BEAM_WIDTH})",
}


def size_ratio() -> float:
    """The large policy's matmul weights over the small one's (``polrl.models.flops.matmul_params``)."""
    from polrl.models import TransformerConfig
    from polrl.models.flops import matmul_params
    from polrl.tasks.tokenizer import CharTokenizer

    small = dict(chain_config("grpo", 0).model)
    size = lambda kw: matmul_params(TransformerConfig(vocab_size=CharTokenizer().vocab_size, **{**small, **kw}))
    return size(LARGE) / size({})


def chain_config(name: str, seed: int):
    config = importlib.import_module(f"experiments.chain_{name}").get_config()
    config.seed = seed
    return config


def train(config, workdir: pathlib.Path):
    """One run from scratch in ``workdir`` (removed first); returns the main phase's log."""
    from polrl.train import metrics as metrics_lib

    shutil.rmtree(workdir, ignore_errors=True)
    _, _, seconds = algorithms_bench._run(config, workdir)
    return metrics_lib.read_metrics(str(workdir)), seconds


def large_config(seed: int):
    """chain_grpo's SFT warm start alone (no main phase) on the ``LARGE`` model."""
    config = chain_config("grpo", seed)
    config.model.update(**LARGE)
    config.total_steps = 0
    return config


def run_prm(seed: int, base: pathlib.Path, prompts: int) -> dict:
    from scripts.prm_accuracy import held_out_step_metrics

    config = chain_config("prm", seed)
    records, seconds = train(config, base / f"prm_seed{seed}")
    held = held_out_step_metrics(config, str(base / f"prm_seed{seed}"), examples=prompts, continuations=16, seed=seed,
                                 prompts_per_call=25)
    steps = [r for r in records if r.get("phase") == config.phase_name and "loss" in r]
    tail = steps[-max(1, len(steps) // 10):]
    return {"held_out": held, "train_brier_tail": statistics.mean(r["prm_brier"] for r in tail),
            "train_accuracy_tail": statistics.mean(r["prm_step_accuracy"] for r in tail), "seconds": seconds}


def run_large(seed: int, base: pathlib.Path) -> dict:
    records, seconds = train(large_config(seed), base / f"large_seed{seed}")
    evals = [r for r in records if "eval/accuracy" in r]
    return {"accuracy": evals[-1]["eval/accuracy"], "seconds": seconds}


def load(config, workdir: pathlib.Path, phase: str, value_head: bool):
    """(graphdef, params) of ``phase``'s final parameters in ``workdir``."""
    from polrl.train.build import build_task, frozen_model_structure
    from polrl.train.reward_checkpoint import load_params, policy_source

    vocab = build_task(config).tokenizer.vocab_size
    graphdef, shapes = frozen_model_structure(config.model, vocab, value_head=value_head, field="model")
    return graphdef, load_params(str(workdir / "checkpoints" / phase), shapes, policy_source("workdir", "model"))


def per_prompt(result: dict) -> dict:
    return {"correct": [bool(x) for x in result["correct_b"]], "flops": [float(x) for x in result["flops_b"]],
            "policy_flops": [float(x) for x in result["policy_flops_b"]],
            "difficulty": [int(x) for x in result["difficulty_b"]]}


def run_search(seed: int, base: pathlib.Path, prompts: int) -> dict:
    """Every ``GRID`` setting and both greedy decodings on the first ``prompts`` test prompts."""
    import dataclasses

    import jax

    from polrl.search.evaluate import evaluate
    from polrl.train.build import build_spec

    small_config, big_config = chain_config("prm", seed), large_config(seed)
    spec = build_spec(small_config, progress=False)
    task = spec.task
    examples = [task.test[i] for i in range(min(prompts, len(task.test)))]
    small = load(small_config, base / f"prm_seed{seed}", "sft_warmup", value_head=True)
    prm = load(small_config, base / f"prm_seed{seed}", small_config.phase_name, value_head=True)
    large = load(big_config, base / f"large_seed{seed}", "sft_warmup", value_head=False)
    rng = jax.random.key(seed)
    greedy = dataclasses.replace(spec.sampling, temperature=0.0)
    settings = {}
    for name, policy in (("greedy_small", small), ("greedy_large", large)):
        r = evaluate("best_of_n", 1, policy, prm, task, examples, rng, sampling=greedy, batch_size=50)
        settings[name] = {"accuracy": r["accuracy"], **per_prompt(r), "flops": [float(x) for x in r["policy_flops_b"]]}
    for k, (method, n) in enumerate(GRID):
        r = evaluate(method, n, small, prm, task, examples, jax.random.fold_in(rng, k + 1), sampling=spec.sampling,
                     beam_width=BEAM_WIDTH, batch_size=25)
        settings[f"{method}@{n}"] = {"accuracy": r["accuracy"], **per_prompt(r)}
    return {"prompts": len(examples), "settings": settings}


def run_dpo_arm(arm: str, seed: int, base: pathlib.Path) -> dict:
    config = importlib.import_module("experiments.chain_mcts_dpo").get_config()
    changes = {} if arm == "mcts_dpo" else {
        "collector": "preference_pairs", "collector_kwargs": {"policy": "current"},
        "rollout.group_size": INSTANCE_G, "rollout.batch_size": config.rollout.batch_size * INSTANCE_G}
    r = algorithms_bench.run_one("mcts_dpo", seed, config.total_steps, base / "chain", overrides=changes,
                                 tag="" if arm == "mcts_dpo" else "_instance", family="chain",
                                 eval_every=config.eval_every)
    records = r.pop("records")
    evals = [{"step": e["step"], "eval/accuracy": e["eval/accuracy"]} for e in records if "eval/accuracy" in e]
    keep = ("mcts/pairs_found", "mcts/q_gap", "mcts/root_value", "pref_accuracy", "pref_margin")
    steps = [e for e in records if "loss" in e]
    series = {k: [round(float(e[k]), 5) for e in steps if k in e] for k in keep}
    return {"warm_accuracy": r["warm_accuracy"], "evals": evals, "series": series, "seconds": r["seconds"]}


def run_arm(arm: str, seed: int, base: pathlib.Path, prompts: int) -> dict:
    for need in NEEDS.get(arm, ()):
        if not (base / f"{RUN_DIR[need]}_seed{seed}" / "checkpoints").exists():
            raise SystemExit(f"{arm} seed {seed} reads the {need} run of the same seed, which is not under {base}: "
                             f"run --arms {need} first")
    if arm == "prm":
        out = run_prm(seed, base, prompts)
    elif arm == "large_sft":
        out = run_large(seed, base)
    elif arm == "search":
        out = run_search(seed, base, prompts)
    else:
        out = run_dpo_arm(arm, seed, base)
    return {"arm": arm, "seed": seed, **out, **provenance()}


# ------------------------------------------------------------------ analysis
def halves(setting: dict, parity: int) -> dict:
    """The setting's per-prompt lists restricted to prompts whose index has ``parity``."""
    return {k: v[parity::2] for k, v in setting.items() if isinstance(v, list)}


def bins(part: dict) -> dict:
    """{difficulty: (accuracy, mean FLOPs)} of one half of a setting."""
    out = {}
    for d in sorted(set(part["difficulty"])):
        idx = [i for i, x in enumerate(part["difficulty"]) if x == d]
        out[d] = (statistics.mean(part["correct"][i] for i in idx), statistics.mean(part["flops"][i] for i in idx))
    return out


def setting_key(name: str) -> tuple[str, int]:
    """("beam", 16) for "beam@16"; ("greedy_small", 1) for "greedy_small"."""
    method, _, n = name.partition("@")
    return method, int(n or 1)


def setting_name(method: str, n: int) -> str:
    return method if method.startswith("greedy") else f"{method}@{n}"


def selector_accuracy(settings: dict, budget_setting: str = "greedy_large") -> tuple[float, float, dict]:
    """The compute-optimal selector's held-out accuracy and mean FLOPs per prompt (module docstring),
    averaged over the two calibration/evaluation directions, and its choices for the first."""
    from polrl.search.select import compute_optimal

    accs, flops, first = [], [], None
    candidates = {k: v for k, v in settings.items() if k != budget_setting}  # the searches and greedy_small
    for calib in (0, 1):
        table = {(*setting_key(k), d): v for k, s in candidates.items() for d, v in bins(halves(s, calib)).items()}
        budgets = bins(halves(settings[budget_setting], calib))
        chosen = {}
        for d, (_, budget) in budgets.items():
            chosen.update(compute_optimal({key: v for key, v in table.items() if key[2] == d}, budget))
        held = {k: halves(s, 1 - calib) for k, s in settings.items()}
        correct, spent = [], []
        for i, d in enumerate(held["greedy_small"]["difficulty"]):
            key = setting_name(*chosen.get(d, ("greedy_small", 1))[:2])  # a bin absent from the calibration half: greedy
            correct.append(held[key]["correct"][i])
            spent.append(held[key]["flops"][i])
        accs.append(statistics.mean(correct))
        flops.append(statistics.mean(spent))
        first = first or {d: setting_name(*c[:2]) for d, c in chosen.items()}
    return statistics.mean(accs), statistics.mean(flops), first


def _index(done):
    runs = {(r["arm"], r["seed"]): r for r in done}
    return runs, sorted({s for _, s in runs})


# The guided benchmark's other methods run from their own scripts into their own results files;
# their tables and claims are part of benchmarks/guided.md: script → (what it measures, the table).
COMPANIONS = {
    "guided_spark": ("SPARK (arXiv 2509.22624) against GRPO on arithmetic: the same GRPO plus the step's own samples "
                     "recycled into judge rows for the same model; held-out accuracy (the mean of the last 3 "
                     "evaluations), then the final policy judging its own samples of held-out prompts "
                     "(`benchmarks/guided_spark.py`):", "render"),
    "guided_digi_q": ("Digi-Q (arXiv 2502.15760) on the chain task: a TD critic on the frozen warm start's features "
                      "and best-of-N extraction, against its Monte-Carlo critic and critic-free filtered behaviour "
                      "cloning (`benchmarks/guided_digi_q.py`):", "render"),
    "guided_dialtree": ("DialTree-RPO (arXiv 2510.02286) on target_says (make a frozen arithmetic model say a number): "
                        "the tree over dialogue turns against the same attacker trained on independent dialogues at "
                        "the same target-call budget; held-out goals, greedy attacker, no tree "
                        "(`benchmarks/guided_dialtree.py`):", "table"),
    "guided_ghpo": ("GHPO (arXiv 2507.10628) on the chain task: GRPO whose all-fail groups are sampled again with a "
                    "growing prefix of the labelled solution in the prompt, against GRPO at the same steps and against "
                    "its label control (`ghpo_labels`: the same prompts given their labelled answer as one row of the "
                    "group, no hint); held-out prompts answered without hints (`benchmarks/guided_ghpo.py`):", "render"),
    "guided_distill": ("On-policy distillation (GKD, arXiv 2306.13649) on the chain task: the chain_grpo student "
                       "trained on its own samples toward a larger SFT teacher's token distributions, against the same "
                       "divergence on the teacher's samples (supervised KD) and GRPO on the verifier, same steps "
                       "(`benchmarks/guided_distill.py`):", "render"),
    "guided_nlpo": ("NLPO (arXiv 2210.01241) on arithmetic: PPO on the policy renormalised over the top-p nucleus of "
                    "a copy of itself refreshed every 5 steps, against the same PPO without the mask, at two budgets; "
                    "held-out prompts answered by the unmasked policy (`benchmarks/guided_nlpo.py`):", "render"),
    "guided_ampo": ("AMPO (arXiv 2510.02227) on the chain task: GRPO whose all-fail groups get right answers from a "
                    "pool of two frozen teachers ranked by the policy's comprehension of them, against GRPO and the "
                    "single-teacher ablation, same steps (`benchmarks/guided_ampo.py`):", "render"),
    "guided_inspo": ("INSPO (arXiv 2512.01945) on arithmetic: GRPO on prompts led by instructions drawn "
                     "from a population that the policy itself extends from its failures and that is pruned by "
                     "attributed reward, against GRPO on the bare prompts, same steps; held-out prompts answered under "
                     "the population's best instruction and bare (`benchmarks/guided_inspo.py`):", "render"),
    "guided_sophia": ("SOPHIA (arXiv 2507.16814) on the chain task: semi-off-policy rows (a larger teacher's "
                      "scratchpad, the policy's own answers after it, the answers' outcomes propagated to the "
                      "scratchpad) against GRPO, same steps (`benchmarks/guided_sophia.py`):", "render"),
    "guided_ded": ("DED (arXiv 2508.09883) on the programs task: the student distilled by SFT on up to 4 distinct "
                   "right programs per prompt of the teacher a quick distillation test picks from a pool of two "
                   "(a larger model and the student's own model trained longer), against the corpus of each teacher "
                   "alone, same steps; held-out prompts answered by the student alone (`benchmarks/guided_ded.py`):",
                   "render"),
    "guided_tppo": ("T-PPO (arXiv 2506.15050) on the long chain task: responses drawn 32 tokens per step, "
                    "unfinished ones continued at the next step from their cache, the policy trained on each window "
                    "with Extended GAE (λ = 1), each token's advantage weighted by min(π_old/μ, 2) (TIS: the sampler's "
                    "μ differs where earlier policies cached the context), and the value head on the finished "
                    "responses, against PPO on "
                    "complete responses (λ = 0.95) with the same loss, steps and critic: a value head optimized apart "
                    "from the policy, at lr 1e-3 on the policy's detached features (`benchmarks/guided_tppo.py`):",
                    "render"),
}
# (script, arm, baseline, the run's score, "better" | "parity", claim), judged like the claims above
COMPANION_CLAIMS = (
    ("guided_spark", "spark", "grpo", "accuracy", "better",
     "SPARK: training the policy as a judge of its own samples improves it over GRPO (arXiv 2509.22624)"),
    ("guided_spark", "spark_no_reflection", "grpo", "accuracy", "better",
     "SPARK without the reflection rows (no labelled answers) still improves on GRPO"),
    ("guided_spark", "spark_self_reward", "spark_then_verifier", "accuracy", "parity",
     "SPARK: the co-evolved judge can replace the verifier as the reward (arXiv 2509.22624)"),
    ("guided_digi_q", "digi_q", "filtered_bc", "accuracy", "better",
     "Digi-Q: a TD critic with best-of-N extraction beats critic-free filtered BC (arXiv 2502.15760)"),
    ("guided_dialtree", "dialtree_rpo", "no_tree", "success", "better",
     "DialTree-RPO: the dialogue tree beats independent dialogues at equal target calls (arXiv 2510.02286)"),
    ("guided_ghpo", "ghpo", "grpo", "accuracy", "better",
     "GHPO: hints for the prompts no sample solves beat GRPO at the same steps (arXiv 2507.10628)"),
    ("guided_ghpo", "ghpo", "ghpo_labels", "accuracy", "better",
     "GHPO's hints beat giving the same unsolved prompts their labelled answer as a row (label control)"),
    ("guided_ghpo", "ghpo_labels", "grpo", "accuracy", "better",
     "The labelled answers alone, as rows of the groups no sample solves, beat GRPO"),
    ("guided_distill", "gkd", "supervised_kd", "accuracy", "better",
     "GKD: distilling on the student's own samples beats the same divergence on the teacher's (arXiv 2306.13649)"),
    ("guided_ampo", "ampo", "grpo", "accuracy", "better",
     "AMPO: multi-teacher guidance for all-fail groups beats GRPO (arXiv 2510.02227)"),
    ("guided_ampo", "ampo", "ampo_single", "accuracy", "better",
     "AMPO: a pool of teachers beats a single teacher (arXiv 2510.02227)"),
    ("guided_inspo", "inspo", "grpo", "accuracy", "better",
     "INSPO: co-evolving a population of instructions with the policy beats GRPO on bare prompts (arXiv 2512.01945)"),
    ("guided_sophia", "sophia", "grpo", "accuracy", "better",
     "SOPHIA: semi-off-policy rows from a teacher's reasoning beat GRPO (arXiv 2507.16814)"),
    ("guided_tppo", "tppo", "ppo", "accuracy", "parity",
     "T-PPO: PPO's accuracy from partial rollouts, in less training time (arXiv 2506.15050; the time is in the table)"),
    ("guided_ded", "ded", "ded_large", "accuracy", "better",
     "DED: the teacher picked by a quick distillation test distils better than the larger teacher (arXiv 2508.09883)"),
    ("guided_nlpo", "nlpo", "ppo", "accuracy", "better",
     "NLPO: PPO under a delayed copy's top-p action mask beats PPO (arXiv 2210.01241; the longer budget)"),
)


def companion_sections() -> list[str]:
    """Each companion script's description and table, from its committed results."""
    lines = []
    for script, (what, table) in COMPANIONS.items():
        records = companion.records(script)
        if records:
            module = importlib.import_module(f"benchmarks.{script}")
            lines += ["", what, "", getattr(module, table)(records).rstrip("\n")]
    return lines


def companion_differences() -> list[tuple[str, str, str, str, list, list]]:
    """``(claim, arm, base, kind, seeds, paired differences)`` of every companion claim measured."""
    score = {"accuracy": lambda r: last_evals_mean(r, LAST_EVALS), "success": lambda r: r["success"]}
    out = []
    for script, arm, base, key, kind, claim in COMPANION_CLAIMS:
        seeds, diffs = paired_runs(companion.runs(script), arm, base, score[key])
        if diffs:
            out.append((claim, arm, base, kind, seeds, diffs))
    return out


def companion_claims() -> list[str]:
    return [_claim_row(claim, f"`{arm}`", f"`{base}`", kind, seeds, diffs)
            for claim, arm, base, kind, seeds, diffs in companion_differences()]


def plot_companions(path_png: pathlib.Path) -> None:
    """Each companion claim's paired differences (points; one dot per seed, the bar at their mean),
    method against its paper's baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = companion_differences()
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) + 1.2))
    for i, (_, arm, base, _, _, diffs) in enumerate(rows):
        y = len(rows) - 1 - i
        ax.scatter([100 * d for d in diffs], [y] * len(diffs), s=18, color="tab:blue", zorder=3)
        ax.plot([100 * statistics.mean(diffs)] * 2, [y - 0.3, y + 0.3], color="k", lw=2)
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.set_yticks(range(len(rows)), [f"{arm} − {base}" for _, arm, base, *_ in reversed(rows)], fontsize=8)
    ax.set(xlabel="paired difference, points (dots: seeds; bar: mean)")
    fig.tight_layout()
    fig.savefig(path_png, dpi=110)


def _claim_row(claim, arm, base, kind, seeds, diffs, scale=100.0, digits=1):
    low, high = bootstrap(diffs)
    judged = verdict(kind, diffs, low, high) if len(diffs) >= MIN_SEEDS else f"fewer than {MIN_SEEDS} seeds"
    f = lambda x: f"{scale * x:+.{digits}f}"
    return (f"| {claim} | {arm} | {base} | {len(seeds)} | {f(statistics.mean(diffs))} | "
            f"{sum(d > 0 for d in diffs)}/{len(diffs)} | {sign_test(diffs):.3f} | [{f(low)}, {f(high)}] | {judged} |")


def search_rows(runs, seeds) -> list[str]:
    searches = [runs[("search", s)] for s in seeds if ("search", s) in runs]
    if not searches:
        return []
    names = list(searches[0]["settings"])
    base_flops = lambda r: statistics.mean(r["settings"]["greedy_small"]["flops"])
    lines = [f"Test-time search on {searches[0]['prompts']} held-out prompts ({len(searches)} seed"
             f"{'s' if len(searches) > 1 else ''}): accuracy (a sampled final answer that equals the reference) "
             "and inference FLOPs per prompt counted by the search (policy + PRM forwards), also as a multiple of "
             "the small policy's greedy decoding:", "",
             "| setting | what | N | accuracy % | FLOPs / prompt | × small greedy |", "|---|---|---|---|---|---|"]
    for name in names:
        acc = [r["settings"][name]["accuracy"] for r in searches]
        fl = [statistics.mean(r["settings"][name]["flops"]) for r in searches]
        ratio = [statistics.mean(r["settings"][name]["flops"]) / base_flops(r) for r in searches]
        method, n = setting_key(name)
        lines.append(f"| `{name}` | {WHAT[method]} | {n} | {mean_std(acc, 100)} | {statistics.mean(fl):.3g} | "
                     f"{mean_std(ratio, 1, 1)} |")
    sel = [selector_accuracy(r["settings"]) for r in searches]
    lines.append(f"| compute-optimal | per difficulty, the (method, N) of the calibration half with the best "
                 f"accuracy within the large model's greedy FLOPs | – | {mean_std([a for a, _, _ in sel], 100)} | "
                 f"{statistics.mean(f for _, f, _ in sel):.3g} | "
                 f"{mean_std([f / base_flops(r) for (_, f, _), r in zip(sel, searches)], 1, 1)} |")
    lines += ["", f"Choices of the compute-optimal selector (seed {seeds[0]}, calibrated on the even-indexed "
                  "prompts), by difficulty (steps of the answer): "
                  + ", ".join(f"{d}: `{c}`" for d, c in sorted(sel[0][2].items())) + "."]
    return lines


def render(done: list[dict]) -> str:
    runs, seeds = _index(done)
    of = lambda arm, fn: [fn(runs[(arm, s)]) for s in seeds if (arm, s) in runs]
    cpus = sorted({r.get("cpu") or "unrecorded" for r in done})
    lines = ["# Several models in one run: a process reward model, test-time search, MCTS-DPO, SPARK, Digi-Q, "
             "DialTree-RPO", "",
             f"Written by `python benchmarks/guided.py` from `benchmarks/results/guided.jsonl` (chain task; seeds "
             f"{', '.join(map(str, seeds))}) and the results of its companion scripts (sections below); CPU "
             f"{' / '.join(cpus)}; mean ± std over seeds.", ""]
    if of("prm", lambda r: 1):
        held = lambda key, sub="all_steps": (lambda r: r["held_out"][sub][key])
        lines += ["Process reward model (Monte-Carlo step labels of the SFT warm start, 16 completions per held-out "
                  "step label; step accuracy: (p > ½) = (label > ½)):", "",
                  "| measure | seeds | PRM | constant (label mean) |", "|---|---|---|---|"]
        for sub, what in (("all_steps", "every step"), ("intermediate_steps", "intermediate steps")):
            lines.append(f"| held-out step accuracy, {what} | {len(of('prm', lambda r: 1))} | "
                         f"{mean_std(of('prm', held('accuracy', sub)), 1, 3)} | "
                         f"{mean_std(of('prm', held('constant_accuracy', sub)), 1, 3)} |")
            lines.append(f"| held-out Brier score, {what} | {len(of('prm', lambda r: 1))} | "
                         f"{mean_std(of('prm', held('brier', sub)), 1, 3)} | "
                         f"{mean_std(of('prm', held('constant_brier', sub)), 1, 3)} |")
        lines.append("")
    lines += search_rows(runs, seeds)
    dpo = [a for a in ("mcts_dpo", "instance_dpo") if of(a, lambda r: 1)]
    if dpo:
        lines += ["", "MCTS-DPO against instance-level on-policy DPO (same warm start, iterations, prompts per step, β "
                      f"and learning rate; held-out greedy accuracy, the mean of the last {LAST_EVALS} evaluations):", "",
                  "| arm | seeds | warm start % | accuracy % | wall s |", "|---|---|---|---|---|"]
        for a in dpo:
            lines.append(f"| `{a}` | {len(of(a, lambda r: 1))} | {mean_std(of(a, lambda r: r['warm_accuracy']), 100)} | "
                         f"{mean_std(of(a, lambda r: last_evals_mean(r, LAST_EVALS)), 100)} | "
                         f"{mean_std(of(a, lambda r: r['seconds']), 1, 0)} |")
    lines += companion_sections()
    lines += ["", "Claims, judged on paired differences (Δ in points of accuracy; p: one-sided sign test; 90% CI: "
                  "paired bootstrap; verdict rules: `benchmarks/claims.py`):", "",
              "| claim | arm | baseline | seeds | Δ | wins | p | 90% CI | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    search = {s: runs[("search", s)]["settings"] for s in seeds if ("search", s) in runs}
    if search:
        s_seeds = sorted(search)
        sel = {s: selector_accuracy(search[s]) for s in s_seeds}
        lines.append(_claim_row(f"A small policy + PRM search beats a {size_ratio():.1f}× larger policy decoding greedily, within its "
                                "FLOPs (arXiv 2502.06703)", "compute-optimal", "`greedy_large`", "better", s_seeds,
                                [sel[s][0] - statistics.mean(halves(search[s]["greedy_large"], 0)["correct"]
                                                            + halves(search[s]["greedy_large"], 1)["correct"])
                                 for s in s_seeds]))
        lines.append(_claim_row("PRM-guided search beats the same policy decoding greedily", "compute-optimal",
                                "`greedy_small`", "better", s_seeds,
                                [sel[s][0] - search[s]["greedy_small"]["accuracy"] for s in s_seeds]))
        lines.append(_claim_row("Beam search beats best-of-N at N = 16 (arXiv 2408.03314)", "`beam@16`", "`best_of_n@16`",
                                "better", s_seeds,
                                [search[s]["beam@16"]["accuracy"] - search[s]["best_of_n@16"]["accuracy"] for s in s_seeds]))
    if ("mcts_dpo", seeds[0]) in runs:
        acc = lambda r: last_evals_mean(r, LAST_EVALS)
        s_, diffs = paired_runs(runs, "mcts_dpo", "instance_dpo", acc)
        if diffs:
            lines.append(_claim_row("Step-level MCTS pairs beat instance-level on-policy pairs (arXiv 2405.00451)",
                                    "`mcts_dpo`", "`instance_dpo`", "better", s_, diffs))
        ms = [s for s in seeds if ("mcts_dpo", s) in runs]
        lines.append(_claim_row("MCTS-DPO improves on its SFT warm start (arXiv 2405.00451)", "`mcts_dpo`", "warm start",
                                "better", ms, [acc(runs[("mcts_dpo", s)]) - runs[("mcts_dpo", s)]["warm_accuracy"]
                                               for s in ms]))
    lines += companion_claims()
    lines += ["", "The companion claims' paired differences, seed by seed: [`guided_methods.png`](guided_methods.png); "
                  "the search frontier: [`guided.png`](guided.png)."]
    return "\n".join(lines) + "\n"


def plot(done: list[dict], path_png: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, seeds = _index(done)
    searches = [runs[("search", s)] for s in seeds if ("search", s) in runs]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    if searches:
        for method in ("best_of_n", "weighted_best_of_n", "beam", "dvts"):
            names = [k for k in searches[0]["settings"] if k.startswith(method + "@")]
            pts = sorted((statistics.mean(statistics.mean(r["settings"][k]["flops"]) for r in searches),
                          100 * statistics.mean(r["settings"][k]["accuracy"] for r in searches)) for k in names)
            ax.plot(*zip(*pts), marker="o", label=method)
        for name, marker in (("greedy_small", "s"), ("greedy_large", "*")):
            ax.scatter([statistics.mean(statistics.mean(r["settings"][name]["flops"]) for r in searches)],
                       [100 * statistics.mean(r["settings"][name]["accuracy"] for r in searches)], marker=marker,
                       s=90, color="k" if name == "greedy_large" else "grey", label=name, zorder=3)
        ax.set_xscale("log")
    ax.set(xlabel="inference FLOPs per prompt (counted)", ylabel="held-out accuracy, % (seed mean)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_png, dpi=110)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--prompts", type=int, default=200, help="held-out prompts for the PRM and the search")
    p.add_argument("--workdir", default="/tmp/polrl_bench_guided")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "guided.jsonl"))
    p.add_argument("--report", default=str(ROOT / "benchmarks" / "guided.md"))
    args = p.parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise SystemExit(f"--arms: unknown {unknown}; use some of {list(ARMS)}")
    base = algorithms_bench.prepare(args.workdir)
    done = read(args.results)
    have = {(r["arm"], r["seed"]) for r in done}
    for seed in args.seeds:
        for arm in arms:
            if (arm, seed) in have:
                continue
            record = run_arm(arm, seed, base, args.prompts)
            append(args.results, record)
            done.append(record)
            print(json.dumps({k: v for k, v in record.items() if k in ("arm", "seed", "seconds", "accuracy")}), flush=True)
    report = pathlib.Path(args.report)
    report.write_text(render(done))
    plot(done, report.with_suffix(".png"))
    plot_companions(report.with_name("guided_methods.png"))
    print(report.read_text())


if __name__ == "__main__":
    main()

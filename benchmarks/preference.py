"""Preference and reward learning: offline pairs → the warm model's samples → on-policy pairs,
iterated and curriculum variants, a learned reward model and RLHF with it, and a preference loss
over equivalent programs; paired seeds, same budget.

Every arm of a seed starts from that seed's SFT warm start (the ``sft_warmup`` phase of
``experiments/arithmetic_grpo.py``, trained once and copied into every run, as in
``benchmarks/algorithms.py``) and runs ``--steps`` main-phase steps of its own
``experiments/arithmetic_<arm>.py`` config:

* ``dpo_offline``  DPO on a fixed file of pairs (chosen: the right answer; rejected: off by 1–3);
* ``dpo``          DPO on pairs of the frozen warm model's own samples, ranked by the verifier;
* ``seppo``        SePPO: the labelled answer over a sample of a checkpoint drawn from a pool of
                   earlier ones, with the anchor-based adaptive flipper;
* ``sft_labels``   SFT continued on the train split's labelled answers, the control for every arm
                   that puts those labels into its pairs;
* ``online_dpo``   the same loss on pairs of the current policy's samples (on-policy);
* ``grpo``         the RL baseline with the same verifier;
* ``dpo_gold``     ``dpo`` with DNO's pair options (the labelled answer as a candidate, margin 1):
                   one DNO iteration, so ``dno`` against it isolates the iterations;
* ``dno``          iterated DPO, each iteration against the previous iterate;
* ``cdr_dpo``      DPO on the warm model's pairs ranked by log π_strong − log π_weak instead of the
                   verifier, strong = this seed's ``grpo`` run, weak = its warm start;
* ``light_r1``     Light-R1's curriculum in the same steps: SFT on the hard demonstrations, DPO
                   (right answer over the model's own wrong one), then GRPO;
* ``dragon``       DRAGON: the current policy's G samples of a prompt scored as a set (MMD² to the
                   labelled answer), each sample's leave-one-out credit splitting the group into
                   positive and negative sets, DPO over their pairs;
* ``ra_dpo``       reward-augmented DPO: ``dpo``'s pairs relabelled into goal-conditioned pairs
                   ("[1]" ⊕ prompt: right ≻ wrong; "[0]" ⊕ prompt: wrong ≻ right), evaluated with "[1]";
* ``reward_model`` a Bradley–Terry reward model of a hidden closeness rule, its own budget
                   (the config's steps), scored on 500 held-out pairs;
* ``rlhf_grpo``    GRPO whose only reward is this seed's ``reward_model``; the hidden rule it never
                   sees is logged beside the learned reward.

Three arms run the programs family instead (``experiments/programs_<noun>.py``: an expression in
infix or prefix translated into a stack-language program, rewarded by unit tests run by the
task's interpreter), from their own SFT warm start (the ``sft_warmup`` phase of
``experiments/programs_grpo.py``, under ``<workdir>/programs``) and with the budget of those
configs (``total_steps`` main-phase steps, evaluated every ``eval_every``) instead of ``--steps``:

* ``programs_grpo`` GRPO on the all-tests-pass reward;
* ``programs_gepo`` the same plus GEPO, the group equivalent preference loss (OORL, arXiv 2505.12723),
  whose groups include the labelled program as a winner;
* ``programs_gepo_no_label`` GEPO on the policy's samples only (``expert_per_group=0``): the loss
  without the label it otherwise adds.

Two run the chain family the same way (``experiments/chain_<noun>.py``: running sums with a
scratchpad, the SFT warm start of ``experiments/chain_grpo.py`` under ``<workdir>/chain``):

* ``chain_dpo_revised`` DPO on pairs (an expert's minimal revision ≻ the policy's own response);
* ``chain_opa_dpo``     OPA-DPO (arXiv 2501.09695): SFT on the revisions first, then DPO on the
  same kind of pairs plus the anchor on the revision's likelihood;
* ``chain_opa_dpo_no_anchor``  the same without the anchor (``anchor_coef=0``): the paper's
  ablation, which tells the anchor's share from the SFT phase's.

Each run is evaluated every ``--eval_every`` steps on the 500 held-out prompts (greedy exact
match); a run's accuracy is the mean of its last ``LAST_EVALS`` evaluations. Writes one JSON
line per run to ``--results`` (the evaluation curve, per-step series of the pair and reward
metrics, the means of every logged scalar over the first and the last tenth of the steps), then
``benchmarks/preference.md`` (seed mean ± std, the claims judged on paired differences with the
rule of ``benchmarks/claims.py``, per-seed values) and ``benchmarks/preference.png``. Runs
already in the results file are not run again.

Usage (from the repository root)::

  python benchmarks/preference.py                      # every arm, seeds 0 1 2, 600 steps
  python benchmarks/preference.py --arms dpo,online_dpo --seeds 0 --steps 50   # a quick look
"""
from __future__ import annotations

import argparse
import importlib.util
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

FAMILY = "arithmetic"
ARMS = ("dpo_offline", "dpo", "dpo_gold", "seppo", "sft_labels", "online_dpo", "grpo", "dno", "cdr_dpo", "light_r1", "dragon", "ra_dpo",
        "reward_model",
        "rlhf_grpo",
        "programs_grpo", "programs_gepo", "programs_gepo_no_label", "chain_dpo_revised", "chain_opa_dpo",
        "chain_opa_dpo_no_anchor")
# arms of another family: arm → (family, noun, config overrides); every other arm is (FAMILY, arm, {})
OTHER_FAMILY = {"programs_grpo": ("programs", "grpo", {}), "programs_gepo": ("programs", "gepo", {}),
                "programs_gepo_no_label": ("programs", "gepo", {"algorithm_kwargs.expert_per_group": 0}),
                "chain_dpo_revised": ("chain", "dpo_revised", {}), "chain_opa_dpo": ("chain", "opa_dpo", {}),
                "chain_opa_dpo_no_anchor": ("chain", "opa_dpo", {"algorithm_kwargs.anchor_coef": 0.0})}
WHAT = {
    "dpo_offline": "DPO, fixed file of pairs",
    "dpo": "DPO, pairs of the warm model's samples",
    "ra_dpo": "RA-DPO: the same pairs relabelled under reward goals (evaluated with the highest goal)",
    "dpo_gold": "DPO, the same with DNO's gold answer and margin, one iteration",
    "seppo": "SePPO: labelled answer ≻ a sample of an earlier checkpoint, with the adaptive flipper",
    "sft_labels": "SFT on the train split's labelled answers (the labels the gold / SePPO arms see)",
    "online_dpo": "DPO, pairs of the current policy's samples",
    "grpo": "GRPO (RL baseline)",
    "dno": "DNO: iterated DPO, reference = previous iterate",
    "cdr_dpo": "DPO, warm-model pairs ranked by the strong/weak density ratio",
    "rlhf_grpo": "GRPO on the learned reward model",
    "programs_grpo": "programs: GRPO on the unit-test reward",
    "programs_gepo": "programs: GRPO + GEPO (equivalent-program groups)",
    "programs_gepo_no_label": "programs: GRPO + GEPO on the policy's samples only (no labelled program)",
    "chain_dpo_revised": "chain: DPO on (expert revision ≻ own response) pairs",
    "chain_opa_dpo": "chain: OPA-DPO (SFT on the revisions, then DPO + the chosen anchor)",
    "chain_opa_dpo_no_anchor": "chain: OPA-DPO without the anchor (SFT on the revisions, then DPO)",
    "light_r1": "Light-R1: SFT on hard demos → DPO → GRPO, same total steps",
    "dragon": "DRAGON: on-policy pairs split by each sample's credit to the group's distance to the exemplars",
}
# arithmetic arms that are another arm's config with overrides: arm → (noun, overrides)
VARIANTS = {"dpo_gold": ("dpo", {"collector_kwargs": {"gold": True, "margin": 1.0}}),
            # SFT continued from the warm start on the train split's labelled answers (the labels the gold /
            # SePPO / Light-R1 arms see), 32 per step; warmup.steps restores arithmetic_sft's folded warm start
            "sft_labels": ("sft", {"warmup.steps": 200, "data": "train"})}
# arm → the arm whose run it reads (checkpoints of the same seed)
NEEDS = {"cdr_dpo": "grpo", "rlhf_grpo": "reward_model"}
SERIES = ("loss", "pref_accuracy", "pref_margin", "reward_mean", "hidden_score_mean", "verifier_reward_mean",
          "accuracy", "entropy", "kl", "pair_agreement", "rm_accuracy")
LAST_EVALS = 3
EDGE = 0.1  # head / tail: the first / last tenth of the main-phase steps
MIN_SEEDS = 3
HELD_OUT_PAIRS = ROOT / "experiments" / "data" / "arithmetic_closeness_pairs_test.jsonl"
# (arm, baseline, kind, claim): judged on paired differences in held-out accuracy
CLAIMS = (
    ("online_dpo", "dpo", "better",
     "On-policy pairs beat pairs of the warm model's samples (same loss; arXiv 2404.14367)"),
    ("online_dpo", "dpo_offline", "better", "On-policy pairs beat a fixed file of pairs (arXiv 2404.14367)"),
    ("seppo", "dpo_gold", "better",
     "SePPO: negatives from a pool of earlier checkpoints beat the warm model's, labelled answers as winners in both "
     "(arXiv 2410.05255)"),
    ("seppo", "sft_labels", "better", "SePPO beats SFT on the same labelled answers (arXiv 2410.05255)"),
    ("dno", "dpo", "better", "DNO beats DPO on the warm model's pairs (arXiv 2404.03715)"),
    ("dno", "dpo_gold", "better",
     "Iterating against the previous iterate beats one iteration with the same gold answers and margin (arXiv 2404.03715)"),
    ("cdr_dpo", "dpo", "parity", "Density-ratio labels match the verifier's labels (arXiv 2411.02481)"),
    ("ra_dpo", "dpo", "better", "Reward-augmented (goal-conditioned) pairs beat DPO on the same pairs (arXiv 2410.08067)"),
    ("light_r1", "grpo", "better", "Curriculum SFT → DPO → GRPO beats GRPO alone at the same steps (arXiv 2503.10460)"),
    ("dragon", "online_dpo", "parity",
     "A set-level reward (the group's distance to exemplars) trains as well as the per-sample verifier (arXiv 2504.15217)"),
    ("programs_gepo", "programs_grpo", "better", "GEPO adds to RL on unit-test rewards (arXiv 2505.12723)"),
    ("chain_opa_dpo", "chain_dpo_revised", "better",
     "OPA-DPO's alignment phase and anchor beat DPO on the same revised on-policy pairs (arXiv 2501.09695)"),
    ("chain_opa_dpo", "chain_opa_dpo_no_anchor", "better", "OPA-DPO's anchor term adds to it (arXiv 2501.09695, ablation)"),
    ("chain_opa_dpo_no_anchor", "chain_dpo_revised", "better",
     "OPA-DPO's alignment phase (SFT on the revisions) adds to DPO on revised pairs (arXiv 2501.09695, ablation)"),
    ("programs_gepo_no_label", "programs_grpo", "better",
     "GEPO's loss adds to RL without the labelled program in its groups (arXiv 2505.12723)"),
)


def family_noun(arm: str) -> tuple[str, str]:
    """(family, noun) of an arm: its config is ``experiments/<family>_<noun>.py``."""
    if arm in VARIANTS:
        return FAMILY, VARIANTS[arm][0]
    return OTHER_FAMILY.get(arm, (FAMILY, arm, {}))[:2]


def experiment_exists(arm: str) -> bool:
    family, noun = family_noun(arm)
    return (ROOT / "experiments" / f"{family}_{noun}.py").exists()


def family_base(base: pathlib.Path, arm: str) -> pathlib.Path:
    """The arm's work directory: ``base`` for arithmetic, ``base/<family>`` for another family
    (so each family has its own ``warm_seed<seed>``)."""
    family, _ = family_noun(arm)
    return base if family == FAMILY else base / family


def budget(arm: str, steps: int) -> int:
    """Main-phase steps of an arm's run: ``steps`` for arithmetic, the config's own otherwise."""
    import importlib

    family, noun = family_noun(arm)
    return steps if family == FAMILY else importlib.import_module(f"experiments.{family}_{noun}").get_config().total_steps


def checkpoint(base: pathlib.Path, arm: str, seed: int) -> pathlib.Path:
    """The main-phase checkpoint directory of ``arm``'s run for ``seed`` under ``base``."""
    import importlib

    family, noun = family_noun(arm)
    phase = importlib.import_module(f"experiments.{family}_{noun}").get_config().get("phase_name") or "rl"
    return family_base(base, arm) / f"{noun}_seed{seed}" / "checkpoints" / phase


def overrides(arm: str, seed: int, base: pathlib.Path) -> dict:
    """Config overrides that point an arm at the runs it reads (``NEEDS``)."""
    if arm == "cdr_dpo":
        warm = algorithms_bench._warm_start_dir(base, seed, False) / "checkpoints" / "sft_warmup"
        return {"density_ratio.strong": str(checkpoint(base, "grpo", seed)), "density_ratio.weak": str(warm)}
    if arm == "rlhf_grpo":
        return {"reward_model.path": str(checkpoint(base, "reward_model", seed))}
    return {}


def _edge_means(steps: list[dict], tail: bool) -> dict:
    n = max(1, int(len(steps) * EDGE))
    rows = steps[-n:] if tail else steps[:n]
    keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and k not in ("step", "phase_step")})
    return {k: sum(r[k] for r in rows if k in r) / sum(k in r for r in rows) for k in keys}


def compact(arm: str, record: dict) -> dict:
    """The run's record with its log reduced to the evaluations, the per-step ``SERIES`` and the
    head / tail means of every logged scalar."""
    records = record.pop("records")
    steps = [r for r in records if "loss" in r]
    evals = [{"step": r["step"], "eval/accuracy": r["eval/accuracy"]} for r in records if "eval/accuracy" in r]
    series = {k: [round(float(r[k]), 5) for r in steps] for k in SERIES if steps and all(k in r for r in steps)}
    series["step"] = [r["step"] for r in steps]
    record.pop("run_means", None)
    record.pop("first_eval", None)
    record.pop("last_eval", None)
    return {**record, "arm": arm, "evals": evals, "series": series,
            "head": _edge_means(steps, False), "tail": _edge_means(steps, True)}


def run_arm(arm: str, seed: int, steps: int, eval_every: int, base: pathlib.Path) -> dict:
    need = NEEDS.get(arm)
    if need and not checkpoint(base, need, seed).exists():
        raise SystemExit(f"{arm} seed {seed} reads the {need} run of the same seed, which is not under {base}: "
                         f"run --arms {need} (or remove its line from the results file) first")
    if arm == "reward_model":  # its own budget: the config's steps, scored on held-out pairs
        import importlib

        config = importlib.import_module(f"experiments.{FAMILY}_reward_model").get_config()
        r = algorithms_bench.run_one(arm, seed, config.total_steps, base, overrides={}, family=FAMILY,
                                     eval_every=config.total_steps)
        from scripts.reward_model_accuracy import held_out_accuracy

        held = held_out_accuracy(config, str(checkpoint(base, arm, seed)), str(HELD_OUT_PAIRS))
        r = compact(arm, r)
        r["pair_accuracy"], r["held_out_pairs"] = held["accuracy"], held["pairs"]
    elif arm in OTHER_FAMILY:  # the family's own warm start and budget
        import importlib

        family, noun, changes = OTHER_FAMILY[arm]
        config = importlib.import_module(f"experiments.{family}_{noun}").get_config()
        steps = config.total_steps
        r = compact(arm, algorithms_bench.run_one(noun, seed, steps, family_base(base, arm), overrides=changes,
                                                  tag=f"_{arm}" if changes else "", family=family,
                                                  eval_every=config.eval_every))
    else:
        noun, changes = VARIANTS.get(arm, (arm, {}))
        r = compact(arm, algorithms_bench.run_one(noun, seed, steps, base, overrides={**changes, **overrides(arm, seed, base)},
                                                  tag=f"_{arm}" if changes else "", family=FAMILY, eval_every=eval_every))
    return {**r, "budget": steps, **provenance()}


def accuracy(run: dict) -> float:
    """The mean of the run's last ``LAST_EVALS`` held-out evaluations (``claims.last_evals_mean``)."""
    return last_evals_mean(run, LAST_EVALS)


def _index(done: list[dict]):
    runs = {(r["arm"], r["seed"]): r for r in done}
    return runs, [a for a in ARMS if any(k[0] == a for k in runs)], sorted({s for _, s in runs})


def hidden_gain(run: dict) -> float:
    """The hidden score of the run's samples, last tenth of the steps minus first tenth."""
    return run["tail"]["hidden_score_mean"] - run["head"]["hidden_score_mean"]


def _claim_row(claim: str, arm: str, base: str, kind: str, seeds, diffs, scale: float = 100.0) -> str:
    low, high = bootstrap(diffs)
    judged = verdict(kind, diffs, low, high) if len(diffs) >= MIN_SEEDS else f"fewer than {MIN_SEEDS} seeds"
    return (f"| {claim} | `{arm}` | {base} | {len(seeds)} | {scale * statistics.mean(diffs):+.{1 if scale == 100 else 3}f} | "
            f"{sum(d > 0 for d in diffs)}/{len(diffs)} | {sign_test(diffs):.3f} | "
            f"[{scale * low:+.{1 if scale == 100 else 3}f}, {scale * high:+.{1 if scale == 100 else 3}f}] | {judged} |")


def render(done: list[dict], steps: int) -> str:
    """``preference.md`` from the run records (the module docstring)."""
    runs, arms, seeds = _index(done)
    of = lambda arm, fn: [fn(runs[(arm, s)]) for s in seeds if (arm, s) in runs]
    cpus = sorted({r.get("cpu") or "unrecorded" for r in done})
    policy_arms = [a for a in arms if a != "reward_model"]
    own = [a for a in policy_arms if a not in OTHER_FAMILY]
    first_eval = lambda group, s: next((runs[(a, s)]["evals"][0]["eval/accuracy"] for a in group if (a, s) in runs), None)
    warm = [w for w in (first_eval(own[:1], s) for s in seeds) if w is not None]
    other = [a for a in policy_arms if a in OTHER_FAMILY]
    budgets = sorted({(family_noun(a)[0], runs[(a, s)]["budget"]) for a in other for s in seeds if (a, s) in runs})
    lines = [
        "# Preference and reward learning: offline to on-policy pairs, learned and set-level rewards, revisions, "
        "equivalent programs",
        "",
        f"Written by `python benchmarks/preference.py` from `benchmarks/results/preference.jsonl`; CPU {' / '.join(cpus)}; "
        f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))}), paired: every arm of a seed "
        f"starts from the same SFT warm start; {steps} main-phase steps per policy arm"
        + "".join(f" ({family} arms: their own warm start, {b} steps)" for family, b in budgets)
        + "; mean ± std over seeds. Accuracy: "
        f"greedy exact match on the 500 held-out prompts, the mean of a run's last {LAST_EVALS} evaluations (every eval_every steps and at each phase's end). Pair "
        "accuracy / margin: the implicit reward's ranking of each step's training pairs, last tenth of the steps.",
        "",
        "| arm | what | accuracy % | Δ vs warm start (points) | pair accuracy | pair margin | wall s |",
        "|---|---|---|---|---|---|---|",
        f"| SFT warm start | – | {mean_std(warm, 100)} | – | – | – | – |",
    ]
    tail = lambda key: (lambda r: r["tail"].get(key))
    families = {}  # another family's arms, in ARMS order, by family
    for a in other:
        families.setdefault(family_noun(a)[0], []).append(a)
    for arm in policy_arms:
        group = families.get(family_noun(arm)[0], [])
        if arm in other and arm == group[0]:
            fw = [w for w in (first_eval(group[:1], s) for s in seeds) if w is not None]
            lines.append(f"| SFT warm start ({family_noun(arm)[0]}) | – | {mean_std(fw, 100)} | – | – | – | – |")
        gains = of(arm, lambda r: accuracy(r) - r["evals"][0]["eval/accuracy"])
        pa, pm = of(arm, tail("pref_accuracy")), of(arm, tail("pref_margin"))
        lines.append(f"| `{arm}` | {WHAT[arm]} | {mean_std(of(arm, accuracy), 100)} | {mean_std(gains, 100)} | "
                     f"{mean_std(pa, 1, 3) if None not in pa else '–'} | {mean_std(pm, 1, 2) if None not in pm else '–'} | "
                     f"{mean_std(of(arm, lambda r: r['seconds']), 1, 0)} |")
    if "reward_model" in arms:
        lines += ["", "Rewards beyond the verifier: the reward model (Bradley–Terry on the value head, pairs ranked by "
                      "the hidden rule s(y, t) = 1/(1 + |y − t|)), RLHF with it (the policy sees only the learned "
                      "reward) and DRAGON's set-level reward:", "",
                  "| measure | seeds | value |", "|---|---|---|",
                  f"| reward model: pair accuracy on {runs[('reward_model', seeds[0])]['held_out_pairs']} held-out pairs "
                  f"(0.5 = chance) | {len(of('reward_model', lambda r: 1))} | "
                  f"{mean_std(of('reward_model', lambda r: r['pair_accuracy']), 1, 3)} |",
                  f"| reward model: pair accuracy on its training pairs, last tenth of the steps | "
                  f"{len(of('reward_model', lambda r: 1))} | {mean_std(of('reward_model', tail('rm_accuracy')), 1, 3)} |"]
        if "dragon" in arms:
            lines.append(f"| DRAGON: the groups' set distance to the exemplars (MMD²), first → last tenth of the steps | "
                         f"{len(of('dragon', lambda r: 1))} | {mean_std(of('dragon', lambda r: r['head']['set_distance']), 1, 3)} → "
                         f"{mean_std(of('dragon', tail('set_distance')), 1, 3)} |")
        if "rlhf_grpo" in arms:
            head = lambda key: (lambda r: r["head"][key])
            for key, name in (("hidden_score_mean", "hidden score s of the samples"),
                              ("reward_mean", "learned reward of the samples"),
                              ("verifier_reward_mean", "exact match of the samples")):
                lines.append(f"| RLHF: {name}, first → last tenth of the steps | {len(of('rlhf_grpo', lambda r: 1))} | "
                             f"{mean_std(of('rlhf_grpo', head(key)), 1, 3)} → {mean_std(of('rlhf_grpo', tail(key)), 1, 3)} |")
    lines += [
        "",
        "Claims, judged on paired differences (Δ: mean, points of held-out accuracy unless stated; wins: seeds ahead; "
        "p: one-sided sign test; 90% CI: paired bootstrap; verdict rules: `benchmarks/claims.py`):",
        "",
        "| claim | arm | baseline | seeds | Δ | wins | p | 90% CI | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, base, kind, claim in CLAIMS:
        s, diffs = paired_runs(runs, arm, base, accuracy)
        if diffs:
            lines.append(_claim_row(claim, arm, f"`{base}`", kind, s, diffs))
    rlhf = of("rlhf_grpo", hidden_gain)
    if rlhf:
        lines.append(_claim_row("RLHF with the learned reward raises the hidden score (Δ: hidden score, last − first "
                                "tenth)", "rlhf_grpo", "its own start", "better", [s for s in seeds if ("rlhf_grpo", s) in runs],
                                rlhf, 1.0))
    lines += ["", "Per seed (held-out accuracy %):", "",
              "| seed | warm | " + " | ".join(f"`{a}`" for a in own) + " |"
              + "".join(f" {family} warm | " + " | ".join(f"`{a}`" for a in group) + " |"
                        for family, group in families.items()),
              "|---|---|" + "---|" * (len(own) + sum(len(g) + 1 for g in families.values()))]
    cell = lambda a, s: "–" if (a, s) not in runs else f"{100 * accuracy(runs[(a, s)]):.1f}"
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"
    for s in seeds:
        lines.append(f"| {s} | {pct(first_eval(own, s))} | " + " | ".join(cell(a, s) for a in own) + " |"
                     + "".join(f" {pct(first_eval(group, s))} | " + " | ".join(cell(a, s) for a in group) + " |"
                               for group in families.values()))
    return "\n".join(lines) + "\n"


def write_report(done: list[dict], path_md: pathlib.Path, steps: int) -> None:
    """``preference.md`` and ``preference.png`` beside it."""
    path_md.write_text(render(done, steps))
    _plot(*_index(done), path_md.with_suffix(".png"))


def _plot(runs, arms, seeds, path_png: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for arm in arms:
        if arm == "reward_model":
            continue
        rs = [runs[(arm, s)] for s in seeds if (arm, s) in runs]
        n = min(len(r["evals"]) for r in rs)
        steps = [e["step"] - rs[0]["evals"][0]["step"] for e in rs[0]["evals"][:n]]
        acc = np.mean([[e["eval/accuracy"] for e in r["evals"][:n]] for r in rs], axis=0)
        ax1.plot(steps, 100 * acc, marker="o", ms=3, label=arm, ls="--" if arm in OTHER_FAMILY else "-")
    if any(a == "rlhf_grpo" for a in arms):
        rs = [runs[("rlhf_grpo", s)] for s in seeds if ("rlhf_grpo", s) in runs]
        k = 20
        smooth = lambda key: np.convolve(np.mean([r["series"][key] for r in rs], axis=0), np.ones(k) / k, mode="valid")
        hidden = smooth("hidden_score_mean")
        x = np.arange(k, len(hidden) + k)
        ax2.plot(x, hidden, color="C0")
        ax2.set(xlabel="RLHF step", ylabel=f"hidden score s of the samples ({k}-step mean)")
        ax2.yaxis.label.set_color("C0")
        twin = ax2.twinx()
        twin.plot(x, smooth("reward_mean"), color="C1")
        twin.set_ylabel("learned reward of the samples", color="C1")
    ax1.set(xlabel="main-phase step", ylabel="held-out accuracy, % (seed mean)")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_png, dpi=110)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms (those without a config are skipped)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=600, help="main-phase steps per policy run")
    p.add_argument("--eval_every", type=int, default=100)
    p.add_argument("--workdir", default="/tmp/polrl_bench_preference")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "preference.jsonl"))
    p.add_argument("--report", default=str(ROOT / "benchmarks" / "preference.md"))
    args = p.parse_args(argv)

    base = algorithms_bench.prepare(args.workdir)
    done = [r for r in read(args.results) if r["budget"] == budget(r["arm"], args.steps)]
    have = {(r["arm"], r["seed"]) for r in done}
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise SystemExit(f"--arms: unknown {unknown}; use some of {list(ARMS)}")
    for seed in args.seeds:
        for arm in [a for a in ARMS if a in arms and experiment_exists(a)]:
            if (arm, seed) in have:
                continue
            r = run_arm(arm, seed, args.steps, args.eval_every, base)
            print(json.dumps({k: r.get(k) for k in ("arm", "seed", "seconds", "pair_accuracy")} | {"accuracy": accuracy(r)}),
                  flush=True)
            append(args.results, r)
            done.append(r)
    write_report(done, pathlib.Path(args.report), args.steps)
    print(json.dumps({"report": args.report, "runs": len(done)}))


if __name__ == "__main__":
    main()

"""Every measured number of the README and of the experiments' docstrings, written from raw results.

    python benchmarks/report.py          # rewrite every generated block
    python benchmarks/report.py --check  # list the stale blocks and exit 1 (the test suite runs this)

A generated block is the text between a line holding ``<!-- report: KEY -->`` and the next line
holding ``<!-- /report -->``, in ``README.md`` or in the docstring of an ``experiments/*.py``
config. ``BLOCKS[KEY]`` computes its text from the JSON-lines files of ``benchmarks/results/``
that the benchmark scripts append to (one record per run, with the CPU, cores, commit and date
that measured it); nothing here trains or times anything. Figures are mean ± std over seeds with
the number of seeds stated; a single seed is labelled as such. ``tests/test_report.py`` fails
when a block differs from what the raw results give, and when a README line or a config's
"Expected result" states a measured figure outside a block.
"""
from __future__ import annotations

import argparse
import pathlib
import re
import statistics
import sys
import textwrap
from typing import Callable

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import frontier_ct2, guided_tppo, provenance, treepo  # noqa: E402
from benchmarks.claims import last_evals_mean  # noqa: E402
from benchmarks.stats import mean_std  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
START = re.compile(r"<!-- report: ([\w.]+) -->")
END = "<!-- /report -->"
WIDTH = 100


def results(name: str) -> list[dict]:
    return provenance.read(RESULTS / f"{name}.jsonl")


# ------------------------------------------------------------------------------ formatting


def ms(xs, scale: float = 100.0, digits: int = 1) -> str:
    """A figure over seeds (``benchmarks.stats.mean_std``), in percent by default."""
    return mean_std(xs, scale, digits)


def percent(xs) -> str:
    """``ms(xs)`` with its percent sign after the number ("50.0% (1 seed)", "55.0 ± 7.1%")."""
    text = ms(xs)
    return text.replace(" (1 seed)", "% (1 seed)") if len(xs) == 1 else f"{text}%"


def seeds_phrase(seeds) -> str:
    seeds = sorted(seeds)
    return f"seed {seeds[0]} only" if len(seeds) == 1 else f"{len(seeds)} seeds ({', '.join(map(str, seeds))})"


def where(records: list[dict]) -> str:
    """The CPU(s) the records were measured on, as recorded."""
    cpus = sorted({r.get("cpu") or "unrecorded" for r in records})
    return "CPU " + " / ".join(cpus)


def para(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), WIDTH, break_on_hyphens=False)


# ------------------------------------------------------------------------------ arithmetic


def _algorithms() -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = {}
    for r in results("algorithms"):
        by.setdefault(r["noun"], []).append(r)
    return {n: sorted(rs, key=lambda r: r["seed"]) for n, rs in by.items()}


def _catalogue() -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = {}
    for r in results("catalogue"):
        by.setdefault(r["noun"], []).append(r)
    return {n: sorted(rs, key=lambda r: r["seed"]) for n, rs in by.items()}


PAIR_NOUNS = ("simpo", "orpo", "kto")  # judged beside DPO, the baseline of their papers


def catalogue_noun(noun: str) -> Callable[[], str]:
    def block() -> str:
        cat = _catalogue()
        base = "dpo" if noun in PAIR_NOUNS else "grpo"
        rs, grpo = cat[noun], cat[base]
        text = (f"Expected result (benchmarks/catalogue.md, written by `python benchmarks/algorithms.py --results "
                f"benchmarks/results/catalogue.jsonl`: {rs[0]['steps']} steps of this config from the shared SFT warm "
                f"start of each seed, {seeds_phrase(r['seed'] for r in rs)}, the launcher's default of one XLA device "
                f"per core, {where(rs)}; held-out greedy exact match on 500 test prompts, mean ± std over seeds): "
                f"{ms([r['warm_accuracy'] for r in rs])}% → {ms([r['accuracy'] for r in rs])}% ({base.upper()} in the same "
                f"benchmark: {ms([r['accuracy'] for r in grpo])}%; paired by seed, ahead of it on "
                f"{sum(r['accuracy'] > g['accuracy'] for r, g in zip(rs, grpo))} of {len(rs)}).")
        return para(text)

    return block


def _arithmetic() -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = {}
    for r in results("arithmetic"):
        by.setdefault(r["noun"], []).append(r)
    return {n: sorted(rs, key=lambda r: r["seed"]) for n, rs in by.items()}


ALGORITHMS_SETUP = (
    "benchmarks/algorithms.py: {steps} steps of this config from the shared SFT warm start of each seed, "
    "{seeds}, held-out greedy exact match on 500 test prompts, mean ± std over seeds; measured with one "
    "XLA device before the rollout engine replaced the fixed sampler ({cpu}; raw: "
    "benchmarks/results/algorithms.jsonl)"
)


def arithmetic_noun(noun: str) -> Callable[[], str]:
    def block() -> str:
        alg, long = _algorithms(), _arithmetic()
        parts = []
        if noun in alg:
            rs, grpo = alg[noun], alg["grpo"]
            setup = ALGORITHMS_SETUP.format(steps=rs[0]["steps"], seeds=seeds_phrase(r["seed"] for r in rs), cpu=where(rs))
            text = (f"Expected result ({setup}): {ms([r['warm_accuracy'] for r in rs])}% → "
                    f"{ms([r['accuracy'] for r in rs])}%")
            text += "." if noun == "grpo" else f" (GRPO at the same budget: {ms([r['accuracy'] for r in grpo])}%)."
            parts.append(para(text))
        if noun in long:
            rs = long[noun]
            seeds = seeds_phrase(r["seed"] for r in rs)
            setup = (f"the launcher's default of one XLA device per core, {rs[0]['steps']} steps, {seeds}, "
                     f"{where(rs)}; raw: benchmarks/results/arithmetic.jsonl, from `python benchmarks/algorithms.py "
                     f"--nouns {noun} --steps {rs[0]['steps']} --results benchmarks/results/arithmetic.jsonl`")
            lead = "Full run" if parts else "Expected result"
            if noun == "sft":
                text = (f"{lead}, trained from scratch on the same demonstrations ({setup}): "
                        + ", ".join(f"{100 * r['accuracy']:.1f}% (seed {r['seed']})" for r in rs) + ".")
            else:
                by_seed = ", ".join(f"seed {r['seed']}: {100 * r['warm_accuracy']:.1f}% → {100 * r['accuracy']:.1f}%" for r in rs)
                text = f"{lead} ({setup}): {by_seed}"
                if noun != "grpo":
                    grpo = {r["seed"]: r for r in long["grpo"]}
                    text += " (GRPO from the same warm start: " + ", ".join(
                        f"{100 * grpo[r['seed']]['accuracy']:.1f}%" for r in rs if r["seed"] in grpo) + ")"
                text += "."
            parts.append(para(text))
        if not parts:
            raise KeyError(f"no raw results for arithmetic noun {noun!r}")
        return "\n\n".join(parts)

    return block


def readme_algorithms() -> str:
    alg = _algorithms()
    mean = {n: statistics.mean(r["accuracy"] for r in rs) for n, rs in alg.items()}
    order = sorted(mean, key=mean.get, reverse=True)
    warm = [r["warm_accuracy"] for r in alg["grpo"]]
    steps = alg["grpo"][0]["steps"]
    seeds = sorted({r["seed"] for rs in alg.values() for r in rs})
    fmt = lambda n: f"`{n}` {ms([r['accuracy'] for r in alg[n]])}"
    losers = [n for n in order if statistics.mean(r["accuracy"] - r["warm_accuracy"] for r in alg[n]) <= 0]
    text = (f"`benchmarks/algorithms.py` runs every noun from the same warm start with the same budget over several "
            f"seeds and writes [`benchmarks/algorithms.md`](benchmarks/algorithms.md) and a PNG. The committed table "
            f"({steps} steps, seeds {seeds[0]}–{seeds[-1]}, measured with one XLA device before the rollout engine): "
            f"from a {ms(warm)}% warm start, {', '.join(fmt(n) for n in order[:3])} and {fmt(order[3])} lead, "
            f"`grpo` reaches {ms([r['accuracy'] for r in alg['grpo']])}, and "
            + ("every noun gains." if not losers else
               f"every noun but {', '.join(fmt(n) for n in losers)} gains.")
            + " On these 2–3-token answers the mechanisms that distinguish the methods barely act, so the ranking "
              "says little about them. [`benchmarks/algorithms_claims.md`](benchmarks/algorithms_claims.md) reads "
              "the table against each paper's claim: which it reproduces in direction, and which not.")
    return para(text)


# ------------------------------------------------------------------------------ chain (TreePO) and tools


def _treepo_rows():
    rs = results("treepo")
    by = {(r["method"], r["seed"]): r for r in rs}
    steps = next(r["steps"] for r in rs if r["method"] == "grpo")
    seeds = sorted(s for m, s in by if m == "grpo" and ("treepo", s) in by)
    out = {"seeds": seeds, "steps": steps, "records": rs}
    out["warm"] = [by[("grpo", s)]["warm_accuracy"] for s in seeds]
    out["grpo"] = [treepo.at_step(by[("grpo", s)], steps)["accuracy"] for s in seeds]
    out["sft"] = [(s, treepo.at_step(by[("sft", s)], steps)["accuracy"]) for s in seeds if ("sft", s) in by]
    budgets = [treepo.at_step(by[("grpo", s)], steps)["sampled_tokens"] for s in seeds]
    out["treepo_budget"] = [treepo.at_budget(by[("treepo", s)], b)["accuracy"] for s, b in zip(seeds, budgets)]
    out["treepo_tokens"] = [treepo.at_step(by[("treepo", s)], steps)["sampled_tokens"] / b for s, b in zip(seeds, budgets)]
    return out


CHAIN_SETUP = ("benchmarks/treepo.md, written by `python benchmarks/treepo.py` from benchmarks/results/treepo.jsonl; "
               "{cpu}; held-out greedy exact match of the final answer on 500 prompts, each reading the mean of the "
               "last 3 evaluations; mean ± std over {seeds}")


def chain_block(which: str) -> Callable[[], str]:
    def block() -> str:
        t = _treepo_rows()
        setup = CHAIN_SETUP.format(cpu=where(t["records"]), seeds=seeds_phrase(t["seeds"]))
        if which == "grpo":
            text = f"Expected result ({setup}): SFT warm start {ms(t['warm'])}% → {ms(t['grpo'])}% after {t['steps']} GRPO steps."
        elif which == "treepo":
            text = (f"Expected result ({setup}): from the SFT warm start ({ms(t['warm'])}%), TreePO samples "
                    f"{ms(t['treepo_tokens'], 1.0, 3)}× GRPO's tokens per step and reaches {ms(t['treepo_budget'])}% "
                    f"within GRPO's budget of sampled tokens, against GRPO's {ms(t['grpo'])}% after {t['steps']} steps.")
        else:
            sft = t["sft"]
            text = (f"Expected result ({setup}): SFT continued for {t['steps']} more steps on the same demonstrations "
                    f"reaches {ms([a for _, a in sft])}% ({seeds_phrase([s for s, _ in sft])}); GRPO from the same "
                    f"warm start reaches {ms(t['grpo'])}%.")
        return para(text)

    return block


def by_arm(records: list[dict]) -> dict[str, list[dict]]:
    """A benchmark's records grouped by ``arm``, each group in seed order."""
    arms = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        arms.setdefault(r["arm"], []).append(r)
    return arms


def _length() -> dict:
    """The long-chain testbed's runs (benchmarks/length.py), by arm, seed-sorted, with ``acc(arm)``
    and ``wrong(arm)``: its accuracy and the length of its wrong samples over seeds, formatted."""
    from benchmarks import length

    rs = results("length")
    arms = by_arm(rs)
    return {"arms": arms, "records": rs, "seeds": sorted({r["seed"] for r in rs}), "steps": rs[0]["steps"],
            "acc": lambda arm: ms([length.accuracy(r) for r in arms[arm]]),
            "wrong": lambda arm: ms([length.tail_mean(r, "response_length_incorrect") for r in arms[arm]], 1.0)}


LENGTH_SETUP = ("benchmarks/length.md, written by `python benchmarks/length.py` from benchmarks/results/length.jsonl; "
                "{cpu}; held-out greedy exact match of the final answer on 500 prompts, the mean of a run's last 3 "
                "evaluations; every arm of a seed from the same warm start; {steps} steps; mean ± std over {seeds}")


def length_block(arm: str) -> Callable[[], str]:
    def block() -> str:
        from benchmarks import length

        t = _length()
        a, acc, wrong = t["arms"], t["acc"], t["wrong"]
        setup = LENGTH_SETUP.format(cpu=where(t["records"]), steps=t["steps"], seeds=seeds_phrase(t["seeds"]))
        warm = ms([r["first_eval"]["eval/accuracy"] for r in a["grpo"]])
        if arm == "grpo":
            text = (f"Expected result ({setup}): SFT warm start {warm}% → {acc('grpo')}% after {t['steps']} GRPO steps; "
                    f"SFT continued on the same demonstrations instead: {acc('sft')}%.")
        elif arm == "sft":
            text = f"Expected result ({setup}): from the {warm}% warm start, {acc('sft')}% (GRPO instead: {acc('grpo')}%)."
        elif arm == "dr_grpo":
            text = (f"Expected result ({setup}): {acc('dr_grpo')}% (GRPO {acc('grpo')}%); its wrong samples are "
                    f"{wrong('dr_grpo')} tokens long over the last quarter of the steps (GRPO's {wrong('grpo')}).")
        else:
            compute = [length.total_flops(d) / length.total_flops(g) for d, g in zip(a["dapo"], a["grpo"])]
            text = (f"Expected result ({setup}): {acc('dapo')}% at {ms(compute, 1.0, 2)}× GRPO's counted compute "
                    f"(GRPO {acc('grpo')}%); GRPO with DAPO's token-level loss alone: {acc('grpo_token_mean')}%.")
        return para(text)

    return block


def readme_length() -> str:
    t = _length()
    a, acc, wrong = t["arms"], t["acc"], t["wrong"]
    return (f"| `experiments/chain_long_{{grpo,dr_grpo,dapo,sft}}.py` | the long-reasoning testbed: sums of 4–12 "
            f"operands with a 28–113-token scratchpad, 1000 demonstrations, then {t['steps']} steps of each method "
            f"from the same warm start | warm start {ms([r['first_eval']['eval/accuracy'] for r in a['grpo']])}% → "
            f"GRPO {acc('grpo')}%, Dr.GRPO {acc('dr_grpo')}%, DAPO {acc('dapo')}%, SFT continued {acc('sft')}%; "
            f"wrong samples {wrong('grpo')} (GRPO) vs {wrong('dr_grpo')} tokens (Dr.GRPO) ({len(t['seeds'])} seeds, "
            "[`benchmarks/length.md`](benchmarks/length.md)) |")


def _tools():
    rs = results("tools")
    return {arm: sorted((r for r in rs if r["arm"] == arm), key=lambda r: r["seed"]) for arm in ("tool", "no_tool")}


def multiply_block(arm: str) -> Callable[[], str]:
    def block() -> str:
        t = _tools()
        rs, other = t[arm], t["no_tool" if arm == "tool" else "tool"]
        text = (f"Expected result (benchmarks/tools.md, written by `python benchmarks/tools.py` from "
                f"benchmarks/results/tools.jsonl; {where(rs)}; held-out greedy exact match on 500 problems, mean ± std "
                f"over {seeds_phrase(r['seed'] for r in rs)}): {ms([r['warm_accuracy'] for r in rs])}% after SFT → "
                f"{ms([r['accuracy'] for r in rs])}% after {rs[0]['steps']} RL steps; "
                f"{'without' if arm == 'tool' else 'with'} the tool: {ms([r['warm_accuracy'] for r in other])}% → "
                f"{ms([r['accuracy'] for r in other])}%.")
        return para(text)

    return block


def _preference() -> dict:
    """The preference benchmark's runs (benchmarks/preference.py), by arm, seed-sorted, with
    ``acc(arm)``: its held-out accuracy over seeds, formatted."""
    from benchmarks import preference

    rs = results("preference")
    arms = by_arm(rs)
    return {"arms": arms, "records": rs, "seeds": sorted({r["seed"] for r in rs}), "steps": arms["dpo"][0]["budget"],
            "warm": ms([r["evals"][0]["eval/accuracy"] for r in arms["dpo"]]),
            "acc": lambda arm: ms([preference.accuracy(r) for r in arms[arm]])}


PREFERENCE_SETUP = ("benchmarks/preference.md, written by `python benchmarks/preference.py` from "
                    "benchmarks/results/preference.jsonl; {cpu}; held-out greedy exact match on 500 prompts, the mean "
                    "of a run's last 3 evaluations; every arm of a seed from the same SFT warm start; {steps} steps; "
                    "mean ± std over {seeds}")


def preference_block(arm: str) -> Callable[[], str]:
    def block() -> str:
        t = _preference()
        a, acc, warm = t["arms"], t["acc"], t["warm"]
        setup = PREFERENCE_SETUP.format(cpu=where(t["records"]), steps=t["steps"], seeds=seeds_phrase(t["seeds"]))
        tail = lambda arm, key: ms([r["tail"][key] for r in a[arm]], 1.0, 3)
        head = lambda arm, key: ms([r["head"][key] for r in a[arm]], 1.0, 3)
        if arm == "dpo_offline":
            text = (f"Expected result ({setup}): SFT warm start {warm}% → {acc('dpo_offline')}% on the file's pairs (DPO on "
                    f"pairs of the warm model's samples: {acc('dpo')}%; of the current policy's samples: "
                    f"{acc('online_dpo')}%).")
        elif arm == "online_dpo":
            text = (f"Expected result ({setup}): SFT warm start {warm}% → {acc('online_dpo')}% (the same loss on pairs of the "
                    f"warm model's samples: {acc('dpo')}%; on the fixed file of pairs: {acc('dpo_offline')}%; GRPO: "
                    f"{acc('grpo')}%).")
        elif arm == "reward_model":
            rm = a["reward_model"]
            text = (f"Expected result (benchmarks/preference.md, written by `python benchmarks/preference.py` from "
                    f"benchmarks/results/preference.jsonl; {where(rm)}; {rm[0]['steps']} steps from each seed's SFT warm "
                    f"start, mean ± std over {seeds_phrase(r['seed'] for r in rm)}): pair accuracy {tail('reward_model', 'rm_accuracy')} on "
                    f"its training pairs at the end and {ms([r['pair_accuracy'] for r in rm], 1.0, 3)} on the "
                    f"{rm[0]['held_out_pairs']} held-out pairs (0.5 is chance).")
        elif arm == "rlhf_grpo":
            text = (f"Expected result ({setup}; each seed's own reward model): over the run (first → last tenth of the "
                    f"steps) the learned reward of the samples goes {head('rlhf_grpo', 'reward_mean')} → "
                    f"{tail('rlhf_grpo', 'reward_mean')} and the hidden score s {head('rlhf_grpo', 'hidden_score_mean')} → "
                    f"{tail('rlhf_grpo', 'hidden_score_mean')}; held-out greedy accuracy {warm}% → {acc('rlhf_grpo')}% "
                    f"(GRPO on the verifier itself: {acc('grpo')}%).")
        elif arm == "cdr_dpo":
            text = (f"Expected result ({setup}; strong = the seed's GRPO run of the same benchmark): SFT warm start "
                    f"{warm}% → {acc('cdr_dpo')}% (DPO on the same samples ranked by the verifier: {acc('dpo')}%). Over "
                    f"the last tenth of the steps the ratio's pairs are ones the verifier does not tie for "
                    f"{ms([r['tail']['pair_untied'] for r in a['cdr_dpo']])}% of the prompts, and on those it agrees with "
                    f"the verifier {ms([r['tail']['pair_agreement'] for r in a['cdr_dpo']])}% of the time: its other "
                    f"pairs rank two answers the verifier scores alike (both wrong or both right).")
        elif arm == "ra_dpo":
            goal_warm = ms([r["evals"][0]["eval/accuracy"] for r in a["ra_dpo"]])
            text = (f"Expected result ({setup}): SFT warm start {warm}% ({goal_warm}% with the goal, which fine-tuning "
                    f"never showed it, before the prompt) → {acc('ra_dpo')}% answering with the highest goal (DPO on "
                    f"the same pairs without goals: {acc('dpo')}%); over the last tenth of the steps "
                    f"{ms([r['tail']['goal_untied_pairs'] for r in a['ra_dpo']])}% of the pairs are untied.")
        elif arm == "dragon":
            text = (f"Expected result ({setup}): SFT warm start {warm}% → {acc('dragon')}% (DPO on on-policy pairs ranked "
                    f"by the verifier: {acc('online_dpo')}%); the groups' set distance to the exemplars (MMD²) goes "
                    f"{head('dragon', 'set_distance')} → {tail('dragon', 'set_distance')} from the first to the last "
                    f"tenth of the steps.")
        elif arm == "seppo":
            text = (f"Expected result ({setup}): SFT warm start {warm}% → {acc('seppo')}% (DPO with the same labelled "
                    f"answers as winners against the warm model's samples: {acc('dpo_gold')}%; GRPO: {acc('grpo')}%; SFT "
                    f"on the same labelled answers: {acc('sft_labels')}%).")
        elif arm == "dno":
            text = (f"Expected result ({setup}, three iterations of a third each): SFT warm start {warm}% → "
                    f"{acc('dno')}% (one DPO iteration on the warm model's pairs, the same steps: {acc('dpo')}%; one "
                    f"iteration with the same gold answers and margin: {acc('dpo_gold')}%; on the current policy's pairs: "
                    f"{acc('online_dpo')}%).")
        else:
            text = (f"Expected result ({setup}, of which SFT stage 2, DPO and GRPO take a tenth, a fifth and the rest): "
                    f"SFT warm start {warm}% → {acc('light_r1')}% (GRPO alone for the same steps: {acc('grpo')}%; DPO "
                    f"with the same gold answers, one phase: {acc('dpo_gold')}%; SFT on the train split's labelled "
                    f"answers: {acc('sft_labels')}%).")
        return para(text)

    return block


def programs_preference_block(arm: str) -> Callable[[], str]:
    """The programs arms of the preference benchmark: their own warm start and budget."""

    def block() -> str:
        from benchmarks import preference

        t = _preference()
        a, acc = t["arms"], t["acc"]
        rs = a["programs_grpo"] + a["programs_gepo"]
        warm = ms([r["evals"][0]["eval/accuracy"] for r in a["programs_grpo"]])
        diffs = [preference.accuracy(g) - preference.accuracy(b)
                 for g in a["programs_gepo"] for b in a["programs_grpo"] if g["seed"] == b["seed"]]
        setup = ("benchmarks/preference.md, written by `python benchmarks/preference.py` from "
                 f"benchmarks/results/preference.jsonl; {where(rs)}; held-out greedy accuracy (every unit test passed) on "
                 f"500 prompts, the mean of a run's last 3 evaluations; both arms of a seed from the same SFT warm start; "
                 f"{rs[0]['budget']} RL steps; mean ± std over {seeds_phrase(r['seed'] for r in a['programs_grpo'])}")
        gepo = f"{acc('programs_gepo')}% with GEPO ({'+' if statistics.mean(diffs) >= 0 else ''}" \
               f"{100 * statistics.mean(diffs):.1f} points over GRPO on paired seeds, ahead on {sum(d > 0 for d in diffs)} of {len(diffs)} seeds)"
        text = (f"Expected result ({setup}): SFT warm start {warm}% → {acc('programs_grpo')}% with GRPO, {gepo}."
                if arm == "programs_grpo" else
                f"Expected result ({setup}): SFT warm start {warm}% → {gepo}; GRPO alone: {acc('programs_grpo')}%; "
                f"GEPO without the labelled program in its groups (expert_per_group=0): "
                f"{acc('programs_gepo_no_label')}%.")
        return para(text)

    return block


def chain_preference_block(arm: str) -> Callable[[], str]:
    """The chain arms of the preference benchmark (OPA-DPO and its baselines): their own warm start
    and budget."""

    def block() -> str:
        t = _preference()
        a, acc = t["arms"], t["acc"]
        if not (a.get("chain_dpo_revised") and a.get("chain_opa_dpo")):
            return ("Expected result: not measured yet (`python benchmarks/preference.py --arms "
                    "chain_dpo_revised,chain_opa_dpo,chain_opa_dpo_no_anchor` writes it).")
        rs = a["chain_dpo_revised"] + a["chain_opa_dpo"] + a.get("chain_opa_dpo_no_anchor", [])
        warm = ms([r["evals"][0]["eval/accuracy"] for r in a["chain_dpo_revised"]])
        setup = ("benchmarks/preference.md, written by `python benchmarks/preference.py` from "
                 f"benchmarks/results/preference.jsonl; {where(rs)}; held-out greedy exact match of the final answer on "
                 f"500 prompts, the mean of a run's last 3 evaluations; every arm of a seed from chain_grpo's SFT warm "
                 f"start of that seed; {rs[0]['budget']} steps (OPA-DPO: a tenth of them the SFT phase on revisions); "
                 f"mean ± std over {seeds_phrase(r['seed'] for r in a['chain_opa_dpo'])}")
        no_anchor = (f"; without the anchor {acc('chain_opa_dpo_no_anchor')}%" if a.get("chain_opa_dpo_no_anchor")
                     else "")
        paired = lambda arm, base: _paired(a[arm], a[base], preference_accuracy)
        if arm == "chain_dpo_revised":
            text = (f"Expected result ({setup}): SFT warm start {warm}% → {acc('chain_dpo_revised')}% (OPA-DPO, the "
                    f"same pairs after an SFT phase on the revisions, with the anchor: {acc('chain_opa_dpo')}%).")
        else:
            text = (f"Expected result ({setup}): SFT warm start {warm}% → {acc('chain_opa_dpo')}%{no_anchor}; DPO on the "
                    f"same kind of pairs without the SFT phase and the anchor {acc('chain_dpo_revised')}% (paired "
                    f"differences, OPA-DPO − DPO: {paired('chain_opa_dpo', 'chain_dpo_revised')} points).")
        return para(text)

    return block


def preference_accuracy(run: dict) -> float:
    from benchmarks import preference

    return preference.accuracy(run)


def readme_preference() -> str:
    t = _preference()
    acc, arms = t["acc"], t["arms"]
    h = lambda key: ms([r[key]["hidden_score_mean"] for r in arms["rlhf_grpo"]], 1.0, 3)
    return (f"| `experiments/arithmetic_{{dpo_offline,dpo,online_dpo,dno,cdr_dpo,seppo,dragon,light_r1,reward_model,rlhf_grpo}}.py`, "
            f"`programs_{{grpo,gepo}}.py` | preference learning from offline pairs to on-policy pairs, iterated and "
            f"density-ratio labels, a learned reward, same warm start, {t['steps']} steps; GEPO on program "
            f"translation | DPO on a fixed file {acc('dpo_offline')}%, on the warm model's samples {acc('dpo')}%, on the "
            f"policy's own samples {acc('online_dpo')}%, DNO {acc('dno')}%, CDR-ranked {acc('cdr_dpo')}%, SePPO "
            f"{acc('seppo')}%, DRAGON {acc('dragon')}%, Light-R1's "
            f"SFT → DPO → GRPO curriculum {acc('light_r1')}%, SFT on the train labels those use {acc('sft_labels')}% (GRPO "
            f"{acc('grpo')}%); a reward model of a hidden rule scores "
            f"{ms([r['pair_accuracy'] for r in arms['reward_model']], 1.0, 3)} on held-out pairs and RLHF on it raises "
            f"the hidden score {h('head')} → {h('tail')}; programs: GRPO {acc('programs_grpo')}%, GRPO + GEPO "
            f"{acc('programs_gepo')}% ({len(t['seeds'])} seeds, [`benchmarks/preference.md`](benchmarks/preference.md)) |")


def _guided() -> dict:
    """The guided benchmark's runs (benchmarks/guided.py), by arm, seed-sorted."""
    rs = results("guided")
    return {"arms": by_arm(rs), "records": rs}


GUIDED_SETUP = ("benchmarks/guided.md, written by `python benchmarks/guided.py` from benchmarks/results/guided.jsonl; "
                "{cpu}; {seeds}")


def _search_figures(searches: list[dict]) -> dict:
    """Seed-mean accuracy of each search setting and the compute-optimal selector's held-out accuracy
    and FLOPs as a multiple of the large policy's greedy decoding."""
    from benchmarks import guided

    acc = lambda name: ms([r["settings"][name]["accuracy"] for r in searches])
    sel = [guided.selector_accuracy(r["settings"]) for r in searches]
    large = [statistics.mean(r["settings"]["greedy_large"]["flops"]) for r in searches]
    return {"acc": acc, "selector": ms([a for a, _, _ in sel]), "ratio": guided.size_ratio(),
            "selector_flops": ms([f / big for (_, f, _), big in zip(sel, large)], 1.0, 2)}


def guided_block(arm: str) -> Callable[[], str]:
    def block() -> str:
        t = _guided()
        a = t["arms"]
        if arm == "prm":
            rs, searches = a["prm"], a.get("search", [])
            held = lambda key: ms([r["held_out"]["all_steps"][key] for r in rs], 1.0, 3)
            text = (f"Expected result ({GUIDED_SETUP.format(cpu=where(rs), seeds=seeds_phrase(r['seed'] for r in rs))}; "
                    f"{rs[0]['held_out']['prompts']} held-out prompts, each step labelled by 16 completions): step "
                    f"accuracy {held('accuracy')} (the constant label mean: {held('constant_accuracy')}), Brier score "
                    f"{held('brier')} (constant: {held('constant_brier')}).")
            if searches:
                f = _search_figures(searches)
                text += (f" Searching with it ({seeds_phrase(r['seed'] for r in searches)}): the small policy "
                         f"{f['acc']('greedy_small')}% greedy, weighted best-of-16 {f['acc']('weighted_best_of_n@16')}%, "
                         f"beam search N = 16 {f['acc']('beam@16')}%; the compute-optimal choice within the FLOPs of a "
                         f"{f['ratio']:.1f}× larger policy decoding greedily ({f['acc']('greedy_large')}%) reaches {f['selector']}% "
                         f"at {f['selector_flops']}× its FLOPs.")
        else:
            rs = a["mcts_dpo"]
            acc = lambda arm: ms([last_evals_mean(r, 3) for r in a.get(arm, [])])
            text = (f"Expected result ({GUIDED_SETUP.format(cpu=where(rs), seeds=seeds_phrase(r['seed'] for r in rs))}; "
                    f"held-out greedy accuracy on 500 prompts, the mean of the last 3 evaluations): SFT warm start "
                    f"{ms([r['warm_accuracy'] for r in rs])}% → {acc('mcts_dpo')}%"
                    + (f" (instance-level on-policy DPO, same iterations and prompts: {acc('instance_dpo')}%)."
                       if a.get("instance_dpo") else "."))
        return para(text)

    return block


def readme_guided() -> str:
    t = _guided()
    a = t["arms"]
    searches = a.get("search", [])
    if not searches:
        return ""
    f = _search_figures(searches)
    mcts = (f"; MCTS-DPO {ms([r['warm_accuracy'] for r in a['mcts_dpo']])}% → "
            f"{ms([last_evals_mean(r, 3) for r in a['mcts_dpo']])}%" if a.get("mcts_dpo") else "")
    inst = (f" (instance-level pairs: {ms([last_evals_mean(r, 3) for r in a['instance_dpo']])}%)"
            if a.get("instance_dpo") else "")
    return (f"| `experiments/chain_prm.py`, `chain_mcts_dpo.py`, `polrl.search` | a process reward model from Monte-Carlo "
            f"step labels; test-time search with it against a {f['ratio']:.1f}× larger policy decoding greedily, at counted FLOPs; "
            f"MCTS-DPO | small policy {f['acc']('greedy_small')}%, large {f['acc']('greedy_large')}% (greedy); small + "
            f"PRM, weighted best-of-16 {f['acc']('weighted_best_of_n@16')}%, compute-optimal within the large model's "
            f"FLOPs {f['selector']}% at {f['selector_flops']}× them{mcts}{inst} "
            f"({seeds_phrase(r['seed'] for r in searches)}, [`benchmarks/guided.md`](benchmarks/guided.md)) |")


def _paired(rs_a, rs_b, fn) -> str:
    """The paired differences fn(a) − fn(b) per seed, in points, as "+5.7, +11.9, …"."""
    b = {r["seed"]: r for r in rs_b}
    return ", ".join(f"{100 * (fn(r) - fn(b[r['seed']])):+.1f}" for r in rs_a if r["seed"] in b)


def label_control(arms: dict, ghpo: list) -> str:
    """The sentence comparing GHPO with its label control (empty before the control is measured)."""
    labels = arms.get("ghpo_labels")
    if not labels:
        return ""
    acc = lambda r: last_evals_mean(r, 3)
    return (f" GHPO against its label control (the same unsolved prompts given the labelled answer as a row, "
            f"experiments/chain_ghpo_labels.py): {_paired(ghpo, labels, acc)} points, paired by seed.")


def guided_method_block(method: str) -> Callable[[], str]:
    """The expected-result block of a guided benchmark companion method's experiment."""

    def block() -> str:
        return para(text())

    def text() -> str:
        acc = lambda r: last_evals_mean(r, 3)
        if method == "spark":
            a = by_arm(results("guided_spark"))
            spark, grpo, no_refl = a["spark"], a["grpo"], a.get("spark_no_reflection", [])
            judge = lambda key: ms([r["judge"][key] for r in spark])
            ablation = (f" Without the reflection rows it is {ms([acc(r) for r in no_refl])}% (paired differences with GRPO "
                        f"{_paired(no_refl, grpo, acc)} points)." if no_refl else "")
            return (f"Expected result (benchmarks/guided.md, from `python benchmarks/guided_spark.py`; raw: "
                    f"benchmarks/results/guided_spark.jsonl; {where(spark)}; {spark[0]['budget']} steps of this config and "
                    f"of arithmetic_grpo.py from each seed's SFT warm start, {seeds_phrase(r['seed'] for r in spark)}; "
                    f"held-out greedy exact match on 500 prompts, each run's mean of its last 3 evaluations, mean ± std): "
                    f"GRPO {ms([acc(r) for r in grpo])}% → SPARK {ms([acc(r) for r in spark])}% (paired differences "
                    f"{_paired(spark, grpo, acc)} points).{ablation} The judge, on its own samples of "
                    f"{spark[0]['judge']['prompts']} held-out prompts: its verdict P(\"y\") > ½ agrees with the verifier "
                    f"on {judge('agreement')}% of them, the best constant verdict on {judge('base_rate')}%; it orders a "
                    f"right / wrong pair of one prompt rightly {judge('verifier_pair_accuracy')}% of the time.")
        if method == "spark_self_reward":
            a = by_arm(results("guided_spark"))
            if not (a.get("spark_self_reward") and a.get("spark_then_verifier")):
                return ("Expected result: not measured yet (`python benchmarks/guided_spark.py --arms "
                        "spark_self_reward,spark_then_verifier` writes it).")
            judged, verifier = a["spark_self_reward"], a["spark_then_verifier"]
            phase = lambda name: lambda r: r["phase_accuracy"][name]
            second = lambda rs, key: ms([r["phase_means"]["self_reward"][key] for r in rs])
            return (f"Expected result (benchmarks/guided.md, from `python benchmarks/guided_spark.py`; raw: "
                    f"benchmarks/results/guided_spark.jsonl; {where(judged)}; {judged[0]['budget']} SPARK steps then "
                    f"{judged[0]['steps'] - judged[0]['budget']} GRPO steps from each seed's SFT warm start, "
                    f"{seeds_phrase(r['seed'] for r in judged)}; held-out greedy exact match on 500 prompts, each phase's "
                    f"mean of its last 3 evaluations, mean ± std): after SPARK {ms([phase('rl')(r) for r in judged])}%; "
                    f"after the phase rewarded by the policy's own verdict {ms([phase('self_reward')(r) for r in judged])}%, "
                    f"after the same phase rewarded by the verifier {ms([phase('self_reward')(r) for r in verifier])}% "
                    f"(paired differences {_paired(judged, verifier, phase('self_reward'))} points). Over the judged "
                    f"phase the verdict P(\"y\") > ½ agrees with the verifier on {second(judged, 'self_judge_agreement')}% "
                    f"of the samples, whose sampled accuracy is {second(judged, 'accuracy')}% (with the verifier as the "
                    f"reward: {second(verifier, 'accuracy')}%).")
        if method == "ghpo":
            a = by_arm(results("guided_ghpo"))
            ghpo, grpo = a["ghpo"], a["grpo"]
            hints = lambda key: ms([r["hints"][key] for r in ghpo])
            return (f"Expected result (benchmarks/guided.md, from `python benchmarks/guided_ghpo.py`; raw: "
                    f"benchmarks/results/guided_ghpo.jsonl; {where(ghpo)}; {ghpo[0]['budget']} steps of this config and of "
                    f"chain_grpo.py from each seed's SFT warm start, {seeds_phrase(r['seed'] for r in ghpo)}; held-out "
                    f"greedy exact match of the final answer on 500 prompts, answered without hints, each run's mean of "
                    f"its last 3 evaluations): warm start {ms([r['warm_accuracy'] for r in ghpo])}% → GHPO "
                    f"{ms([acc(r) for r in ghpo])}%, GRPO {ms([acc(r) for r in grpo])}% (paired differences "
                    f"{_paired(ghpo, grpo, acc)} points). Over training {hints('hinted_frac')}% of the groups were sampled "
                    f"again with a hint, and {hints('hinted_solved')}% of those hinted groups had a right sample."
                    f"{label_control(a, ghpo)}")
        if method == "ghpo_labels":
            a = by_arm(results("guided_ghpo"))
            if not a.get("ghpo_labels"):
                return ("Expected result: not measured yet (`python benchmarks/guided_ghpo.py --arms ghpo_labels` "
                        "writes it).")
            labels, grpo = a["ghpo_labels"], a["grpo"]
            return (f"Expected result (benchmarks/guided.md, from `python benchmarks/guided_ghpo.py`; raw: "
                    f"benchmarks/results/guided_ghpo.jsonl; {where(labels)}; {labels[0]['budget']} steps of this config, "
                    f"of chain_ghpo.py and of chain_grpo.py from each seed's SFT warm start, "
                    f"{seeds_phrase(r['seed'] for r in labels)}; held-out greedy exact match of the final answer on 500 "
                    f"prompts, each run's mean of its last 3 evaluations): warm start "
                    f"{ms([r['warm_accuracy'] for r in labels])}% → {ms([acc(r) for r in labels])}%, GRPO "
                    f"{ms([acc(r) for r in grpo])}% (paired differences {_paired(labels, grpo, acc)} points). "
                    f"{ms([r['hints']['labelled_frac'] for r in labels])}% of the groups were given the label."
                    f"{label_control(a, a['ghpo'])}")
        if method == "gkd":
            a = by_arm(results("guided_distill"))
            gkd, skd, grpo = a["gkd"], a.get("supervised_kd", []), a.get("grpo", [])
            others = "; ".join(part for part in (
                f"supervised KD (the same divergence on the teacher's samples) {percent([acc(r) for r in skd])}" if skd else "",
                f"GRPO on the verifier {percent([acc(r) for r in grpo])}" if grpo else "") if part)
            return (f"Expected result (benchmarks/guided.md, from `python benchmarks/guided_distill.py`; raw: "
                    f"benchmarks/results/guided_distill.jsonl; {where(gkd)}; {gkd[0]['budget']} steps from each seed's "
                    f"chain_grpo SFT warm start with that seed's chain_sft_large teacher, "
                    f"{seeds_phrase(r['seed'] for r in gkd)}; held-out greedy exact match of the final answer on 500 "
                    f"prompts, each run's mean of its last 3 evaluations): teacher "
                    f"{ms([r['teacher_accuracy'] for r in gkd])}%, student warm start "
                    f"{ms([r['warm_accuracy'] for r in gkd])}% → GKD {ms([acc(r) for r in gkd])}%; {others}.")
        if method == "ampo":
            a = by_arm(results("guided_ampo"))
            ampo, grpo, single = a["ampo"], a["grpo"], a.get("ampo_single", [])
            guide = lambda key: percent([r["means"][key] for r in ampo])
            ablation = (f", single-teacher AMPO {percent([acc(r) for r in single])} (paired differences "
                        f"{_paired(ampo, single, acc)} points)" if single else "")
            return (f"Expected result (benchmarks/guided.md, from `python benchmarks/guided_ampo.py`; raw: "
                    f"benchmarks/results/guided_ampo.jsonl; {where(ampo)}; {ampo[0]['budget']} steps of this config and "
                    f"of chain_grpo.py from each seed's SFT warm start, {seeds_phrase(r['seed'] for r in ampo)}; held-out "
                    f"greedy exact match of the final answer on 500 prompts, the policy alone, each run's mean of its "
                    f"last 3 evaluations): warm start {percent([r['warm_accuracy'] for r in ampo])} → AMPO "
                    f"{percent([acc(r) for r in ampo])}, GRPO {percent([acc(r) for r in grpo])} (paired differences "
                    f"{_paired(ampo, grpo, acc)} points){ablation}. Over training {guide('guidance/unsolved_frac')} of "
                    f"the groups had no right sample and {guide('guidance/injected_frac')} were given teacher rows, "
                    f"{guide('guidance/large_share')} of them from the large teacher.")
        if method == "ded":
            a = by_arm(results("guided_ded"))
            if not a.get("ded"):
                return "Expected result: not measured yet (`python benchmarks/guided_ded.py --seeds 0 1 2` writes it)."
            ded, large, small = a["ded"], a["ded_large"], a["ded_small"]
            chosen = ", ".join(f"{r['chosen']} (seed {r['seed']})" for r in ded)
            corpus = lambda key, scale=100.0, digits=1: ms([r["means"][key] for r in ded], scale, digits)
            return (f"Expected result (benchmarks/guided.md, from `python benchmarks/guided_ded.py`; raw: "
                    f"benchmarks/results/guided_ded.jsonl; {where(ded)}; {ded[0]['budget']} steps of this config from each "
                    f"seed's SFT warm start, {seeds_phrase(r['seed'] for r in ded)}; held-out greedy accuracy (every unit "
                    f"test passed) on 500 prompts, the student alone, each run's mean of its last 3 evaluations): warm "
                    f"start {percent([r['warm_accuracy'] for r in ded])} → DED {percent([acc(r) for r in ded])}, the "
                    f"large teacher's corpus alone {percent([acc(r) for r in large])} (paired differences "
                    f"{_paired(ded, large, acc)} points), the small teacher's alone {percent([acc(r) for r in small])} "
                    f"(paired differences {_paired(ded, small, acc)} points). The probe chose {chosen}. The chosen "
                    f"teacher's samples were right {corpus('corpus/teacher_accuracy')}% of the time, with "
                    f"{corpus('corpus/distinct_right', 1.0, 2)} different right programs per prompt.")
        if method == "sophia":
            a = by_arm(results("guided_sophia"))
            if not a.get("sophia"):
                return "Expected result: not measured yet (`python benchmarks/guided_sophia.py --seeds 0 1 2` writes it)."
            sophia, grpo = a["sophia"], a["grpo"]
            semi = lambda key, scale=100.0, digits=1: ms([r["means"][key] for r in sophia], scale, digits)
            return (f"Expected result (benchmarks/guided.md, from `python benchmarks/guided_sophia.py --steps "
                    f"{sophia[0]['budget']} --eval_every {sophia[0]['evals'][1]['step'] - sophia[0]['evals'][0]['step']}`; "
                    f"raw: benchmarks/results/guided_sophia.jsonl; {where(sophia)}; "
                    f"{sophia[0]['budget']} steps of this config and of chain_grpo.py from each seed's SFT warm start, "
                    f"{seeds_phrase(r['seed'] for r in sophia)}; held-out greedy exact match of the final answer on 500 "
                    f"prompts, the policy alone, each run's mean of its last 3 evaluations): large teacher "
                    f"{ms([r['teacher_accuracy'] for r in sophia])}%, warm start {ms([r['warm_accuracy'] for r in sophia])}% "
                    f"→ SOPHIA {ms([acc(r) for r in sophia])}%, GRPO {ms([acc(r) for r in grpo])}% (paired differences "
                    f"{_paired(sophia, grpo, acc)} points). Over training {semi('teacher_accuracy')}% of the "
                    f"semi-off-policy rows (the teacher's scratchpad, the policy's total) were right; the teacher's "
                    f"tokens had importance weight {semi('correction/ratio_mean', 1.0, 3)} on average, "
                    f"{semi('correction/truncated_frac', 100.0, 2)}% of them truncated at C = 2.")
        if method in ("tppo", "tppo_ppo"):
            a = by_arm(results("guided_tppo"))
            if not (a.get("tppo") and a.get("ppo")):
                return "Expected result: not measured yet (`python benchmarks/guided_tppo.py --seeds 0 1 2` writes it)."
            tppo, ppo = a["tppo"], a["ppo"]
            seconds = lambda rs: ms([r["train_seconds"] for r in rs], 1.0, 0)
            finished = lambda rs: ms([guided_tppo.finished_per_step(r) for r in rs], 1.0, 1)
            return (f"Expected result (benchmarks/guided.md, from `python benchmarks/guided_tppo.py --steps "
                    f"{tppo[0]['budget']} --eval_every {tppo[0]['evals'][1]['step'] - tppo[0]['evals'][0]['step']}`; raw: "
                    f"benchmarks/results/guided_tppo.jsonl; {where(tppo)}; {tppo[0]['budget']} steps of chain_long_tppo.py "
                    f"and of chain_long_ppo.py from each seed's SFT warm start, {seeds_phrase(r['seed'] for r in tppo)}; "
                    f"held-out greedy exact match of the final answer on 500 prompts, each run's mean of its last 3 "
                    f"evaluations): warm start {ms([r['warm_accuracy'] for r in tppo])}% → T-PPO "
                    f"{ms([acc(r) for r in tppo])}%, PPO {ms([acc(r) for r in ppo])}% (paired differences "
                    f"{_paired(tppo, ppo, acc)} points). Training time (the steps' collect + update, evaluations "
                    f"excluded): T-PPO {seconds(tppo)} s, PPO {seconds(ppo)} s; responses finished per step: "
                    f"{finished(tppo)} and {finished(ppo)}.")
        if method == "nlpo":
            records = results("guided_nlpo")
            if not records:
                return "Expected result: not measured yet (`python benchmarks/guided_nlpo.py --seeds 0 1 2` writes it)."
            budget = max(r["budget"] for r in records)
            a = by_arm([r for r in records if r["budget"] == budget])
            nlpo, ppo = a["nlpo"], a["ppo"]
            mask = lambda key, scale=100.0, digits=1: ms([r["mask"][key] for r in nlpo], scale, digits)
            return (f"Expected result (benchmarks/guided.md, from `python benchmarks/guided_nlpo.py --steps {budget}`; raw: "
                    f"benchmarks/results/guided_nlpo.jsonl; {where(nlpo)}; {budget} steps of this config and of "
                    f"arithmetic_ppo.py from each seed's SFT warm start, {seeds_phrase(r['seed'] for r in nlpo)}; held-out "
                    f"greedy exact match of the unmasked policy on 500 prompts, each run's mean of its last 3 evaluations): "
                    f"warm start {ms([r['warm_accuracy'] for r in nlpo])}% → NLPO {ms([acc(r) for r in nlpo])}%, PPO "
                    f"{ms([acc(r) for r in ppo])}% (paired differences {_paired(nlpo, ppo, acc)} points). The mask keeps "
                    f"{mask('mask/kept_tokens', 1.0, 2)} tokens holding {mask('mask/kept_mass')}% of the policy's mass; "
                    f"the policy's most likely token is masked at {mask('mask/argmax_masked_frac')}% of the positions.")
        if method == "digi_q":
            a = by_arm(results("guided_digi_q"))
            td, mc, bc = a["digi_q"], a.get("digi_q_mc", []), a["filtered_bc"]
            diag = lambda rs, key: ms([r["diagnostics"][key] for r in rs], 1.0, 3)
            mc_text = f", with the Monte-Carlo critic {ms([acc(r) for r in mc])}%" if mc else ""
            return (f"Expected result (benchmarks/guided.md, from `python benchmarks/guided_digi_q.py`; raw: "
                    f"benchmarks/results/guided_digi_q.jsonl; {where(td)}; {td[0]['steps']} steps from each seed's "
                    f"chain_grpo SFT warm start, {seeds_phrase(r['seed'] for r in td)}; held-out greedy exact match, each "
                    f"run's mean of its last 3 evaluations, mean ± std): warm start {ms([r['warm_accuracy'] for r in td])}% "
                    f"→ Digi-Q {ms([acc(r) for r in td])}%{mc_text}; critic-free filtered BC "
                    f"{ms([acc(r) for r in bc])}% (paired Digi-Q − filtered BC: {_paired(td, bc, acc)} points). The TD "
                    f"critic's losses over the last tenth of the steps: Q {diag(td, 'critic/q_loss')}, V "
                    f"{diag(td, 'critic/v_loss')}; the actor trains on {diag(td, 'actor/weight_fraction')} of the states.")
        a = by_arm(results("guided_dialtree"))
        tree, flat = a["dialtree_rpo"], a["no_tree"]
        pct = lambda rs, key: ms([r[key] for r in rs])
        calls = lambda rs: f"{sum(r['target_calls_mean'] for r in rs) / len(rs):.1f}"
        return (f"Expected result (benchmarks/guided.md, from `python benchmarks/guided_dialtree.py`; raw: "
                f"benchmarks/results/guided_dialtree.jsonl; {where(tree)}; both arms {tree[0]['steps']} steps from the same "
                f"cold start and target, {seeds_phrase(r['seed'] for r in tree)}): held-out success of the greedy attacker "
                f"without a tree (one dialogue of up to 3 turns on each of the {tree[0]['goals']} held-out goals): cold "
                f"start {pct(tree, 'cold_success')}%, DialTree-RPO {pct(tree, 'success')}%, no tree {pct(flat, 'success')}%; "
                f"first-turn success {pct(tree, 'first_turn')}% and {pct(flat, 'first_turn')}%. Target calls per goal and "
                f"step: {calls(tree)} with the tree, {calls(flat)} without (at most {tree[0]['target_calls_max']} and "
                f"{flat[0]['target_calls_max']}).")

    return block


def readme_guided_methods() -> str:
    """The README row of the guided benchmark's companion methods (SPARK, Digi-Q, DialTree-RPO)."""
    acc = lambda rs: ms([last_evals_mean(r, 3) for r in rs])
    spark, digi, tree, ghpo, distill = (by_arm(results(name)) for name in (
        "guided_spark", "guided_digi_q", "guided_dialtree", "guided_ghpo", "guided_distill"))
    nlpo_records = results("guided_nlpo")
    nlpo = by_arm([r for r in nlpo_records if r["budget"] == max(x["budget"] for x in nlpo_records)]) if nlpo_records else {}
    parts = []
    if spark.get("spark") and spark.get("grpo"):
        ablation = (f", without the reflection rows' labelled answers {acc(spark['spark_no_reflection'])}%"
                    if spark.get("spark_no_reflection") else "")
        parts.append(f"SPARK {acc(spark['spark'])}% vs GRPO {acc(spark['grpo'])}% "
                     f"({seeds_phrase(r['seed'] for r in spark['spark'])}){ablation}")
    if spark.get("spark_self_reward") and spark.get("spark_then_verifier"):
        final = lambda rs: ms([r["phase_accuracy"]["self_reward"] for r in rs])
        parts.append(f"then GRPO rewarded by SPARK's own judge {final(spark['spark_self_reward'])}% vs by the verifier "
                     f"{final(spark['spark_then_verifier'])}% ({seeds_phrase(r['seed'] for r in spark['spark_self_reward'])})")
    if digi.get("digi_q") and digi.get("filtered_bc"):
        parts.append(f"Digi-Q {acc(digi['digi_q'])}% vs critic-free filtered BC {acc(digi['filtered_bc'])}% "
                     f"({seeds_phrase(r['seed'] for r in digi['digi_q'])})")
    if tree.get("dialtree_rpo") and tree.get("no_tree"):
        success = lambda rs: ms([r["success"] for r in rs])
        parts.append(f"DialTree-RPO held-out success {success(tree['dialtree_rpo'])}% vs {success(tree['no_tree'])}% "
                     f"without the tree ({seeds_phrase(r['seed'] for r in tree['dialtree_rpo'])})")
    if ghpo.get("ghpo") and ghpo.get("grpo"):
        parts.append(f"GHPO {acc(ghpo['ghpo'])}% vs GRPO {acc(ghpo['grpo'])}% ({seeds_phrase(r['seed'] for r in ghpo['ghpo'])})"
                     + (f", and its label control (the labelled answer as a row of the same unsolved groups, no hint) "
                        f"{acc(ghpo['ghpo_labels'])}%" if ghpo.get("ghpo_labels") else ""))
    if distill.get("gkd"):
        skd = (f", supervised KD {percent([last_evals_mean(r, 3) for r in distill['supervised_kd']])}"
               if distill.get("supervised_kd") else "")
        parts.append(f"GKD {acc(distill['gkd'])}%{skd} ({seeds_phrase(r['seed'] for r in distill['gkd'])})")
    if nlpo.get("nlpo") and nlpo.get("ppo"):
        parts.append(f"NLPO {acc(nlpo['nlpo'])}% vs PPO {acc(nlpo['ppo'])}% ({seeds_phrase(r['seed'] for r in nlpo['nlpo'])})")
    ampo, inspo = by_arm(results("guided_ampo")), by_arm(results("guided_inspo"))
    if ampo.get("ampo") and ampo.get("grpo"):
        parts.append(f"AMPO {percent([last_evals_mean(r, 3) for r in ampo['ampo']])} vs GRPO "
                     f"{percent([last_evals_mean(r, 3) for r in ampo['grpo']])} ({seeds_phrase(r['seed'] for r in ampo['ampo'])})")
    if inspo.get("inspo") and inspo.get("grpo"):
        parts.append(f"INSPO {acc(inspo['inspo'])}% vs GRPO {acc(inspo['grpo'])}% ({seeds_phrase(r['seed'] for r in inspo['inspo'])})")
    sophia = by_arm(results("guided_sophia"))
    if sophia.get("sophia") and sophia.get("grpo"):
        parts.append(f"SOPHIA {acc(sophia['sophia'])}% vs GRPO {acc(sophia['grpo'])}% at {sophia['sophia'][0]['budget']} "
                     f"steps ({seeds_phrase(r['seed'] for r in sophia['sophia'])})")
    ded = by_arm(results("guided_ded"))
    if ded.get("ded"):
        parts.append(f"DED {acc(ded['ded'])}% vs the large teacher's corpus {acc(ded['ded_large'])}% and the small "
                     f"teacher's {acc(ded['ded_small'])}% ({seeds_phrase(r['seed'] for r in ded['ded'])})")
    tppo = by_arm(results("guided_tppo"))
    if tppo.get("tppo") and tppo.get("ppo"):
        seconds = lambda rs: ms([r["train_seconds"] for r in rs], 1.0, 0)
        parts.append(f"T-PPO {acc(tppo['tppo'])}% vs PPO {acc(tppo['ppo'])}% at {tppo['tppo'][0]['budget']} steps, "
                     f"training time {seconds(tppo['tppo'])} s vs {seconds(tppo['ppo'])} s "
                     f"({seeds_phrase(r['seed'] for r in tppo['tppo'])})")
    if not parts:
        return ""
    return ("| `experiments/arithmetic_spark.py`, `arithmetic_spark_self_reward.py`, `chain_digi_q.py`, "
            "`target_says_dialtree_rpo.py`, `chain_ghpo.py`, `chain_ghpo_labels.py`, `chain_gkd.py`, `arithmetic_nlpo.py`, `chain_ampo.py`, "
            "`arithmetic_inspo.py`, `chain_sophia.py`, `chain_long_tppo.py`, `programs_ded.py` | SPARK (the policy "
            "also trained as a judge of its own samples, then that judge as the reward), Digi-Q (a TD critic on frozen "
            "features, best-of-N extraction), DialTree-RPO (tree search over dialogue turns against a frozen target), "
            "GHPO (hints for the prompts no sample solves; its label control gives those prompts the labelled answer as a row), GKD (on-policy distillation from a larger teacher), NLPO "
            "(PPO under a delayed copy's top-p action mask), AMPO (a pool of teachers for the groups no sample "
            "solves), INSPO (a population of instructions co-evolved with the policy), SOPHIA (a larger teacher's "
            "reasoning finished by the policy, the outcome credited back to the reasoning), T-PPO (responses drawn "
            "32 tokens per step, trained on as they grow), DED (distillation on several distinct right answers of the "
            "teacher a quick distillation test picks) against "
            "their papers' baselines | "
            + "; ".join(parts) + " ([`benchmarks/guided.md`](benchmarks/guided.md)) |")


def ded_teachers_block() -> str:
    """The expected-result block of DED's two teacher configs (experiments/programs_sft_{large,small}.py)."""
    ded = by_arm(results("guided_ded")).get("ded")
    if not ded:
        return para("Expected result: not measured yet (`python benchmarks/guided_ded.py --seeds 0 1 2` trains these "
                    "teachers and writes their accuracy).")
    acc = lambda name: percent([r["teacher_accuracy"][name] for r in ded])
    return para(f"Expected result (from `python benchmarks/guided_ded.py`, which trains both teachers of each seed; raw: "
                f"benchmarks/results/guided_ded.jsonl; {where(ded)}; {seeds_phrase(r['seed'] for r in ded)}; held-out "
                f"greedy accuracy, every unit test passed, on 500 prompts): programs_sft_large {acc('large')}, "
                f"programs_sft_small {acc('small')}.")


def readme_frontier() -> str:
    """The README row of benchmarks/frontier.md: BGPO, CT² detectability, the volleyball court."""
    bgpo = [r for r in results("frontier_bgpo") if r["kind"] == "training" and r["arm"] == "bgpo"]
    memory = {(r["arm"], r["num_mc"]): r["temp_bytes"] / 2 ** 20 for r in results("frontier_bgpo") if r["kind"] == "memory"}
    k = max(n for _, n in memory)
    ct2 = by_arm(results("frontier_ct2"))
    volley = {r["arm"]: r for r in results("frontier_volleyball")}
    pref = by_arm(results("frontier_diffusion_preference"))
    pgd = {r["arm"]: ms(r["final_return_by_seed"], 1.0, 0) for r in results("frontier_pgd")}
    steps = pref["bgpo"][0]["budget"]
    auroc = lambda rs, part: ms([r[part]["eval/detect_auroc_log_likelihood"] for r in rs], 1.0, 2)
    ct2_acc = lambda rs: ms([last_evals_mean(r, frontier_ct2.LAST_EVALS) for r in rs])
    return ("| `experiments/arithmetic_bgpo.py`, `arithmetic_diffusion_{seppo,dragon}.py`, `cartpole_pgd.py`, "
            "`chain_grpo_ct2.py`, `volleyball_{mappo,ippo,selfplay}.py` | BGPO, SePPO and DRAGON on a masked-diffusion "
            "LM; policy-guided trajectory diffusion as offline data; the CT² detectors before and after RL and as a reward penalty; MAPPO / IPPO / self-play "
            f"on a volleyball court | BGPO after SFT {ms([r['warm_accuracy'] for r in bgpo])}% → "
            f"{ms([r['accuracy'] for r in bgpo])}% ({seeds_phrase(r['seed'] for r in bgpo)}), update memory at K = {k} "
            f"masks {memory[('bgpo', k)]:.1f} MiB vs {memory[('elbo_ratio', k)]:.1f} MiB for the non-linear objective; "
            f"at {steps} RL steps SePPO {ms([r['accuracy'] for r in pref['seppo']])}%, DRAGON "
            f"{ms([r['accuracy'] for r in pref['dragon']])}%, BGPO {ms([r['accuracy'] for r in pref['bgpo']])}% on the "
            f"same model; CartPole offline IQL return on real data {pgd['real_only']}, + guided synthetic "
            f"{pgd['guided']}, + unguided {pgd['unguided']}; "
            f"log-likelihood detector AUROC {auroc(ct2['grpo'], 'warm')} (warm start) → {auroc(ct2['grpo'], 'last')} "
            f"(GRPO, {ct2_acc(ct2['grpo'])}%) → {auroc(ct2['grpo_mean_ct2'], 'last')} (GRPO without the std in its "
            f"advantage, with the detectability penalty, {ct2_acc(ct2['grpo_mean_ct2'])}%; the penalty with GRPO's "
            f"std-normalised advantage: {ct2_acc(ct2['grpo_ct2'])}%); win rate against "
            f"the scripted team MAPPO {ms(volley['mappo']['last10_win_rate_scripted_by_seed'])}%, IPPO "
            f"{ms(volley['ippo']['last10_win_rate_scripted_by_seed'])}%, self-play "
            f"{ms(volley['selfplay']['last10_win_rate_scripted_by_seed'])}% ({volley['mappo']['num_seeds']} seeds, "
            "[`benchmarks/frontier.md`](benchmarks/frontier.md)) |")


def readme_experiments() -> str:
    long, t, tools = _arithmetic(), _treepo_rows(), _tools()
    grpo, sft = long["grpo"], long["sft"]
    slash = lambda rs, key: " / ".join(f"{100 * r[key]:.1f}" for r in rs)
    one = lambda n: long[n][0]
    rows = [
        "| config | what | result |",
        "|---|---|---|",
        f"| `experiments/arithmetic_grpo.py` | SFT on 300 labelled demos (converged), then GRPO from prompts + verifier "
        f"| warm start {slash(grpo, 'warm_accuracy')}% → **{slash(grpo, 'accuracy')}%** (seeds "
        f"{'/'.join(str(r['seed']) for r in grpo)}); SFT-only for the same {sft[0]['steps']} steps: {slash(sft, 'accuracy')}% |",
        "| `experiments/arithmetic_sft.py` | SFT only, on the same 300 demos | see above |",
    ]
    for noun, what in (("ppo", "the same warm start, then PPO (value head, GAE)"),
                       ("dpo", "the same warm start, then DPO on best-vs-worst pairs of the warm model's samples")):
        r = one(noun)
        rows.append(f"| `experiments/arithmetic_{noun}.py` | {what} | {100 * r['warm_accuracy']:.1f}% → "
                    f"{100 * r['accuracy']:.1f}% (seed {r['seed']} only) |")
    trio = [one(n) for n in ("chord", "dapo", "remax")]
    rows.append(
        "| `experiments/arithmetic_{chord,dapo,remax}.py` | the same warm start and budget; their collectors (expert rows, "
        f"dynamic sampling, greedy baseline) moved onto the engine | {100 * trio[0]['warm_accuracy']:.1f}% → "
        f"{slash(trio, 'accuracy')}% (seed 0 only) |")
    tool, no_tool = tools["tool"], tools["no_tool"]
    rows.append(
        "| `experiments/multiply_flow_grpo.py` vs `multiply_grpo.py` | multiplication of 1–3-digit numbers: Flow-GRPO "
        "with a calculator tool (multi-turn) vs GRPO without, same demonstrations, SFT and RL budget | with the tool "
        f"{ms([r['warm_accuracy'] for r in tool])}% → **{ms([r['accuracy'] for r in tool])}%**; without "
        f"{ms([r['warm_accuracy'] for r in no_tool])}% → {ms([r['accuracy'] for r in no_tool])}% ({len(tool)} seeds, "
        "[`benchmarks/tools.md`](benchmarks/tools.md)) |")
    rows.append(
        "| `experiments/chain_treepo.py` vs `chain_grpo.py` | running sums with a scratchpad: TreePO's tree rollouts and "
        "advantage vs GRPO, same warm start, same budget of sampled tokens | TreePO samples "
        f"{statistics.mean(t['treepo_tokens']):.2f}× GRPO's tokens per step but reaches {ms(t['treepo_budget'])}% vs "
        f"GRPO's {ms(t['grpo'])}% from {ms(t['warm'])}% ({len(t['seeds'])} seeds, "
        "[`benchmarks/treepo.md`](benchmarks/treepo.md)) |")
    rows.append(readme_length())
    rows.append(readme_preference())
    rows += [row for row in (readme_guided(), readme_guided_methods()) if row]
    rows.append(readme_frontier())
    cat = _catalogue()
    added = [n for n in cat if n not in ("grpo", "rover", "mdpo", "dpo", *PAIR_NOUNS)]  # rover, mdpo: fidelity re-runs
    gains = {n: statistics.mean(r["accuracy"] - r["warm_accuracy"] for r in cat[n]) for n in cat}
    rows.append(
        f"| `experiments/arithmetic_{{{','.join(added)}}}.py` | the verl / Trinity-RFT catalogue additions beside GRPO, "
        f"the same warm start, {cat['grpo'][0]['steps']} steps | {'every one learns: ' if min(gains[n] for n in added) > 0 else 'gains '}{100 * min(gains[n] for n in added):+.1f} "
        f"to {100 * max(gains[n] for n in added):+.1f} points (GRPO +{100 * gains['grpo']:.1f}) from {ms([r['warm_accuracy'] for r in cat['grpo']])}% "
        f"({len(cat['grpo'])} seeds, [`benchmarks/catalogue.md`](benchmarks/catalogue.md)) |")
    pairs = [n for n in PAIR_NOUNS if n in cat]
    if pairs and "dpo" in cat:
        rows.append(
            f"| `experiments/arithmetic_{{{','.join(pairs)}}}.py` beside `arithmetic_dpo.py` | offline pair losses on the warm "
            f"model's own samples, same warm start, {cat['dpo'][0]['steps']} steps | DPO "
            f"{ms([r['accuracy'] for r in cat['dpo']])}%; " + "; ".join(
                f"{n.upper()} {ms([r['accuracy'] for r in cat[n]])}%" for n in pairs)
            + f" ({len(cat['dpo'])} seeds, [`benchmarks/catalogue.md`](benchmarks/catalogue.md)) |")
    rows += [
        "| `experiments/arithmetic_<noun>.py` for the other nouns | the same warm start | each docstring's figure comes "
        "from [`benchmarks/algorithms.md`](benchmarks/algorithms.md) (every noun, 3 seeds, measured with one XLA "
        "device before the rollout engine) |",
        "| `experiments/gsm8k_grpo.py` | GRPO on GSM8K from a local Hugging Face checkpoint (`:gpu`, `:tpu_v4_8`, "
        "`:tpu_v5e_8` presets) | not measured here (no accelerator); `:smoke` runs in the suite on a tiny checkpoint |",
        "| `experiments/cartpole_ppo.py`, `pendulum_ppo.py`, `cartpole_mdpo.py`, … | the control track (below) | "
        "see the control table |",
    ]
    return "\n".join(rows)


# ------------------------------------------------------------------------------ control


def _control() -> dict[str, dict]:
    return {r["run"]: r for r in results("control")}


def _first_reach(run: dict, threshold: float, curve: str = "mean_return") -> str:
    xs = run["curves"][curve]
    k = next((i for i, x in enumerate(xs) if x >= threshold), None)
    return "never" if k is None else f"{(k + 1) * run['steps_per_update'] / 1000:.0f}k steps"


def _final(run: dict, digits: int = 1, scale: float = 1.0) -> str:
    return ms(run["final_return_by_seed"], scale, digits)


def _at(run: dict, env_steps: int, curve: str = "mean_return") -> float:
    k = max(0, min(len(run["curves"][curve]), env_steps // run["steps_per_update"]) - 1)
    return run["curves"][curve][k]


def _tail_mean(run: dict, n: int, curve: str = "mean_return") -> float:
    return statistics.mean(run["curves"][curve][-n:])


def _control_setup(run: dict) -> str:
    return (f"benchmarks/results/control.jsonl, from `python benchmarks/control.py --runs {run['run']}`: "
            f"{seeds_phrase(range(run['seed'], run['seed'] + run['num_seeds']))} in one vmapped call, {run['env_steps']:,} "
            f"environment steps, {where([run])}; mean ± std over seeds of each seed's final return")


def control_block(name: str) -> Callable[[], str]:
    def block() -> str:
        c = _control()
        run = c[name]
        head = f"Expected result ({_control_setup(run)}): "
        if name in ("cartpole_ppo", "cartpole_mdpo"):
            text = f"mean return {_final(run)}; the seed mean first reaches 475 at {_first_reach(run, 475)}"
            if name == "cartpole_mdpo":
                text += f" (PPO, same budget: {_first_reach(c['cartpole_ppo'], 475)})"
            text += "."
        elif name == "pendulum_ppo":
            text = (f"mean episode return {_final(run, 0)} ({_at(run, run['env_steps'] // 2):.0f} at half the budget; "
                    "a random policy scores around −1200).")
        elif name == "cartpole_props":
            on = c["cartpole_props_onpolicy"]
            props_e, on_e = run["curves"]["sampling_error_pooled"], on["curves"]["sampling_error_pooled"]
            lower = sum(a < b for a, b in zip(props_e, on_e)) / len(props_e)
            text = (f"pooled sampling error of the buffer against the target policy (mean over updates, seed mean) "
                    f"{statistics.mean(props_e):.3g} with PROPS vs {statistics.mean(on_e):.3g} with on-policy sampling "
                    f"({statistics.mean(on_e) / statistics.mean(props_e):.1f}× lower, lower on {100 * lower:.0f}% of the "
                    f"updates); the 81-cell measure: {statistics.mean(run['curves']['sampling_error']):.3g} vs "
                    f"{statistics.mean(on['curves']['sampling_error']):.3g}. Mean return {_final(run, 0)} with PROPS vs "
                    f"{_final(on, 0)} on-policy.")
        elif name == "lock_hnpg":
            on = c["lock_hnpg_onpolicy"]
            text = (f"mean return {_final(run, 3)} (the seed mean first reaches 0.95 at {_first_reach(run, 0.95)}); "
                    f"on-policy NPG alone (`:onpolicy`, same budget): {_final(on, 3)}, the distractor.")
        elif name == "cartpole_unio4":
            s, ppo = run["summary"], c["cartpole_ppo_unio4_budget"]
            stats = ", ".join(f"{k} {s[k]:.1f} ± {s[k + '_std']:.1f}" for k in sorted(s) if k + "_std" in s)
            text = (f"{stats}; online return {_final(run, 1)}. PPO from scratch with the same online budget "
                    f"(cartpole_ppo, total_timesteps={ppo['env_steps']:,}): {_final(ppo, 1)}.")
        elif name.startswith("mpe_spread"):
            other = c["mpe_spread_ippo" if name.endswith("mappo") else "mpe_spread_mappo"]
            text = (f"mean per-agent episode return {_final(run, 2)}, from {run['curves']['mean_return'][0]:.1f} at the "
                    f"first update; {_at(run, 250_000):.1f} at 250k steps. "
                    f"{'IPPO' if name.endswith('mappo') else 'MAPPO'} with the same recipe: {_final(other, 2)}.")
        elif name == "bandit_relic":
            full = c["bandit_relic_full_only"]
            text = (f"mean episode return over the context {_final(run, 2)} (random play 4.0, the best arm 6.67); "
                    f"with one full update per context instead (`:full_only`): {_final(full, 2)}.")
        else:
            raise KeyError(name)
        return para(head + text)

    return block


def readme_control() -> str:
    c = _control()
    f = lambda n, d=1: _final(c[n], d)
    props, on = c["cartpole_props"], c["cartpole_props_onpolicy"]
    pe = statistics.mean(props["curves"]["sampling_error_pooled"])
    oe = statistics.mean(on["curves"]["sampling_error_pooled"])
    seeds = {r["num_seeds"] for r in c.values()}
    rows = [
        f"Measured results ({'/'.join(map(str, sorted(seeds)))} seeds in one vmapped call each, mean ± std over seeds "
        "of the final return; raw: `benchmarks/results/control.jsonl`, from `python benchmarks/control.py`; recipes, "
        "budgets and baselines in each config's docstring):",
        "",
        "| config | algorithm, task | result |",
        "|---|---|---|",
        f"| `cartpole_ppo.py` | PPO (PureJaxRL's config), CartPole-v1, {c['cartpole_ppo']['env_steps']:,} steps | "
        f"{f('cartpole_ppo')}; ≥ 475 from {_first_reach(c['cartpole_ppo'], 475)} |",
        f"| `cartpole_mdpo.py` | on-policy MDPO, CartPole-v1, {c['cartpole_mdpo']['env_steps']:,} steps | "
        f"{f('cartpole_mdpo')}; ≥ 475 from {_first_reach(c['cartpole_mdpo'], 475)} |",
        f"| `pendulum_ppo.py` | PPO, Gaussian policy, Pendulum-v1, {c['pendulum_ppo']['env_steps']:,} steps | "
        f"{f('pendulum_ppo', 0)} |",
        f"| `cartpole_props.py` | PROPS vs on-policy sampling into the same buffer, {props['env_steps']:,} steps | "
        f"pooled sampling error {oe / pe:.1f}× lower ({pe:.3g} vs {oe:.3g}); return {f('cartpole_props', 0)} vs "
        f"{f('cartpole_props_onpolicy', 0)} |",
        f"| `lock_hnpg.py` | HNPG (hybrid NPG with offline data), continuous combination lock, "
        f"{c['lock_hnpg']['env_steps']:,} steps | mean return {f('lock_hnpg', 3)} (opens the lock); on-policy "
        f"NPG: {f('lock_hnpg_onpolicy', 3)} (the distractor) |",
        f"| `cartpole_unio4.py` | Uni-O4: offline on an in-repo TFDS dataset, then online | online {f('cartpole_unio4', 0)} "
        f"at {c['cartpole_unio4']['env_steps']:,} steps (PPO, same online budget: {f('cartpole_ppo_unio4_budget', 0)}) |",
        f"| `mpe_spread_mappo.py` / `mpe_spread_ippo.py` | MAPPO / IPPO, JaxMARL MPE simple_spread, "
        f"{c['mpe_spread_mappo']['env_steps']:,} steps | {f('mpe_spread_mappo')} / {f('mpe_spread_ippo')} per agent |",
        f"| `bandit_relic.py` | ReLIC-style partial updates, transformer policy over multi-episode bandit contexts | "
        f"{f('bandit_relic', 2)} per context vs {f('bandit_relic_full_only', 2)} with full-only updates |",
    ]
    return "\n".join(rows)


# ------------------------------------------------------------------------------ staleness


def readme_staleness() -> str:
    from benchmarks import staleness

    rs = results("staleness")
    ks = sorted({r["staleness"] for r in rs})
    nouns = [n for n in staleness.NOUNS if any(r["noun"] == n for r in rs)]
    cell = lambda n, k, f: [f(r) for r in rs if r["noun"] == n and r["staleness"] == k]
    seeds = sorted({r["seed"] for r in rs})
    head = (f"`benchmarks/staleness.py` ({seeds_phrase(seeds)}, {rs[0]['steps']} steps on arithmetic from the shared "
            f"warm starts, {where(rs)}; [`benchmarks/staleness.md`](benchmarks/staleness.md)): held-out greedy accuracy "
            f"and the mean activity of each noun's mechanism, on-policy (k = 0) and with rows from the policy of "
            f"k = {', '.join(map(str, ks[1:]))} updates ago:")
    rows = ["| noun | mechanism | " + " | ".join(f"accuracy % (k = {k}) | activity % (k = {k})" for k in ks) + " |",
            "|---|---|" + "---|---|" * len(ks)]
    for n in nouns:
        metric = staleness.MECHANISM[n]
        rows.append(f"| `{n}` | `{metric}` | " + " | ".join(
            f"{ms(cell(n, k, lambda r: r['accuracy']))} | {ms(cell(n, k, lambda r: r['run_means'].get(metric, 0.0)), 100, 2)}"
            for k in ks) + " |")
    return para(head) + "\n\n" + "\n".join(rows)


# ------------------------------------------------------------------------------ speed


def readme_speed() -> str:
    sampler = [r for r in results("sampler") if "speedup_vs_hf" in r][-1]
    lengths = results("rollout_lengths")[-1]
    control = [r for r in results("ppo_control") if r.get("summary")][-1]
    prefill = {r["program"]: r for r in results("fork_prefill")}
    text = (f"`benchmarks/` holds scripts that print comparable figures (one JSON line last) and append raw results to "
            f"`benchmarks/results/`; see [benchmarks/README.md](benchmarks/README.md). On the 2-core development CPU, "
            f"each against a peer measured in the same run: the sampler draws {sampler['speedup_vs_hf']:.2f}× the "
            f"tokens/s of transformers `generate`; continuous batching decodes a long-tailed length distribution "
            f"{lengths['speedup_vs_static']:.2f}× faster than the static loop; control PPO on CartPole runs at "
            f"{control['speedup_vs_purejaxrl']:.2f}× PureJaxRL's own `ppo.py`; forking a group's prompt prefill cuts "
            f"its FLOPs to {prefill['group']['prefill_flops'] / prefill['flat']['prefill_flops']:.3f}× of a prefill "
            f"per sample.")
    return para(text)


def readme_memory() -> str:
    """Peak memory of a GRPO update on the Qwen2-0.5B shape per setting (benchmarks/memory.py)."""
    runs = {(r["setting"], r["group"]): r for r in results("memory")}  # the latest of each
    if not {(s, g) for s in ("plain", "chunked", "micro 4", "packed") for g in (4,)} | {
            (s, 1) for s in ("chunked", "packed", "micro 4", "micro 4 packed")} <= set(runs):
        return "- Peak memory: not measured yet (`python benchmarks/memory.py --group 4` and `--group 1` write it)."
    gib = lambda setting, group: f"{runs[(setting, group)]['peak_bytes'] / 2**30:.1f}"
    one = next(iter(runs.values()))
    text = (f"- Peak memory of one GRPO update (reference forward, policy forward and backward, AdamW) on the "
            f"Qwen2-0.5B shape ({one['params'] / 1e6:.0f}M parameters, float32), batch {one['batch']}, "
            f"{one['prompt_len']} + {one['response_len']} tokens, responses of uniformly drawn lengths (XLA's buffer "
            f"assignment of the compiled step, from `python benchmarks/memory.py`; raw: benchmarks/results/memory.jsonl; "
            f"{where(list(runs.values()))}): in groups of 4, the whole minibatch at once needs {gib('plain', 4)} GiB, "
            f"with the LM head chunked {gib('chunked', 4)} GiB and with 4 micro-batches as well {gib('micro 4', 4)} "
            f"GiB. Packing needs {gib('packed', 4)} GiB there (the packed forward encodes every row's prompt, the "
            f"unpacked one each group's once); for single rows (SFT, groups of 1) it needs {gib('packed', 1)} GiB "
            f"against {gib('chunked', 1)} GiB unpacked, and {gib('micro 4 packed', 1)} GiB with 4 micro-batches "
            f"against {gib('micro 4', 1)} GiB.")
    return para(text)


def inspo_block() -> str:
    """INSPO against GRPO (benchmarks/guided_inspo.py)."""
    a = by_arm(results("guided_inspo"))
    inspo, grpo = a["inspo"], a["grpo"]
    acc = lambda r: last_evals_mean(r, 3)
    from benchmarks.guided_inspo import bare_accuracy as bare
    return para(
        f"Expected result (benchmarks/guided.md, from `python benchmarks/guided_inspo.py`; raw: "
        f"benchmarks/results/guided_inspo.jsonl; {where(inspo)}; {inspo[0]['budget']} steps of this config and of "
        f"arithmetic_grpo.py from each seed's SFT warm start, {seeds_phrase(r['seed'] for r in inspo)}; held-out greedy "
        f"exact match on 500 prompts, each run's mean of its last 3 evaluations): warm start "
        f"{ms([r['warm_accuracy'] for r in inspo])}% → INSPO {ms([acc(r) for r in inspo])}% under the population's best "
        f"instruction ({ms([bare(r) for r in inspo])}% on bare prompts), GRPO {ms([acc(r) for r in grpo])}% (paired "
        f"differences {_paired(inspo, grpo, acc)} points): not better than GRPO on this task.")


def frontier_block(name: str) -> Callable[[], str]:
    """The expected-result block of an experiment measured by a benchmarks/frontier_<...>.py companion."""

    def block() -> str:
        if name == "bgpo":
            rs = results("frontier_bgpo")
            memory = {(r["arm"], r["num_mc"]): r["temp_bytes"] for r in rs if r["kind"] == "memory"}
            runs = [r for r in rs if r["kind"] == "training" and r["arm"] == "bgpo"]
            other = [r for r in rs if r["kind"] == "training" and r["arm"] == "elbo_ratio"]
            ks = sorted({k for _, k in memory})
            mib = lambda o, k: f"{memory[(o, k)] / 2 ** 20:.1f}"
            return para(
                f"Expected result (benchmarks/frontier.md, from `python benchmarks/frontier_bgpo.py`; raw: "
                f"benchmarks/results/frontier_bgpo.jsonl; {where(rs)}; K = {runs[0]['num_mc']} masks, "
                f"{seeds_phrase(r['seed'] for r in runs)}; held-out greedy exact match): after SFT "
                f"{ms([r['warm_accuracy'] for r in runs])}% → after {runs[0]['budget']} BGPO steps "
                f"{ms([r['accuracy'] for r in runs])}% (the non-linear ELBO-ratio objective: "
                f"{ms([r['accuracy'] for r in other])}%). Temporary memory of one update (XLA's buffer assignment) for "
                f"K = {ks[0]} … {ks[-1]}: BGPO {mib('bgpo', ks[0])} … {mib('bgpo', ks[-1])} MiB, the non-linear "
                f"objective {mib('elbo_ratio', ks[0])} … {mib('elbo_ratio', ks[-1])} MiB.")
        if name in ("diffusion_seppo", "diffusion_dragon"):
            a = by_arm(results("frontier_diffusion_preference"))
            arm = name.removeprefix("diffusion_")
            runs, base = a[arm], a["bgpo"]
            return para(
                f"Expected result (benchmarks/frontier.md, from `python benchmarks/frontier_diffusion_preference.py "
                f"--steps {runs[0]['budget']}`; raw: benchmarks/results/frontier_diffusion_preference.jsonl; {where(runs)}; "
                f"{runs[0]['budget']} RL steps (this config runs 300) from each seed's SFT warm start, K = "
                f"{runs[0]['num_mc']} masks, {seeds_phrase(r['seed'] for r in runs)}; held-out greedy exact match): "
                f"warm start {ms([r['warm_accuracy'] for r in runs])}% → {dict(seppo='SePPO', dragon='DRAGON')[arm]} "
                f"{ms([r['accuracy'] for r in runs])}%, BGPO at the same steps {ms([r['accuracy'] for r in base])}% "
                f"(paired differences {_paired(runs, base, lambda r: r['accuracy'])} points).")
        if name == "pgd":
            a = {r["arm"]: r for r in results("frontier_pgd")}
            ret = lambda arm: ms(a[arm]["final_return_by_seed"], 1.0, 1)
            return para(
                f"Expected result (benchmarks/frontier.md, from `python benchmarks/frontier_pgd.py`; raw: "
                f"benchmarks/results/frontier_pgd.jsonl; {where(list(a.values()))}; {a['guided']['num_seeds']} seeds in "
                f"one vmapped call; final return with sampled actions, mean ± std over seeds): IQL on real data alone "
                f"{ret('real_only')}; with unguided synthetic trajectories {ret('unguided')}; with guided ones (λ = "
                f"{a['guided']['guidance']}) {ret('guided')}. Guidance raises the target policy's mean log π on the "
                f"synthetic rows from {a['unguided']['synthetic_logp']:.2f} to {a['guided']['synthetic_logp']:.2f} "
                f"(real rows: {a['real_only']['real_logp']:.2f}), but synthetic data still lowers the return here.")
        if name == "ct2":
            a = by_arm(results("frontier_ct2"))
            grpo, mean, shipped, std = a["grpo"], a["grpo_mean"], a["grpo_mean_ct2"], a["grpo_ct2"]
            au = lambda rs, part="last": ms([r[part]["eval/detect_auroc_log_likelihood"] for r in rs], 1.0, 2)
            acc = lambda rs: ms([last_evals_mean(r, frontier_ct2.LAST_EVALS) for r in rs])
            return para(
                f"Expected result (benchmarks/frontier.md, from `python benchmarks/frontier_ct2.py`; raw: "
                f"benchmarks/results/frontier_ct2.jsonl; {where(grpo)}; {shipped[0]['budget']} GRPO steps from each "
                f"seed's SFT warm start, {seeds_phrase(r['seed'] for r in shipped)}; {frontier_ct2.EVAL_PROMPTS} "
                f"held-out prompts, accuracy the mean of each run's last {frontier_ct2.LAST_EVALS} evaluations, AUROC "
                f"of the log-likelihood detector on greedy answers against the demonstrations at the last one): warm "
                f"start {ms([r['warm']['eval/accuracy'] for r in grpo])}%, AUROC {au(grpo, 'warm')}; this config "
                f"{acc(shipped)}%, AUROC {au(shipped)}; the same without the penalty {acc(mean)}%, AUROC {au(mean)}; "
                f"chain_grpo.py (GRPO's std-normalised advantage) {acc(grpo)}%, AUROC {au(grpo)}; the penalty with "
                f"the std-normalised advantage {acc(std)}%, AUROC {au(std)}.")
        arm = name.removeprefix("volleyball_")
        (r,) = [x for x in results("frontier_volleyball") if x["arm"] == arm]
        return para(
            f"Expected result (benchmarks/frontier.md, from `python benchmarks/frontier_volleyball.py`; raw: "
            f"benchmarks/results/frontier_volleyball.jsonl; {where([r])}; {r['num_seeds']} seeds in one vmapped call, "
            f"{r['env_steps']:,} environment steps; mean ± std over seeds of the last 10 updates' win rates, 64 rallies "
            f"per opponent each): against the scripted team {ms(r['last10_win_rate_scripted_by_seed'])}% won, "
            f"{ms(r['last10_loss_rate_scripted_by_seed'])}% lost; against a random team "
            f"{ms(r['last10_win_rate_random_by_seed'])}% won.")

    return block


# ------------------------------------------------------------------------------ registry

BLOCKS: dict[str, Callable[[], str]] = {
    "readme.experiments": readme_experiments,
    "readme.algorithms": readme_algorithms,
    "readme.control": readme_control,
    "readme.speed": readme_speed,
    "readme.memory": readme_memory,
    "readme.staleness": readme_staleness,
    "chain.grpo": chain_block("grpo"),
    "chain.treepo": chain_block("treepo"),
    "chain.sft": chain_block("sft"),
    **{f"length.{a}": length_block(a) for a in ("grpo", "dr_grpo", "dapo", "sft")},
    **{f"preference.{a}": preference_block(a) for a in ("dpo_offline", "online_dpo", "reward_model", "rlhf_grpo",
                                                         "dno", "cdr_dpo", "light_r1", "dragon", "seppo",
                                                         "ra_dpo")},
    **{f"preference.{a}": programs_preference_block(a) for a in ("programs_grpo", "programs_gepo")},
    **{f"preference.{a}": chain_preference_block(a) for a in ("chain_dpo_revised", "chain_opa_dpo")},
    **{f"guided.{a}": guided_block(a) for a in ("prm", "mcts_dpo")},
    **{f"guided.{m}": guided_method_block(m) for m in ("spark", "spark_self_reward", "digi_q", "dialtree_rpo", "ghpo", "ghpo_labels",
                                                       "gkd", "nlpo", "ampo", "sophia", "tppo", "tppo_ppo",
                                                       "ded")},
    "guided.inspo": inspo_block,
    "guided.ded_teachers": ded_teachers_block,
    **{f"frontier.{n}": frontier_block(n) for n in ("bgpo", "diffusion_seppo", "diffusion_dragon", "pgd", "ct2",
                                                    "volleyball_mappo", "volleyball_ippo", "volleyball_selfplay")},
    "multiply.flow_grpo": multiply_block("tool"),
    "multiply.grpo": multiply_block("no_tool"),
    **{f"arithmetic.{n}": arithmetic_noun(n) for n in (
        "grpo", "sft", "ppo", "dpo", "dr_grpo", "dapo", "gspo", "cispo", "rloo", "reinforce_pp", "remax", "sapo",
        "chord", "opmd", "asymre", "rec", "mdpo", "lp_reg", "rover", "otr", "copg", "drpo", "rl_plus", "remix",
        "tppo")},
    **{f"catalogue.{n}": catalogue_noun(n) for n in (
        "clip_cov", "kl_cov", "gmpo", "gpg", "opo", "passk_grpo", "otb", "rover", "mdpo", "simpo", "orpo", "kto")},
    **{f"control.{n}": control_block(n) for n in (
        "cartpole_ppo", "cartpole_mdpo", "pendulum_ppo", "cartpole_props", "lock_hnpg", "cartpole_unio4",
        "mpe_spread_mappo", "mpe_spread_ippo", "bandit_relic")},
}


def documents() -> list[pathlib.Path]:
    """The files that may hold generated blocks."""
    return [ROOT / "README.md", *sorted(p for p in (ROOT / "experiments").glob("*.py") if p.name != "__init__.py")]


def render(text: str, path: pathlib.Path) -> str:
    """``text`` with every block regenerated (the block keeps its first line's indentation)."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        m = START.search(line)
        i += 1
        if not m:
            continue
        key = m.group(1)
        if key not in BLOCKS:
            raise KeyError(f"{path}: unknown report block {key!r}; known: {sorted(BLOCKS)}")
        j = i
        while j < len(lines) and END not in lines[j]:
            j += 1
        if j == len(lines):
            raise ValueError(f"{path}: report block {key!r} has no closing {END!r} line")
        indent = re.match(r"\s*", line).group(0)
        out += [indent + x if x else x for x in BLOCKS[key]().split("\n")]
        out.append(lines[j])
        i = j + 1
    return "\n".join(out)


def stale() -> list[str]:
    """The files whose generated blocks differ from what the raw results give."""
    return [str(p.relative_to(ROOT)) for p in documents() if render(p.read_text(), p) != p.read_text()]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when a block is stale")
    args = p.parse_args(argv)
    if args.check:
        bad = stale()
        if bad:
            raise SystemExit(f"stale generated blocks in {bad}; run python benchmarks/report.py")
        print("every generated block matches benchmarks/results/")
        return
    for path in documents():
        text = path.read_text()
        new = render(text, path)
        if new != text:
            path.write_text(new)
            print(f"rewrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

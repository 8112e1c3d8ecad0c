"""T-PPO against PPO on the long chain task: partial rollouts against complete ones, same steps.

For every seed both arms start from that seed's SFT warm start with a value head (the
``sft_warmup`` phase of ``experiments/chain_long_ppo.py``, trained once under ``--workdir`` and
copied into each run, as ``benchmarks/algorithms.py`` does) and run ``--steps`` steps with the same
16 prompts × 8 samples read per step, learning rate, loss and critic (a value head optimized apart
from the policy, ``critic_learning_rate``):

* ``tppo``  ``experiments/chain_long_tppo.py``: "Truncated Proximal Policy Optimization" (arXiv
            2506.15050) — each step draws at most 32 tokens of every running response (unfinished
            ones continue at the next step from their cache), trains the policy on those tokens with
            Extended GAE (λ = 1) and the sampler/trainer correction (TIS), and the value head on
            the responses that finished;
* ``ppo``   ``experiments/chain_long_ppo.py``: the same PPO on complete responses (every response
            drawn to its end in its step; GAE λ = 0.95), the paper's baseline.

The first form of this comparison let the value loss reach the policy's trunk (the default); its
runs are kept in ``benchmarks/results/guided_tppo_shared_critic.jsonl``, and T-PPO's runs with the
critic apart but without the correction in ``benchmarks/results/guided_tppo_no_correction.jsonl``
(``--results`` wrote both); ``render`` sets them beside these (``ablation_table``).

Each run is evaluated every ``--eval_every`` steps on the 500 held-out prompts (greedy exact match of
the final answer); its accuracy is the mean of its last ``LAST_EVALS`` evaluations. The records hold
per step the training accuracy and length of the responses that finished, the tokens drawn and
trained on, the finished responses, the value error and the step's wall time (``step_time_s``,
the trainer's measure of one collect + update, evaluations excluded). The paper's claim is PPO's
accuracy at a lower training time: the table gives both at the same number of steps, and the
training time of each arm (the sum of its step times). Timings are comparable only between runs
that had the machine to themselves. One JSON line per run is appended to ``--results``; runs
already there are not run again; a markdown table is printed (``render``).

Usage (from the repository root)::

  python benchmarks/guided_tppo.py --seeds 0 1 2 --steps 100 --eval_every 25
"""
from __future__ import annotations

import argparse
import importlib
import pathlib
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import algorithms as algorithms_bench, companion  # noqa: E402
from benchmarks.claims import last_evals_mean  # noqa: E402
from benchmarks.provenance import provenance  # noqa: E402
from benchmarks.stats import mean_std  # noqa: E402

ARMS = ("tppo", "ppo")
SHARED_CRITIC = "guided_tppo_shared_critic"  # the runs of the first form, value loss through the trunk
NO_CORRECTION = "guided_tppo_no_correction"  # T-PPO with the critic apart, without the sampler/trainer correction
LAST_EVALS = 3
SERIES = ("accuracy", "reward_mean", "response_length", "response_tokens", "update_tokens", "step_time_s",
          "value_error", "entropy", "partial/finished_rows", "offpolicy/context_staleness_mean")


def run_arm(arm: str, seed: int, steps: int, eval_every: int, base: pathlib.Path) -> dict:
    r = algorithms_bench.run_one(arm, seed, steps, base, overrides={}, family="chain_long", eval_every=eval_every)
    r = companion.summarised(r, SERIES)
    times = r["series"]["step_time_s"]
    rows = importlib.import_module(f"experiments.chain_long_{arm}").get_config().rollout.batch_size
    return {**r, "arm": arm, "budget": steps, "rows": rows, "train_seconds": sum(times),
            "median_step_s": statistics.median(times), **provenance()}


def finished_per_step(r: dict) -> float:
    """Responses finished per step: T-PPO logs them; a PPO step finishes all its ``rows``."""
    return r["means"].get("partial/finished_rows", r["rows"])


def render(records: list[dict]) -> str:
    """A markdown table: one row per run, the seed mean ± std of each arm, and the paired difference
    T-PPO − PPO."""
    pct = lambda x: f"{100 * x:.1f}%"
    rows = ["| arm | seed | steps | warm start | held-out accuracy | training accuracy (finished) | responses finished "
            "per step | tokens drawn per step | median step (s) | training time (s) |", "|" + "---|" * 10]
    for r in sorted(records, key=lambda r: (ARMS.index(r["arm"]), r["seed"])):
        rows.append(f"| {r['arm']} | {r['seed']} | {r['budget']} | {pct(r['warm_accuracy'])} | "
                    f"{pct(last_evals_mean(r, LAST_EVALS))} | {pct(r['means']['accuracy'])} | "
                    f"{finished_per_step(r):.1f} | {r['means']['response_tokens']:.0f} | {r['median_step_s']:.2f} | "
                    f"{r['train_seconds']:.0f} |")
    for arm in ARMS:
        runs = [r for r in records if r["arm"] == arm]
        if len(runs) > 1:
            col = lambda f, scale=100.0, digits=1: mean_std([f(r) for r in runs], scale, digits)
            rows.append(f"| {arm} (mean ± std) | {len(runs)} seeds | | {col(lambda r: r['warm_accuracy'])} | "
                        f"{col(lambda r: last_evals_mean(r, LAST_EVALS))} | {col(lambda r: r['means']['accuracy'])} | "
                        f"{col(finished_per_step, 1.0)} | {col(lambda r: r['means']['response_tokens'], 1.0, 0)} | "
                        f"{col(lambda r: r['median_step_s'], 1.0, 2)} | {col(lambda r: r['train_seconds'], 1.0, 0)} |")
    rows += companion.paired_sentence(records, "tppo", "ppo", "T-PPO", "PPO", lambda r: last_evals_mean(r, LAST_EVALS))
    shared, uncorrected = companion.records(SHARED_CRITIC), companion.records(NO_CORRECTION)
    if shared or uncorrected:
        rows += ["", f"Ablations of the recipe (a quarter = 25% of the steps): the first form of this comparison "
                     f"(`benchmarks/results/{SHARED_CRITIC}.jsonl`: the value loss through the policy's trunk, "
                     f"value head at the policy's optimizer and learning rate, T-PPO's GAE λ = 0.95, no correction) "
                     f"and T-PPO with the critic apart but no correction (`benchmarks/results/{NO_CORRECTION}.jsonl`), "
                     f"beside the runs above:", "",
                 ablation_table([("shared trunk", {}, shared), ("apart", {}, uncorrected),
                                 ("apart", {"tppo": "TIS"}, records)])]
    return "\n".join(rows)


def quarter(r: dict, series: str, last: bool = True) -> float:
    """The mean of a run's per-step ``series`` over its last (or first) quarter of steps."""
    values, n = r["series"][series], max(1, len(r["series"][series]) // 4)
    return statistics.fmean(values[-n:] if last else values[:n])


def ablation_table(variants: list[tuple[str, dict, list[dict]]]) -> str:
    """Seed means of each arm under each variant ``(critic, {arm: correction}, records)``: held-out
    accuracy, the token entropy over the first and the last quarter of the steps, and the training
    accuracy over the last."""
    rows = ["| arm | critic | correction | seeds | held-out accuracy | token entropy, first quarter | "
            "token entropy, last quarter | training accuracy, last quarter |", "|" + "---|" * 8]
    for arm in ARMS:
        for critic, correction, records in variants:
            runs = [r for r in records if r["arm"] == arm]
            if runs:
                col = lambda f, scale=100.0, digits=1: mean_std([f(r) for r in runs], scale, digits)
                rows.append(f"| {arm} | {critic} | {correction.get(arm, 'none')} | {len(runs)} | "
                            f"{col(lambda r: last_evals_mean(r, LAST_EVALS))}% | "
                            f"{col(lambda r: quarter(r, 'entropy', last=False), 1.0, 3)} | "
                            f"{col(lambda r: quarter(r, 'entropy'), 1.0, 3)} | {col(lambda r: quarter(r, 'accuracy'))}% |")
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=100, help="steps of every arm")
    p.add_argument("--eval_every", type=int, default=25)
    p.add_argument("--workdir", default="/tmp/polrl_bench_guided_tppo")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "guided_tppo.jsonl"))
    args = p.parse_args(argv)
    arms = companion.parse_arms(args.arms, ARMS)
    base = algorithms_bench.prepare(args.workdir)
    done = companion.run_missing(args.results, arms, args.seeds, args.steps,
                                 lambda arm, seed, _: run_arm(arm, seed, args.steps, args.eval_every, base),
                                 ("arm", "seed", "seconds", "accuracy", "train_seconds"))
    print(render([r for r in done if r["budget"] == args.steps]))


if __name__ == "__main__":
    main()

"""What forking saves: prefill of group sampling and decode of tree rollouts vs flat sampling.

    python benchmarks/fork_prefill.py [--repeats 5] [--prompts 16] [--group 8] [--prompt_len 128]
                                      [--new_tokens 64]

B prompts of P tokens, G = ``--group`` samples (leaves) each, N new tokens, on one model (vocab
512, d_model 256, 4 layers, 8 heads / 2 KV heads, MLP 688, random weights, EOS unreachable so
every path decodes exactly N tokens and the only difference between the programs is the work
they share). Each program is one jitted call, timed end to end:

* ``flat``: the prompts repeated G times, then one prefill of B·G rows (G prefills per prompt)
  and ``engine.generate`` of N tokens in B·G slots;
* ``group``: one prefill of B rows, ``engine.repeat`` ×G (``polrl.rollout.sample``), generate;
* ``tree l=…``: ``polrl.collectors.tree.tree_rollout`` with init_branches 2, branching 2 and
  segments of l tokens: one prefill per prompt, and until the tree is G wide each segment
  decodes only the W_d = 2·2^d paths per prompt that exist.

Prefill FLOPs are XLA's own count for the prefill program alone (``cost_analysis`` of the
compiled ``extend``; no loop, so it is exact for what runs), and its time is measured alone
too. Decode FLOPs are ``polrl.models.flops.transformer_forward_flops`` per decoded row (the
forwards a program runs: rows in its slot block × decode steps; attention over the prompt and
the tokens so far), since XLA counts a while loop's body once. ``sampled_tokens`` counts the
tokens each program draws (shared prefixes once). Times: median over ``--repeats`` rounds of
the programs run alternately. Raw results: one JSON line per program appended to
``benchmarks/results/fork_prefill.jsonl``; the last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from polrl.models.flops import transformer_forward_flops  # noqa: E402
from benchmarks.provenance import provenance  # noqa: E402
from benchmarks.timing import decode_model_config, seconds  # noqa: E402
from polrl.collectors.tree import tree_rollout  # noqa: E402
from polrl.models import Transformer  # noqa: E402
from polrl.rollout import SamplingConfig, engine  # noqa: E402


def programs(args):
    config = decode_model_config(args.prompt_len + args.new_tokens)
    graphdef, params = nnx.split(Transformer(config, rngs=nnx.Rngs(0)), nnx.Param)
    sampling = SamplingConfig(max_new_tokens=args.new_tokens, eos_id=config.vocab_size)
    b, p, g, n = args.prompts, args.prompt_len, args.group, args.new_tokens
    prompt_bp = jax.random.randint(jax.random.key(1), (b, p), 3, config.vocab_size)
    valid_bp = jnp.ones((b, p), bool)

    def prefill(params, rows):
        model = nnx.merge(graphdef, params)
        tokens, valid = (prompt_bp, valid_bp) if rows == b else (jnp.repeat(prompt_bp, g, 0), jnp.repeat(valid_bp, g, 0))
        return engine.extend(model, engine.init_slots(model, rows, p + n), tokens, valid)

    def flat(params, rng):
        slots = prefill(params, b * g)
        out, _ = engine.generate(nnx.merge(graphdef, params), slots, rng, sampling, commit_last=False)
        return out.length_s.sum(), b * g * n

    def group(params, rng):
        slots = engine.repeat(prefill(params, b), g)
        out, _ = engine.generate(nnx.merge(graphdef, params), slots, rng, sampling, commit_last=False)
        return out.length_s.sum(), b * g * n

    def tree(segment_len):
        def run(params, rng):
            out = tree_rollout(nnx.merge(graphdef, params), prompt_bp, valid_bp, rng, sampling, leaves=g,
                               segment_len=segment_len, init_branches=2, branching=2)
            return out.sampled, out.row_steps
        return run

    runs = {"flat": (jax.jit(flat), b * g), "group": (jax.jit(group), b)}
    for l in args.segments:
        runs[f"tree l={l}"] = (jax.jit(tree(l)), b)
    prefills = {rows: jax.jit(lambda params, rows=rows: prefill(params, rows)) for rows in (b, b * g)}
    return config, params, runs, prefills


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--prompt_len", type=int, default=128)
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--segments", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "fork_prefill.jsonl"))
    args = parser.parse_args()
    config, params, runs, prefills = programs(args)
    p, n = args.prompt_len, args.new_tokens
    prefill_flops = {rows: fn.lower(params).compile().cost_analysis()["flops"] for rows, fn in prefills.items()}
    counts = {}
    for name, (fn, _) in runs.items():  # compile, and read what each program decodes
        sampled, rows = jax.device_get(fn(params, jax.random.key(0)))
        counts[name] = (int(sampled), int(rows))
    for fn in prefills.values():
        jax.block_until_ready(fn(params))
    times = {name: [] for name in runs} | {f"prefill x{rows}": [] for rows in prefills}
    for i in range(args.repeats):
        key = jax.random.key(10 + i)
        for name, (fn, _) in runs.items():
            times[name].append(seconds(fn, params, key))
        for rows, fn in prefills.items():
            times[f"prefill x{rows}"].append(seconds(fn, params))
        print(f"round {i}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items()), flush=True)
    # Decode: row r at step t attends to the prompt and t earlier tokens; a program's rows are
    # uniform over steps, so the mean context is P + (N − 1)/2.
    per_row = transformer_forward_flops(config, 1, p + (n - 1) / 2)
    records = []
    for name, (_, prefill_rows) in runs.items():
        sampled, rows = counts[name]
        records.append({
            "program": name, "prompts": args.prompts, "group": args.group, "prompt_len": p, "new_tokens": n,
            "prefill_rows": prefill_rows, "prefill_flops": prefill_flops[prefill_rows],
            "prefill_s": statistics.median(times[f"prefill x{prefill_rows}"]),
            "sampled_tokens": sampled, "decode_rows": rows, "decode_flops": rows * per_row,
            "rollout_s": statistics.median(times[name]), "repeats": args.repeats, "devices": jax.device_count(),
            **provenance(),
        })
    path = pathlib.Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    flat = records[0]
    summary = {r["program"]: {"prefill_flops_vs_flat": r["prefill_flops"] / flat["prefill_flops"],
                              "decode_flops_vs_flat": r["decode_flops"] / flat["decode_flops"],
                              "rollout_time_vs_flat": r["rollout_s"] / flat["rollout_s"]} for r in records}
    print(json.dumps({"config": {k: getattr(args, k) for k in ("prompts", "group", "prompt_len", "new_tokens")},
                      "prefill_s_group": records[1]["prefill_s"], "prefill_s_flat": flat["prefill_s"], **summary}))


if __name__ == "__main__":
    main()

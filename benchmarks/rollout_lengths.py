"""Continuous batching against the static decode loop on a long-tailed length distribution.

    python benchmarks/rollout_lengths.py [--repeats 5] [--requests 256] [--slots 64]

R requests (prompts × G = 4 samples, prompt 16 tokens) with geometric lengths (mean 32, capped
at 256, drawn once from a fixed seed) are decoded by the same model (vocab 512, d_model 256,
4 layers, 8 heads / 2 KV heads, MLP 688, random weights, EOS unreachable so every request draws
exactly its length) in two ways, each one jitted program timed end to end (prefill included):

* ``static``: today's loop — batches of ``--slots`` rows (``--slots`` / 4 prompts each,
  prefilled once and forked ×4), each ``engine.generate`` with per-row budgets, run until its
  longest row is done; the batches run one after the other;
* ``continuous``: ``engine.serve`` over ``--slots`` slots, every prompt prefilled once into a
  bank, a finished slot refilled with the next request inside the compiled loop.

Both decode the same R requests with the same number of rows per decode step, so the only
difference is how long rows wait for the longest row of their batch. Useful tokens are the
generated ones (the sum of the lengths, the same for both). The two are timed alternately; each
time is the median over ``--repeats`` rounds and ``speedup_vs_static`` the median of the
per-round ratios. The last line printed is one JSON object, also appended (with every round's
times, the CPU and the commit) to ``--results`` (default
``benchmarks/results/rollout_lengths.jsonl``).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "rollout_lengths.jsonl"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks import provenance  # noqa: E402
from benchmarks.timing import decode_model_config, seconds  # noqa: E402
from polrl.models import Transformer  # noqa: E402
from polrl.rollout import SamplingConfig, engine  # noqa: E402

PROMPT, GROUP, CAP, MEAN = 16, 4, 256, 32
CONFIG = decode_model_config(PROMPT + CAP)


def lengths(requests: int, seed: int = 0) -> np.ndarray:
    """Geometric lengths with mean ``MEAN`` (success probability 1/MEAN), capped at ``CAP``."""
    return np.minimum(np.random.default_rng(seed).geometric(1.0 / MEAN, requests), CAP).astype(np.int32)


def programs(requests: int, slots: int):
    graphdef, params = nnx.split(Transformer(CONFIG, rngs=nnx.Rngs(0)), nnx.Param)
    sampling = SamplingConfig(max_new_tokens=CAP, eos_id=CONFIG.vocab_size)
    prompts = requests // GROUP
    prompt_bp = jax.random.randint(jax.random.key(1), (prompts, PROMPT), 3, CONFIG.vocab_size)
    valid_bp = jnp.ones((prompts, PROMPT), bool)
    budget_r = jnp.asarray(lengths(requests))

    def prefill(model, tokens, valid):
        return engine.extend(model, engine.init_slots(model, tokens.shape[0], PROMPT + CAP), tokens, valid)

    @jax.jit
    def static(params, rng):
        model = nnx.merge(graphdef, params)
        per = slots // GROUP
        outs = []
        for start in range(0, prompts, per):
            batch = engine.repeat(prefill(model, prompt_bp[start:start + per], valid_bp[start:start + per]), GROUP)
            budget = budget_r[start * GROUP:(start + per) * GROUP]
            out, _ = engine.generate(model, batch, jax.random.fold_in(rng, start), sampling, max_new_s=budget,
                                     commit_last=False)
            outs.append(out.length_s)
        return jnp.concatenate(outs)

    @jax.jit
    def continuous(params, rng):
        model = nnx.merge(graphdef, params)
        bank = engine.extend(model, engine.init_slots(model, prompts, PROMPT), prompt_bp, valid_bp)
        out = engine.serve(model, bank, jnp.arange(requests) // GROUP, rng, sampling, num_slots=slots,
                           max_new_r=budget_r)
        return out.length_s

    return params, static, continuous, int(budget_r.sum())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--results", default=str(RESULTS), help="raw results file (one JSON line per run)")
    args = parser.parse_args()
    if args.requests % args.slots or args.slots % GROUP:
        raise SystemExit(f"--requests must be a multiple of --slots, and --slots of {GROUP}")
    params, static, continuous, useful = programs(args.requests, args.slots)
    key = jax.random.key(2)
    for fn in (static, continuous):  # compile, and check both decode exactly the budgets
        got = np.asarray(fn(params, key))
        assert got.sum() == useful, (got.sum(), useful)
    t_static, t_cont, ratios = [], [], []
    for i in range(args.repeats):
        key = jax.random.key(10 + i)
        a, b = seconds(static, params, key), seconds(continuous, params, key)
        t_static.append(a)
        t_cont.append(b)
        ratios.append(a / b)
        print(f"round {i}: static {a:.3f} s, continuous {b:.3f} s, ratio {a / b:.2f}", flush=True)
    result = {
        "requests": args.requests, "slots": args.slots, "useful_tokens": useful,
        "mean_length": useful / args.requests, "max_length": int(lengths(args.requests).max()),
        "devices": jax.device_count(), "repeats": args.repeats,
        "static_tokens_per_s": useful / statistics.median(t_static),
        "continuous_tokens_per_s": useful / statistics.median(t_cont),
        "speedup_vs_static": statistics.median(ratios),
        "static_s": t_static, "continuous_s": t_cont, **provenance.provenance(),
    }
    provenance.append(args.results, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

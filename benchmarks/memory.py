"""Peak memory of one GRPO update on the Qwen2-0.5B shape, under the scoring forward's memory options.

    python benchmarks/memory.py [--batch 16 --group 4 --prompt_len 128 --response_len 512] [--rss]

The step is ``steps.train_on_batch`` (reference forward, π_θ forward + backward, AdamW; the state
donated) of GRPO with a KL penalty, on the Qwen2-0.5B shape (hidden 896, 24 layers, 14 heads / 2 KV
heads, MLP 4864, vocab 151936, tied embeddings, q/k/v biases; float32 weights and compute), one
device. The batch: ``--batch`` rows in groups of ``--group``, full prompts, responses whose trained
lengths are drawn uniformly from [response_len / 8, response_len] (seeded), so part of every row is
padding, as in a real rollout. Settings (``SETTINGS``):

    plain         the whole minibatch at once, full [B, T, V] logits
    chunked       ``logits_chunk_size`` 128: the LM head 128 positions at a time
    micro 4       + ``micro_batches`` 4: four rematerialised micro-batches of whole groups
    packed        chunked + ``pack_length`` = prompt + response, ``pack_rows`` = the rows next-fit
                  packing of this batch needs (``polrl.train.packing``)
    micro 4 packed

For each, XLA's buffer assignment of the compiled step (``compiled.memory_analysis()``, no array
is allocated): ``peak_bytes`` = arguments + outputs − donated aliases + temporaries, the device
memory the step needs on any backend (on a CPU, host memory). ``--rss`` also runs one step of each
setting in a fresh process and records its peak resident set size (``ru_maxrss``; it includes the
Python process, the compiled code and the inputs; minutes per setting on a CPU).

One JSON line per setting is appended to ``--results`` (default benchmarks/results/memory.jsonl);
a markdown table is printed, then one JSON object (the last line).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import resource
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = {
    "plain": dict(logits_chunk_size=0, micro_batches=1, pack=False),
    "chunked": dict(logits_chunk_size=128, micro_batches=1, pack=False),
    "micro 4": dict(logits_chunk_size=128, micro_batches=4, pack=False),
    "packed": dict(logits_chunk_size=128, micro_batches=1, pack=True),
    "micro 4 packed": dict(logits_chunk_size=128, micro_batches=4, pack=True),
}
QWEN2_05B = dict(vocab_size=151936, d_model=896, num_layers=24, num_heads=14, num_kv_heads=2, mlp_dim=4864,
                 qkv_bias=True, tie_embeddings=True, rope_theta=1e6)


def build(args, setting: str):
    """(step, abstract state, batch, config) of one setting."""
    import functools

    import jax
    import numpy as np
    from flax import nnx

    from polrl import algorithms
    from polrl.core import Batch
    from polrl.models import Transformer, TransformerConfig
    from polrl.train import packing, steps

    b, g, p, t = args.batch, args.group, args.prompt_len, args.response_len
    rng = np.random.default_rng(0)
    lengths = rng.integers(t // 8, t + 1, b)
    batch = Batch(
        prompt_bp=np.repeat(rng.integers(1, QWEN2_05B["vocab_size"], (b // g, p)), g, 0).astype(np.int32),
        prompt_valid_bp=np.ones((b, p), bool),
        response_bt=rng.integers(1, QWEN2_05B["vocab_size"], (b, t)).astype(np.int32),
        mask_bt=(np.arange(t)[None] < lengths[:, None]).astype(np.float32),
        reward_b=rng.normal(size=b).astype(np.float32), group_b=np.arange(b, dtype=np.int32) // g, group_size=g)
    options = dict(SETTINGS[setting])
    pack_rows = 0
    if options.pop("pack"):
        micro = options["micro_batches"]  # micro-batch i scores groups i, i + micro, …: pack for the fullest
        groups = np.arange(b).reshape(b // g, g)
        need = 0
        for i in range(micro):
            real = jax.numpy.asarray(p + lengths[groups[i::micro].ravel()])
            need = max(need, int(packing.next_fit(real, p + t, len(real))[0][-1]) + 1)
        pack_rows = need
    config = TransformerConfig(**QWEN2_05B, max_len=p + t, pack_length=(p + t) if pack_rows else 0,
                               pack_rows=pack_rows, **options)
    graphdef, params = nnx.split(nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0))), nnx.Param)
    algo = algorithms.grpo(learning_rate=1e-6, kl_coef=0.04)
    state = jax.eval_shape(lambda prm, key: steps.init_state(prm, algo, key, ref_params=prm), params,
                           jax.random.key(1))
    step = jax.jit(functools.partial(steps.train_on_batch, algorithm=algo, graphdef=graphdef), donate_argnums=0)
    return step, state, batch, config


def analyse(args, setting: str) -> dict:
    import jax

    step, state, batch, config = build(args, setting)
    stats = step.lower(state, batch).compile().memory_analysis()
    peak = (stats.argument_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes
            + stats.temp_size_in_bytes)
    params = sum(x.size for x in jax.tree.leaves(state.params))
    return {"setting": setting, "device": jax.devices()[0].device_kind, "params": params,
            "batch": args.batch, "group": args.group, "prompt_len": args.prompt_len,
            "response_len": args.response_len, "logits_chunk_size": config.logits_chunk_size,
            "micro_batches": config.micro_batches, "pack_rows": config.pack_rows,
            "pack_length": config.pack_length, "peak_bytes": peak,
            "argument_bytes": stats.argument_size_in_bytes, "output_bytes": stats.output_size_in_bytes,
            "alias_bytes": stats.alias_size_in_bytes, "temp_bytes": stats.temp_size_in_bytes}


def run_one_step(args, setting: str) -> int:
    """Peak RSS (bytes) of a process that builds the state and runs one step of ``setting``."""
    import jax
    import jax.numpy as jnp

    step, shapes, batch, _ = build(args, setting)
    state = jax.jit(lambda: jax.tree.map(lambda s: jnp.full(s.shape, 0.01, s.dtype)
                                         if jnp.issubdtype(s.dtype, jnp.floating) else jnp.zeros(s.shape, s.dtype),
                                         shapes))()
    state = state.replace(rng=jax.random.key(1))
    _, metrics = step(state, batch)
    jax.block_until_ready(metrics["loss"])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def provenance_fields() -> dict:
    from benchmarks.provenance import provenance
    return provenance()


def render(records: list[dict]) -> str:
    gib = lambda x: f"{x / 2**30:.2f}"
    rows = ["| setting | logits chunk | micro-batches | packed rows | peak (XLA) GiB | temporaries GiB | peak RSS GiB |",
            "|---|---|---|---|---|---|---|"]
    for r in records:
        rows.append(f"| {r['setting']} | {r['logits_chunk_size'] or '–'} | {r['micro_batches']} | "
                    f"{r['pack_rows'] or '–'} | {gib(r['peak_bytes'])} | {gib(r['temp_bytes'])} | "
                    f"{gib(r['rss_bytes']) if r.get('rss_bytes') else '–'} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--prompt_len", type=int, default=128)
    parser.add_argument("--response_len", type=int, default=512)
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names of SETTINGS")
    parser.add_argument("--rss", action="store_true", help="also run one step per setting (fresh process)")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "memory.jsonl"))
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch % (args.group * 4):
        parser.error(f"--batch={args.batch} must hold a multiple of 4 groups of --group={args.group} (micro 4)")
    if args.child:
        print(json.dumps({"rss_bytes": run_one_step(args, args.child)}))
        return
    records = []
    for setting in args.settings.split(","):
        if setting not in SETTINGS:
            parser.error(f"--settings: unknown {setting!r}; choose from {list(SETTINGS)}")
        record = analyse(args, setting)
        if args.rss:
            cmd = [sys.executable, __file__, "--child", setting, "--batch", str(args.batch), "--group",
                   str(args.group), "--prompt_len", str(args.prompt_len), "--response_len", str(args.response_len)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout
            record.update(json.loads(out.strip().splitlines()[-1]))
        record.update(provenance_fields())
        records.append(record)
        with open(args.results, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
    print(render(records))
    base = {r["setting"]: r["peak_bytes"] for r in records}
    print(json.dumps({"peak_gib": {k: round(v / 2**30, 3) for k, v in base.items()}}))


if __name__ == "__main__":
    main()

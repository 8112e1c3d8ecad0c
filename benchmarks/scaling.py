"""Scaling: update-step throughput and MFU of a ~100M-parameter model; decode throughput against
the memory-bandwidth roofline.

    python benchmarks/scaling.py [--mesh 1,-1,1] [--batch 32 --prompt_len 256 --response_len 256]
    python benchmarks/scaling.py --decode [--batch 256 --prompt_len 128 --new_tokens 256]

Update mode (default): one GRPO iteration without the rollout (``steps.train_on_batch``: reference
forward, policy forward + backward, AdamW; state donated) on ``--batch`` rows (default 32, 2 on
CPU) of prompt + response (default 256 + 256 = seq 512), groups of ``--group``. Model: d 768, 12 layers, 12 heads, SwiGLU
2048, vocab 32k (≈ 110M parameters), random weights, ``--dtype`` compute (float32 master weights).
``--mesh data,fsdp,tensor`` (-1 fills) shards it with ``polrl.sharding`` over all devices.

    step_s         best wall time of ``--steps`` iterations (after one warm-up iteration)
    tokens_per_s   batch · (prompt + response) / step_s (all devices together)
    xla_flops      FLOPs of the compiled step per device (``lower().compile().cost_analysis()``;
                   XLA counts a loop body once: the update's epoch × minibatch scans run once here)
    mfu            xla_flops / step_s / peak, peak per device from ``PEAKS`` (bf16 or TF32 dense,
                   vendor figures) or, on CPU or an unknown device, a measured matmul probe

Decode mode: ``polrl.rollout.sample`` on the Qwen2-0.5B shape (hidden 896, 24 layers, 14 heads /
2 KV heads, MLP 4864, vocab 151936, tied embeddings, q/k/v biases; random bfloat16 weights) at
batch 256, prompt 128, 256 new tokens (EOS disabled). Smaller shapes via flags for CPU.

    decode_tokens_per_s   batch · (new_tokens − 1) / (t(new_tokens) − t(1)): the decode loop
                          alone (prefill and first token subtracted)
    roofline_tokens_per_s batch / (bytes per decode step / bandwidth), bytes = every weight once
                          (the tied LM head reads the whole embedding) + the K and V of the
                          valid context (prompt + new/2 on average); bandwidth per device from
                          ``BANDWIDTH`` or, on CPU, a measured streaming-read probe
    roofline_full_cache   the same with the whole static cache buffer (prompt + new slots),
                          which is what polrl's fixed-shape attention reads every step

The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks.flops import matmul_peak_flops  # noqa: E402
from polrl.models.flops import transformer_forward_flops  # noqa: E402
from polrl import algorithms, sharding  # noqa: E402
from polrl.core import Batch  # noqa: E402
from polrl.models import Transformer, TransformerConfig  # noqa: E402
from polrl.rollout import SamplingConfig, make_sampler  # noqa: E402
from polrl.train import steps  # noqa: E402

# Dense peak FLOP/s per device (vendor figures, no sparsity): bfloat16, and float32 matmuls as the
# device runs them by default (TF32 tensor cores on NVIDIA, bf16 passes on TPU).
PEAKS = (  # (device_kind substring, {dtype: FLOP/s}); the first match wins
    ("H100 PCIe", {"bfloat16": 756e12, "float32": 378e12}),
    ("H100", {"bfloat16": 989e12, "float32": 494e12}),
    ("H200", {"bfloat16": 989e12, "float32": 494e12}),
    ("TPU v4", {"bfloat16": 275e12, "float32": 275e12}),
    ("TPU v5 lite", {"bfloat16": 197e12, "float32": 197e12}),
    ("TPU v5", {"bfloat16": 459e12, "float32": 459e12}),
    ("TPU v6 lite", {"bfloat16": 918e12, "float32": 918e12}),
)
# HBM bandwidth per device, bytes/s.
BANDWIDTH = (
    ("H100 PCIe", 2.0e12), ("H100", 3.35e12), ("H200", 4.8e12), ("TPU v4", 1.2e12),
    ("TPU v5 lite", 0.819e12), ("TPU v5", 2.765e12), ("TPU v6 lite", 1.64e12),
)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _lookup(table, kind):
    return next((v for k, v in table if k in kind), None)


def peak_flops(dtype: str) -> tuple[float, str]:
    """Per-device peak and where it comes from (the table, or a matmul probe on this device)."""
    kind = jax.devices()[0].device_kind
    entry = _lookup(PEAKS, kind)
    if entry is not None:
        return entry[dtype], f"table ({kind})"
    return matmul_peak_flops(DTYPES[dtype]), f"measured matmul ({kind})"


def memory_bandwidth(mib: int = 512, repeats: int = 5) -> tuple[float, str]:
    """Per-device bytes/s: the table, or the best of ``repeats`` jitted sums over ``mib`` MiB."""
    kind = jax.devices()[0].device_kind
    entry = _lookup(BANDWIDTH, kind)
    if entry is not None:
        return entry, f"table ({kind})"
    x = jnp.ones((mib * 2**20 // 4,), jnp.float32)
    total = jax.jit(jnp.sum)
    total(x).block_until_ready()
    best = min(_seconds(lambda: total(x).block_until_ready()) for _ in range(repeats))
    return x.nbytes / best, f"measured streaming read ({kind})"


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def random_params(config: TransformerConfig, seed: int = 0):
    """(graphdef, params) with N(0, 0.02²) weights and unit norm scales, drawn in one jitted call."""
    abstract = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
    graphdef, shapes = nnx.split(abstract, nnx.Param)
    leaves, treedef = jax.tree.flatten(shapes)
    names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]]

    @jax.jit
    def draw(key):
        keys = jax.random.split(key, len(leaves))
        out = [jnp.ones(x.shape, x.dtype) if "scale" in n else
               (0.02 * jax.random.normal(k, x.shape, jnp.float32)).astype(x.dtype)
               for n, x, k in zip(names, leaves, keys)]
        return jax.tree.unflatten(treedef, out)

    return graphdef, draw(jax.random.key(seed))


def _param_count(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))


def _best_time(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls after a warm-up call (compilation): on a shared machine
    the least disturbed run is the best estimate of what the code costs."""
    fn()
    return min(_seconds(fn) for _ in range(repeats))


# ----------------------------------------------------------------------------- update


def update_benchmark(args) -> dict:
    cfg = TransformerConfig(vocab_size=args.vocab, d_model=args.d_model, num_layers=args.num_layers,
                            num_heads=args.num_heads, num_kv_heads=args.num_kv_heads, mlp_dim=args.mlp_dim,
                            max_len=args.prompt_len + args.response_len, dtype=DTYPES[args.dtype])
    graphdef, params = random_params(cfg)
    algo = algorithms.grpo(learning_rate=1e-5, kl_coef=0.04)
    b, p, t, g = args.batch, args.prompt_len, args.response_len, args.group
    rng = np.random.default_rng(0)
    batch = Batch(
        prompt_bp=np.repeat(rng.integers(1, args.vocab, (b // g, p)), g, 0).astype(np.int32),
        prompt_valid_bp=np.ones((b, p), bool),
        response_bt=rng.integers(1, args.vocab, (b, t)).astype(np.int32),
        mask_bt=np.ones((b, t), np.float32),
        reward_b=rng.normal(size=b).astype(np.float32),
        group_b=np.arange(b, dtype=np.int32) // g,
        behavior_logp_bt=np.zeros((b, t), np.float32),
        group_size=g,
    )
    train = functools.partial(steps.train_on_batch, algorithm=algo, graphdef=graphdef)
    state = jax.jit(lambda prm, key: steps.init_state(prm, algo, key, ref_params=prm))(params, jax.random.key(1))
    layout = None
    if args.mesh:
        layout = sharding.Layout(sharding.make_mesh(*(int(x) for x in args.mesh.split(","))))
        state = layout.put(state, layout.state_shardings(state))
        step = layout.jit(train, ("state", "batch"), ("state", "replicated"), donate_argnums=(0,))
    else:
        step = jax.jit(train, donate_argnums=0)
    cost = step.lower(state, batch).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost["flops"])

    holder = [state]

    def one():
        holder[0], metrics = step(holder[0], batch)
        jax.block_until_ready(metrics["loss"])

    step_s = _best_time(one, args.steps)
    peak, peak_source = peak_flops(args.dtype)
    seq = p + t
    analytic = 4 * transformer_forward_flops(cfg, b * seq, seq / 2)  # reference fwd + policy fwd/bwd
    return {
        "benchmark": "scaling/update", "device": jax.devices()[0].device_kind, "devices": jax.device_count(),
        "mesh": dict(layout.mesh.shape) if layout else None, "params": _param_count(params),
        "dtype": args.dtype, "batch": b, "group": g, "prompt_len": p, "response_len": t,
        "step_s": step_s, "tokens_per_s": b * seq / step_s,
        "xla_flops_per_device": xla_flops, "analytic_flops": analytic,
        "peak_flops_per_device": peak, "peak_source": peak_source,
        "mfu": xla_flops / step_s / peak,
        "mfu_analytic": analytic / jax.device_count() / step_s / peak,
    }


# ----------------------------------------------------------------------------- decode


def decode_benchmark(args) -> dict:
    b, p, n = args.batch, args.prompt_len, args.new_tokens
    cfg = TransformerConfig(vocab_size=args.vocab, d_model=args.d_model, num_layers=args.num_layers,
                            num_heads=args.num_heads, num_kv_heads=args.num_kv_heads, mlp_dim=args.mlp_dim,
                            qkv_bias=True, tie_embeddings=True, rope_theta=1e6, max_len=p + n,
                            dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    graphdef, params = random_params(cfg)
    prompt = jnp.asarray(np.random.default_rng(0).integers(1, args.vocab, (b, p)), jnp.int32)
    valid = jnp.ones((b, p), bool)

    def timed(new_tokens):
        sampler = make_sampler(graphdef, SamplingConfig(max_new_tokens=new_tokens, eos_id=args.vocab))
        return _best_time(lambda: sampler(params, prompt, valid, jax.random.key(0)).response_bt.block_until_ready(),
                            args.steps)

    full, first = timed(n), timed(1)
    decode_s = full - first
    bandwidth, bw_source = memory_bandwidth()
    weight_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
    kv_per_slot = 2 * cfg.num_layers * b * cfg.num_kv_heads * cfg.head_dim * jnp.dtype(jnp.bfloat16).itemsize
    step_bytes = weight_bytes + kv_per_slot * (p + n / 2)
    full_bytes = weight_bytes + kv_per_slot * (p + n)
    return {
        "benchmark": "scaling/decode", "device": jax.devices()[0].device_kind, "params": _param_count(params),
        "batch": b, "prompt_len": p, "new_tokens": n, "layers": cfg.num_layers, "d_model": cfg.d_model,
        "vocab": cfg.vocab_size, "sample_s": full, "prefill_and_first_token_s": first,
        "decode_tokens_per_s": b * (n - 1) / decode_s,
        "bandwidth_bytes_per_s": bandwidth, "bandwidth_source": bw_source,
        "bytes_per_decode_step": step_bytes,
        "roofline_tokens_per_s": b * bandwidth / step_bytes,
        "roofline_full_cache_tokens_per_s": b * bandwidth / full_bytes,
        "fraction_of_roofline": (b * (n - 1) / decode_s) / (b * bandwidth / step_bytes),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decode", action="store_true", help="decode throughput instead of the update step")
    parser.add_argument("--steps", type=int, default=3, help="timed repetitions (after one warm-up)")
    parser.add_argument("--mesh", default="", help="update mode: data,fsdp,tensor (e.g. 1,-1,1); '' = one device")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="update mode compute dtype")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--group", type=int, default=2)
    parser.add_argument("--prompt_len", type=int)
    parser.add_argument("--response_len", type=int, default=256)
    parser.add_argument("--new_tokens", type=int, default=256)
    parser.add_argument("--vocab", type=int)
    parser.add_argument("--d_model", type=int)
    parser.add_argument("--num_layers", type=int)
    parser.add_argument("--num_heads", type=int)
    parser.add_argument("--num_kv_heads", type=int)
    parser.add_argument("--mlp_dim", type=int)
    args = parser.parse_args()
    # Defaults: the ~110M update model, or the Qwen2-0.5B decode shape.
    defaults = (dict(batch=256, prompt_len=128, vocab=151936, d_model=896, num_layers=24, num_heads=14,
                     num_kv_heads=2, mlp_dim=4864) if args.decode else
                dict(batch=2 if jax.default_backend() == "cpu" else 32, prompt_len=256, vocab=32000, d_model=768,
                     num_layers=12, num_heads=12, num_kv_heads=12, mlp_dim=2048))
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not args.decode and args.batch % args.group:
        parser.error(f"--batch={args.batch} must be a multiple of --group={args.group}")
    result = decode_benchmark(args) if args.decode else update_benchmark(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

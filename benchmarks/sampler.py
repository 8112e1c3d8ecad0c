"""Sampler throughput on a fixed small Llama shape, optionally against HF ``generate``.

    python benchmarks/sampler.py [--vs hf] [--ceiling] [--repeats 15]

The batch is sharded over all local devices (data parallel). On a CPU the script gives XLA one
host device per core, as the launcher does (``polrl.devices.use_every_core``; set
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` to choose N); HF's torch uses its default
threads.

Shape: vocab 512, d_model 256, 4 layers, 8 heads / 2 KV heads, MLP 688, batch 32, prompt
16, 64 new tokens, temperature 1, random weights. EOS is disabled by ``eos_id = vocab``
(never sampled), so every row generates exactly 64 tokens. Each side is warmed up
(compiled) first. With ``--vs hf`` the two are timed alternately (polrl, HF, polrl, HF, …),
so a slow spell of a shared machine hits both; each time is the median of ``--repeats``
runs and ``speedup_vs_hf`` is the median of the per-round ratios. The last line printed
is one JSON object, also appended (with every round's times, the CPU and the commit) to
``--results`` (default ``benchmarks/results/sampler.jsonl``).

``--ceiling`` also times, in the same rounds, a jitted program that performs only the
sampler's dense matmuls — the same weights, the prefill's projections over B·P rows, then
N − 1 decode steps of q/k/v/o, gate/up/down per layer and the LM head on B rows — chained
by a few elementwise adds so that each step depends on the previous one as decoding does.
No attention, norms, RoPE, cache writes or sampling; rows split over the devices as the
sampler's are. Its tokens/s (``ceiling_tokens_per_s``, and ``ceiling_speedup_vs_hf`` with
``--vs hf``) bounds what any sampler built on XLA's CPU dot kernels at these shapes can
reach here.

    tokens_per_s       = batch · new_tokens / median time
    model_flops_per_s  = (prefill + decode FLOPs, benchmarks.flops estimate) / median time
    flop_utilization   = model_flops_per_s / matmul_peak_flops_per_s
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "sampler.jsonl"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

from benchmarks import provenance  # noqa: E402
from benchmarks.timing import decode_model_config, seconds  # noqa: E402
from benchmarks.flops import matmul_peak_flops  # noqa: E402
from polrl.models.flops import transformer_forward_flops  # noqa: E402
from polrl.devices import use_every_core  # noqa: E402
from polrl.models import Transformer  # noqa: E402
from polrl.rollout import SamplingConfig, make_sampler  # noqa: E402

BATCH, PROMPT, NEW = 32, 16, 64
CONFIG = decode_model_config(PROMPT + NEW)


def data_parallel():
    """(replicated, rows): shardings over all local devices, rows split along the batch."""
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    return NamedSharding(mesh, P()), NamedSharding(mesh, P("batch"))


def polrl_runner(repeats: int):
    """A compiled, warmed-up polrl sampling call, the batch sharded over all local devices."""
    graphdef, params = nnx.split(Transformer(CONFIG, rngs=nnx.Rngs(0)), nnx.Param)
    sampler = make_sampler(graphdef, SamplingConfig(max_new_tokens=NEW, eos_id=CONFIG.vocab_size,
                                                    temperature=1.0))
    replicated, rows = data_parallel()
    params = jax.device_put(params, replicated)
    prompt = jax.device_put(
        jax.random.randint(jax.random.key(1), (BATCH, PROMPT), 0, CONFIG.vocab_size), rows)
    valid = jax.device_put(jnp.ones((BATCH, PROMPT), bool), rows)
    keys = iter(jax.random.split(jax.random.key(2), repeats + 1))

    def run():
        out = jax.block_until_ready(sampler(params, prompt, valid, next(keys)))
        assert int(out.length_b.min()) == NEW, out.length_b

    run()
    return run


def ceiling_runner():
    """The sampler's dense matmuls alone (see the module docstring), compiled and warmed up."""
    model = Transformer(CONFIG, rngs=nnx.Rngs(0))  # the weights polrl_runner samples with
    d = CONFIG.d_model
    weights = [tuple(w[...].reshape(d, -1) for w in (lay.attn.wq, lay.attn.wk, lay.attn.wv))
               + (lay.attn.wo[...].reshape(-1, d), lay.mlp.w_gate[...], lay.mlp.w_up[...],
                  lay.mlp.w_down[...]) for lay in model.layers]
    heads = CONFIG.num_heads // CONFIG.num_kv_heads

    def layers(x, weights):
        for wq, wk, wv, wo, w_gate, w_up, w_down in weights:
            attn = x @ wq + jnp.tile(x @ wk + x @ wv, heads)
            x = x + attn @ wo
            x = x + (jax.nn.silu(x @ w_gate) * (x @ w_up)) @ w_down
        return x

    @jax.jit
    def matmuls_only(weights, embed, x_bpd):
        x_bd = layers(x_bpd.reshape(BATCH * PROMPT, d), weights).reshape(BATCH, PROMPT, d)[:, -1]
        step = lambda _, x: x + (layers(x, weights) @ embed.T)[:, :d]
        return jax.lax.fori_loop(0, NEW - 1, step, x_bd + (x_bd @ embed.T)[:, :d])

    replicated, rows = data_parallel()
    weights, embed = jax.device_put((weights, model.embed[...]), replicated)
    x_bpd = jax.device_put(jax.random.normal(jax.random.key(3), (BATCH, PROMPT, d)), rows)

    def run():
        jax.block_until_ready(matmuls_only(weights, embed, x_bpd))

    run()
    return run


def hf_runner():
    """A warmed-up HF ``generate`` call on the same shape."""
    try:
        import torch
        import transformers
    except ImportError as err:
        sys.exit(f"--vs hf needs torch and transformers ({err}); install them with "
                 "`pip install torch==2.13.0` (CPU wheel) then `pip install transformers`.")
    torch.manual_seed(0)
    hf_config = transformers.LlamaConfig(
        vocab_size=CONFIG.vocab_size, hidden_size=CONFIG.d_model,
        intermediate_size=CONFIG.mlp_dim, num_hidden_layers=CONFIG.num_layers,
        num_attention_heads=CONFIG.num_heads, num_key_value_heads=CONFIG.num_kv_heads,
        max_position_embeddings=CONFIG.max_len, rms_norm_eps=CONFIG.norm_eps,
        rope_theta=CONFIG.rope_theta, tie_word_embeddings=True, pad_token_id=0,
        bos_token_id=1, eos_token_id=2)
    model = transformers.LlamaForCausalLM(hf_config).to(torch.float32).eval()
    prompt = torch.randint(0, CONFIG.vocab_size, (BATCH, PROMPT))
    mask = torch.ones_like(prompt)

    def run():
        with torch.no_grad():
            out = model.generate(prompt, attention_mask=mask, do_sample=True, temperature=1.0,
                                 top_k=0, top_p=1.0, max_new_tokens=NEW, min_new_tokens=NEW,
                                 pad_token_id=0)
        assert out.shape == (BATCH, PROMPT + NEW), out.shape

    run()
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vs", choices=["hf"], help="also time HF transformers generate")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--ceiling", action="store_true",
                        help="also time the sampler's dense matmuls alone (an upper bound)")
    parser.add_argument("--results", default=str(RESULTS), help="raw results file (one JSON line per run)")
    args = parser.parse_args()
    use_every_core()

    polrl_run = polrl_runner(args.repeats)
    ceiling_run = ceiling_runner() if args.ceiling else None
    hf_run = hf_runner() if args.vs == "hf" else None
    polrl_times, ceiling_times, hf_times = [], [], []
    for _ in range(args.repeats):  # alternate, so drift in the machine's speed hits all
        polrl_times.append(seconds(polrl_run))
        if ceiling_run is not None:
            ceiling_times.append(seconds(ceiling_run))
        if hf_run is not None:
            hf_times.append(seconds(hf_run))
    seconds_ = statistics.median(polrl_times)
    flops = (transformer_forward_flops(CONFIG, BATCH * PROMPT, (PROMPT + 1) / 2)
             + transformer_forward_flops(CONFIG, BATCH * (NEW - 1), PROMPT + NEW / 2))
    peak = matmul_peak_flops()
    result = {
        "benchmark": "sampler", "device": str(jax.devices()[0]), "devices": jax.device_count(),
        "batch": BATCH,
        "prompt_len": PROMPT, "new_tokens": NEW, "seconds": seconds_,
        "tokens_per_s": BATCH * NEW / seconds_, "model_flops_per_s": flops / seconds_,
        "matmul_peak_flops_per_s": peak, "flop_utilization": flops / seconds_ / peak,
        "load_avg_1m": os.getloadavg()[0],  # other work on the machine skews every number
    }
    print(f"polrl: {result['tokens_per_s']:.0f} tokens/s, {seconds_ * 1e3:.1f} ms per batch")
    if ceiling_run is not None:
        ceiling = statistics.median(ceiling_times)
        result["ceiling_tokens_per_s"] = BATCH * NEW / ceiling
        result["polrl_over_ceiling"] = statistics.median(
            c / p for p, c in zip(polrl_times, ceiling_times))
        print(f"dense matmuls only: {result['ceiling_tokens_per_s']:.0f} tokens/s")
    if hf_run is not None:
        import torch

        hf = statistics.median(hf_times)
        result["hf_torch_threads"] = torch.get_num_threads()
        result["hf_tokens_per_s"] = BATCH * NEW / hf
        result["speedup_vs_hf"] = statistics.median(h / p for p, h in zip(polrl_times, hf_times))
        if ceiling_run is not None:
            result["ceiling_speedup_vs_hf"] = statistics.median(
                h / c for c, h in zip(ceiling_times, hf_times))
        print(f"hf:    {result['hf_tokens_per_s']:.0f} tokens/s, {hf * 1e3:.1f} ms per batch")
    result.update(polrl_s=polrl_times, hf_s=hf_times, ceiling_s=ceiling_times, **provenance.provenance())
    provenance.append(args.results, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

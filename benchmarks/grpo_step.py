"""Seconds per GRPO iteration on a fixed small shape, optionally against TRL / Tunix.

    python benchmarks/grpo_step.py [--steps 20] [--vs trl] [--vs tunix]

Work per iteration: 8 prompts × 8 samples, 8 new tokens (EOS disabled, so every row is 8
tokens), rewards from the verifier, reference log-probs (k3 KL, β = 0.04), one update
(AdamW). Model: vocab 64 (polrl's char tokenizer), d_model 256, 4 layers, 8 heads / 2 KV
heads, MLP 688, random weights. Prompts are arithmetic problems from the embedded task.
polrl runs the whole iteration as one jitted call (rollout → reward → reference forward →
policy forward/backward → update) with the state donated. The time is the median over
``--steps`` iterations after two warm-up iterations. The last line printed is one JSON object.

    median_step_s      = median wall time of one iteration
    model_flops_per_s  = (sampling + reference forward + policy forward/backward FLOPs) / median
    flop_utilization   = model_flops_per_s / matmul_peak_flops_per_s
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks.flops import matmul_peak_flops  # noqa: E402
from polrl.models.flops import transformer_forward_flops  # noqa: E402
from polrl import algorithms  # noqa: E402
from polrl.models import Transformer, TransformerConfig  # noqa: E402
from polrl.rollout import SamplingConfig  # noqa: E402
from polrl.tasks import arithmetic_task, task_batch  # noqa: E402
from polrl import collectors, sharding  # noqa: E402
from polrl.tasks import Task  # noqa: E402
from polrl.train import steps  # noqa: E402

PROMPTS, GROUP, NEW = 8, 8, 8
VOCAB = 64


def model_config(prompt_len: int) -> TransformerConfig:
    return TransformerConfig(vocab_size=VOCAB, d_model=256, num_layers=4, num_heads=8, num_kv_heads=2,
                             mlp_dim=688, max_len=prompt_len + NEW)


def iteration_flops(config: TransformerConfig, prompt_len: int) -> float:
    """Sampling (prefill + decode), one reference forward, one policy forward + backward (3×)."""
    rows, seq = PROMPTS * GROUP, prompt_len + NEW
    sampling = transformer_forward_flops(config, rows * prompt_len, prompt_len / 2)
    sampling += transformer_forward_flops(config, rows * NEW, prompt_len + NEW / 2)
    full = transformer_forward_flops(config, rows * seq, seq / 2)
    return sampling + full + 3 * full


def polrl_step(data: dict, prompt_len: int):
    """The jitted polrl GRPO iteration and its initial state."""
    cfg = model_config(prompt_len)
    graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)), nnx.Param)
    algo = algorithms.grpo(learning_rate=1e-5, kl_coef=0.04)
    sampling = SamplingConfig(max_new_tokens=NEW, eos_id=VOCAB, pad_id=0, temperature=1.0)
    from polrl.tasks import token_exact_match

    task = Task(name="arithmetic", tokenizer=None, max_prompt_len=prompt_len, max_answer_len=data["answer_ba"].shape[1],
                train=(), test=(), host_reward=None, device_reward=token_exact_match)
    ctx = collectors.Context(graphdef=graphdef, task=task, sampling=sampling, group_size=GROUP,
                             layout=sharding.layout_from_config(None))
    collector = collectors.group_samples(ctx)

    def step(state, data):
        rng, sample_rng = jax.random.split(state.rng)
        batch, _, _ = collector.collect((), state, data, sample_rng)
        state, metrics = steps.train_on_batch(state.replace(rng=rng), batch, algorithm=algo, graphdef=graphdef)
        return state, metrics["loss"]

    state = steps.init_state(params, algo, jax.random.PRNGKey(0), ref_params=params)
    return jax.jit(step, donate_argnums=0), state


def time_polrl(data: dict, prompt_len: int, n: int) -> float:
    step, state = polrl_step(data, prompt_len)
    times = []
    for i in range(n + 2):
        t0 = time.perf_counter()
        state, loss = step(state, data)
        loss.block_until_ready()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def prompts(tmp: str):
    task = arithmetic_task(data_dir=tmp, num_train=64, num_test=8)
    batch = task_batch(task, [task.train[i] for i in range(PROMPTS)])
    return task, batch


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--vs", action="append", default=[], choices=["trl", "tunix"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        task, batch = prompts(tmp)
    data = {k: jnp.asarray(v) for k, v in batch.items() if k != "examples"}
    prompt_len = data["prompt_bp"].shape[1]
    peak = matmul_peak_flops()
    median = time_polrl(data, prompt_len, args.steps)
    flops = iteration_flops(model_config(prompt_len), prompt_len) / median
    result = {
        "benchmark": "grpo_step",
        "device": jax.devices()[0].device_kind,
        "prompts": PROMPTS, "group": GROUP, "new_tokens": NEW, "prompt_len": prompt_len,
        "median_step_s": median,
        "model_flops_per_s": flops,
        "matmul_peak_flops_per_s": peak,
        "flop_utilization": flops / peak,
    }
    for peer in args.vs:
        from benchmarks import grpo_peers

        peer_s = grpo_peers.median_step_seconds(peer, [e["prompt"] for e in batch["examples"]], args.steps)
        result[f"{peer}_median_step_s"] = peer_s
        result[f"speedup_vs_{peer}"] = peer_s / median
    print(json.dumps(result))


if __name__ == "__main__":
    main()

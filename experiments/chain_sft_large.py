"""The chain task's SFT warm start on a model about ten times larger than chain_grpo's: the teacher of
experiments/chain_gkd.py.

The same demonstrations, steps, batch and learning rate as chain_grpo's warm start (500 labelled
demonstrations, 500 steps of batch 64, lr 2e-3), and no main phase (total_steps = 0): the run is
its ``sft_warmup`` checkpoint, evaluated on the 500 held-out prompts at its end.
Model: 5-layer decoder, d_model 256, 8 heads / 4 KV heads, MLP 768, the 64-entry char vocabulary
(chain_grpo's: 2 layers, d_model 128).

Launch (CPU; writes runs/chain_sft_large/checkpoints/sft_warmup, which chain_gkd reads):
  python -m polrl.launch --config experiments/chain_sft_large.py --workdir runs/chain_sft_large
Smoke (seconds, run by the test suite; the tiny smoke model, and one GRPO step after the warm-up so
that the main phase writes a checkpoint as every smoke run does):
  python -m polrl.launch --config experiments/chain_sft_large.py:smoke --workdir /tmp/polrl/chain_sft_large_smoke

Expected result: not measured yet by this config's own benchmark; the same model and warm start
are the large_sft arm of benchmarks/guided.py (benchmarks/results/guided.jsonl).
"""
import ml_collections

from experiments import chain_grpo

LARGE = dict(d_model=256, num_layers=5, num_heads=8, num_kv_heads=4, mlp_dim=768)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_grpo.get_config(arg)
    if arg != "smoke":
        c.model.update(**LARGE)
    c.total_steps = 1 if arg == "smoke" else 0
    return c

"""A larger SFT model on the programs task: the "large" teacher of programs_ded.

programs_grpo's task and canonical demonstrations (the canonical postfix program of each problem)
on a 4-layer decoder, d_model 256, 8 heads / 4 KV heads, MLP 768 (the 64-entry char vocabulary):
16000 demonstrations, 600 SFT steps of batch 64, lr 2e-3; no RL step (total_steps 0): the recipe
of experiments/programs_sft_small.py (the student's own model, the pool's other teacher) on a larger
model with twice the demonstrations. Which of the two scores higher varies with the seed (below).

Launch (CPU; the checkpoint is runs/programs_sft_large/checkpoints/sft_warmup):
  python -m polrl.launch --config experiments/programs_sft_large.py --workdir runs/programs_sft_large
The run logs the held-out greedy accuracy of the SFT model (eval/accuracy, phase sft_warmup).

<!-- report: guided.ded_teachers -->
Expected result (from `python benchmarks/guided_ded.py`, which trains both teachers of each seed;
raw: benchmarks/results/guided_ded.jsonl; CPU Intel(R) Xeon(R) Processor; 3 seeds (0, 1, 2);
held-out greedy accuracy, every unit test passed, on 500 prompts): programs_sft_large 78.8 ± 0.2%,
programs_sft_small 78.5 ± 8.2%.
<!-- /report -->
"""
import ml_collections

from experiments import programs_sft_small


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = programs_sft_small.get_config(arg)  # the small teacher's recipe; its smoke sizes
    if arg != "smoke":
        c.model.update(d_model=256, num_layers=4, num_heads=8, num_kv_heads=4, mlp_dim=768)
        c.demos.num = 16_000
    return c

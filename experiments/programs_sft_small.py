"""programs_grpo's SFT warm start trained three times longer: the "small" teacher of programs_ded.

The student's model (2-layer decoder, d_model 128) and canonical demonstrations (the canonical
postfix program of each problem, as the student's own warm start), 600 SFT steps of batch 64 at
lr 2e-3 on 8000 demonstrations (the student's warm start takes 200); no RL step (total_steps 0).
With experiments/programs_sft_large.py (a larger model on twice the demonstrations) it is the pool
DED's teacher selection is tested on: the same style as the student, a smaller model.

Launch (CPU; the checkpoint is runs/programs_sft_small/checkpoints/sft_warmup):
  python -m polrl.launch --config experiments/programs_sft_small.py --workdir runs/programs_sft_small
The run logs the held-out greedy accuracy of the SFT model (eval/accuracy, phase sft_warmup).

<!-- report: guided.ded_teachers -->
Expected result (from `python benchmarks/guided_ded.py`, which trains both teachers of each seed;
raw: benchmarks/results/guided_ded.jsonl; CPU Intel(R) Xeon(R) Processor; 3 seeds (0, 1, 2);
held-out greedy accuracy, every unit test passed, on 500 prompts): programs_sft_large 78.8 ± 0.2%,
programs_sft_small 78.5 ± 8.2%.
<!-- /report -->
"""
import ml_collections

from experiments import programs_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = programs_grpo.get_config(arg)
    c.total_steps = 1 if arg == "smoke" else 0  # the smoke also runs one GRPO step of its phase
    if arg != "smoke":
        c.warmup.steps = 600
    return c

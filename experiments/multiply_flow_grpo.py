"""Flow-GRPO on multiplication with a calculator tool: the tool arm of benchmarks/tools.py.

Task: the problems of experiments/multiply_grpo.py (two integers of 1–3 digits each). The model
may call the calculator environment (`polrl.envs.calculator`): it writes "<37*485>", the
environment appends "=17945" and a newline, and the model writes its final answer in the next
turn. Rollouts are multi-turn (`polrl.collectors.turns`: up to 2 turns of at most 10 tokens,
observations masked out of the loss); the reward is exact match of the final answer.
Recipe (the same budget as the no-tool arm):
  1. SFT warm start: the same 1000 problems, demonstrated as calculator transcripts
     ("<37*485>=17945\n17945"), 300 steps of batch 64, lr 2e-3.
  2. Flow-GRPO: 600 steps of 32 prompts × 8 trajectories, lr 3e-4, k3 KL β = 0.01 to the warm
     start, zero-variance groups masked, one update per batch (the trajectory's outcome
     broadcast to both turns, each turn's token mean averaged over the trajectory's turns).

Launch (CPU):
  python -m polrl.launch --config experiments/multiply_flow_grpo.py --workdir runs/multiply_flow_grpo
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/multiply_flow_grpo.py:smoke --workdir /tmp/polrl/smoke

The trainer's `eval/accuracy` decodes one turn without the environment, so it measures the model
without its tool (near 0 here); the tool arm's held-out accuracy is measured by
benchmarks/tools.py (greedy multi-turn rollouts with the calculator), its training accuracy is
`accuracy` in metrics.jsonl.

<!-- report: multiply.flow_grpo -->
Expected result (benchmarks/tools.md, written by `python benchmarks/tools.py` from
benchmarks/results/tools.jsonl; CPU AMD EPYC / unrecorded; held-out greedy exact match on 500
problems, mean ± std over 3 seeds (0, 1, 2)): 82.3 ± 6.1% after SFT → 96.5 ± 3.4% after 600 RL
steps; without the tool: 9.2 ± 1.6% → 11.6 ± 0.7%.
<!-- /report -->
"""
import ml_collections

from experiments import multiply_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = multiply_grpo.get_config(arg)
    c.task.tool_demonstrations = True
    c.algorithm = "flow_grpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, kl_coef=0.01, filter_zero_variance=True))
    c.collector = "turns"
    c.collector_kwargs = ml_collections.ConfigDict(dict(env="calculator", max_turns=2, turn_tokens=10,
                                                        env_kwargs=dict(max_result_chars=6)))
    return c

"""INSPO (GRPO under a co-evolving population of instructions) on embedded arithmetic.

INSPO ("Agentic Policy Optimization via Instruction-Policy Co-Evolution", arXiv 2512.01945): every
question is asked under an instruction drawn from a population by softmax(w / τ_s), the rewards of
its rollouts update the instruction's score w (the running mean), and every `prune_every` steps the
lowest-scoring instructions are replaced by instructions the policy writes itself after a failed
attempt (`polrl.collectors.with_instruction_population`, `polrl.algorithms.inspo`).

Launch:
  python -m polrl.launch --config experiments/arithmetic_inspo.py --workdir /tmp/polrl/arithmetic_inspo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_inspo.py:smoke --workdir /tmp/polrl/inspo_smoke

Recipe: arithmetic_grpo.py (warm start, prompts, 32 × 8 samples, lr 3e-4, k3 KL β = 0.01, zero-variance
groups masked) with the population: 8 slots of at most 8 characters seeded with "sum:" and "add:",
τ_s = 0.1, 2 proposals every 20 steps from "wrong: " ⊕ failed row ⊕ " better:". The warm start
never saw an instruction, so the seeds are chosen short. Held-out `eval/accuracy` is the policy
under the population's best instruction (the paper's inference setting); `eval/bare/accuracy`
is the same policy on the bare prompts.

<!-- report: guided.inspo -->
Expected result (benchmarks/guided.md, from `python benchmarks/guided_inspo.py`; raw:
benchmarks/results/guided_inspo.jsonl; CPU AMD EPYC; 200 steps of this config and of
arithmetic_grpo.py from each seed's SFT warm start, 3 seeds (0, 1, 2); held-out greedy exact match
on 500 prompts, each run's mean of its last 3 evaluations): warm start 30.9 ± 3.9% → INSPO 45.3 ±
2.3% under the population's best instruction (46.6 ± 2.8% on bare prompts), GRPO 48.3 ± 6.6% (paired
differences -1.2, -9.1, +1.1 points): not better than GRPO on this task.
<!-- /report -->"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "inspo"
    c.algorithm_kwargs.update(instructions=("sum:", "add:"), capacity=8, width=8, selection_temperature=0.1,
                              prune_every=20, num_proposals=2)
    if arg == "smoke":
        c.algorithm_kwargs.update(prune_every=2)
    return c

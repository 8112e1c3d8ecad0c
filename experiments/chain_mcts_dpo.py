"""MCTS-DPO on the chain task: iterated DPO on step-level preference pairs read off a Monte-Carlo tree
search over the scratchpad's steps, from the chain_grpo SFT warm start.

"Monte Carlo Tree Search Boosts Reasoning via Iterative Preference Learning" (Xie et al. 2024,
arXiv 2405.00451). Iteration i starts from and is anchored to π_{i−1}; each step the current
policy searches each prompt's tree of steps ("5+8=13," is one step: the task's step separator
is ","; ``polrl.search.mcts``: PUCT selection, k candidate steps per expansion, each evaluated by
a rollout of the policy scored by the final-answer verifier, mean backup; online, as the paper's
code); at every expanded node the child of highest Q is preferred over the child of lowest Q
(``polrl.collectors.mcts_pairs``; the pair's rows share the node's prefix, masked out, so DPO's
log-ratio is that of the two steps); DPO (β = 0.1) against π_{i−1} gives π_i. There is no
``mcts_dpo`` noun: the paper's objective is DPO's loss on these pairs, so MCTS-DPO is the ``dpo``
noun + the ``mcts_pairs`` collector + one ``config.phases`` entry per iteration (each phase
starts from the previous phase's final parameters, which become its reference). The paper's
self-evaluation term in a node's value is replaced by the verifier's outcome of the rollout.

Launch (CPU):
  python -m polrl.launch --config experiments/chain_mcts_dpo.py --workdir runs/chain_mcts_dpo
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/chain_mcts_dpo.py:smoke --workdir /tmp/polrl/chain_mcts_dpo_smoke

Recipe: the chain_grpo task, model and SFT warm start (500 demonstrations, 500 steps of batch 64);
then ITERATIONS = 3 phases (mcts_dpo_1 … mcts_dpo_3) splitting total_steps (the last takes the
remainder). Each step searches 32 prompts with 12 simulations of 3 candidate steps (≤ 16 tokens,
depth ≤ 10, c_puct 1, prior length exponent 1.25: the paper's code) and emits up to 4 pairs per
prompt (256 rows), those with a Q gap > 0 and different steps; DPO β = 0.1, lr 3e-5 (a tenth of
the chain DPO recipes' rate: a step holds only the pairs its searches found, a few per batch).

<!-- report: guided.mcts_dpo -->
Expected result (benchmarks/guided.md, written by `python benchmarks/guided.py` from
benchmarks/results/guided.jsonl; CPU AMD EPYC; 3 seeds (0, 1, 2); held-out greedy accuracy on 500
prompts, the mean of the last 3 evaluations): SFT warm start 48.5 ± 5.9% → 56.0 ± 7.8%
(instance-level on-policy DPO, same iterations and prompts: 63.3 ± 5.9%).
<!-- /report -->

What it shows: per iteration, the search's statistics (mcts/pairs_found, mcts/q_gap,
mcts/tree_size and mcts/root_value — the search's estimate of the policy's success, which should
rise as it trains), pref_accuracy / pref_margin against π_{i−1}, and the held-out greedy accuracy
(eval/accuracy) at the end of each iteration beside the warm start's.
"""
import ml_collections

from experiments import chain_grpo

ITERATIONS = 3


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_grpo.get_config(arg)
    smoke = arg == "smoke"
    c.total_steps = 3 if smoke else 150
    c.eval_every = 3 if smoke else 25
    c.checkpoint_every = 3 if smoke else 50
    c.rollout.update(batch_size=4 if smoke else 32, group_size=1)
    c.algorithm = "dpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(beta=0.1, learning_rate=3e-5))
    c.collector = "mcts_pairs"
    c.collector_kwargs = ml_collections.ConfigDict(dict(
        simulations=2 if smoke else 12, branching=2 if smoke else 3, max_depth=10, step_tokens=16, c_puct=1.0,
        length_penalty=1.25, margin=0.0, max_pairs=2 if smoke else 4, policy="current"))
    per = c.get_ref("total_steps") // ITERATIONS
    last = c.get_ref("total_steps") - (ITERATIONS - 1) * per
    c.phases = [ml_collections.ConfigDict(dict(name=f"mcts_dpo_{t}", steps=per if t < ITERATIONS else last))
                for t in range(1, ITERATIONS + 1)]
    return c

"""Digi-Q on the chain task: a TD-trained Q function on the frozen SFT model's features, and
best-of-N policy extraction.

Task and warm start: experiments/chain_grpo.py's (sums of one-digit operands answered with a
scratchpad of running totals, one step per "," then "#" and the final value; only the final answer
is rewarded) and its SFT warm start. Then the Digi-Q phase ("Digi-Q: Learning Q-Value Functions for
Training Device-Control Agents", arXiv 2502.15760; ``polrl.algorithms.digi_q``,
``polrl.collectors.step_candidates``): a state is the prompt and the steps so far, an action the
next step. Each step the frozen warm start (the phase's reference: the behaviour policy and the
feature model) samples G trajectories per prompt and, at each of their states, N − 1 more
candidate steps; the twin Q / twin V heads (MLPs on the frozen model's hidden state after the
state, and after the state and the step) take TD steps toward r + γ(1 − done)·V̄(s′) with a
soft-updated target; the policy is trained by filtered behaviour cloning on each state's best
candidate (A = max twin Q − max twin V), where A > 0.1.

Recipe (values in get_config):
  1. SFT warm start: chain_grpo's (demos, warmup).
  2. Digi-Q: rollout.batch_size / rollout.group_size prompts per step, rollout.group_size
     trajectories each, their first collector_kwargs.max_steps steps as states (every step of
     the longest chains), collector_kwargs.candidates candidates per state; the critic's
     keywords and the policy's AdamW learning rate in algorithm_kwargs.
The baseline the paper compares with, filtered behaviour cloning without a critic (every step of
the warm start's right trajectories: rejection-sampling fine-tuning), is this config with
algorithm_kwargs.actor = "successful_behaviour" (benchmarks/guided_digi_q.py runs both).

Launch (CPU):
  python -m polrl.launch --config experiments/chain_digi_q.py --workdir runs/chain_digi_q
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/chain_digi_q.py:smoke --workdir /tmp/polrl/chain_digi_q_smoke

<!-- report: guided.digi_q -->
Expected result (benchmarks/guided.md, from `python benchmarks/guided_digi_q.py`; raw:
benchmarks/results/guided_digi_q.jsonl; CPU AMD EPYC; 200 steps from each seed's chain_grpo SFT warm
start, 3 seeds (0, 1, 2); held-out greedy exact match, each run's mean of its last 3 evaluations,
mean ± std): warm start 48.5 ± 5.9% → Digi-Q 28.7 ± 2.7%, with the Monte-Carlo critic 31.0 ± 3.6%;
critic-free filtered BC 54.3 ± 8.9% (paired Digi-Q − filtered BC: -38.1, -16.1, -22.4 points). The
TD critic's losses over the last tenth of the steps: Q 0.046 ± 0.006, V 0.021 ± 0.005; the actor
trains on 0.200 ± 0.023 of the states.
<!-- /report -->

What it logs: critic/q_loss and critic/v_loss (each batch's TD losses before the critic trains on
it), critic/q_mean and critic/v_mean, actor/weight_fraction (states whose best candidate clears
the threshold), actor/behaviour_chosen (states whose best candidate is the behaviour's own step),
and filtered_bc, the actor's loss.
"""
import ml_collections

from experiments import chain_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_grpo.get_config(arg)
    c.total_steps = 200
    c.eval_every = 50
    c.checkpoint_every = 200
    c.phase_name = "digi_q"
    c.algorithm = "digi_q"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(
        learning_rate=3e-4, critic_target="bellman", gamma=0.95, tau=0.1, threshold=0.1, critic_learning_rate=1e-3,
        critic_steps=4, critic_hidden=64, critic_warmup_steps=0, actor="best_of_n"))
    c.collector = "step_candidates"
    c.collector_kwargs = ml_collections.ConfigDict(dict(candidates=4, max_steps=9))
    c.rollout.update(batch_size=16, group_size=2)
    if arg == "smoke":
        c.total_steps = 2
        c.eval_every = 2
        c.checkpoint_every = 2
        c.rollout.update(batch_size=8, group_size=2)
        c.collector_kwargs.update(candidates=2, max_steps=4)
    return c

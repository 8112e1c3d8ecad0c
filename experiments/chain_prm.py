"""A process reward model (PRM) on the chain task, trained on Monte-Carlo step labels (Math-Shepherd).

Task and warm start: experiments/chain_grpo.py's (sums of one-digit operands answered with a
scratchpad of running totals, one step per "," then "#" and the final value; only the final answer
is rewarded) and its SFT warm start. Then the PRM phase ("Math-Shepherd: Verify and Reinforce LLMs
Step-by-step without Human Annotations", arXiv 2312.08935): the completer — the frozen SFT warm
start, the phase's reference — samples responses, completes the prefix ending at each of their
steps M times, and labels the step with the fraction of completions whose final answer is right
(the last step with the response's own reward); the same model, given a scalar value head (the
noun needs values), learns σ(value after the step's last token) ≈ that label by binary
cross-entropy (``polrl.algorithms.process_reward``, ``polrl.collectors.step_labels``).

Recipe (values in get_config):
  1. SFT warm start: chain_grpo's (demos, warmup).
  2. PRM: rollout.batch_size / rollout.group_size prompts per step, rollout.group_size completer
     samples of each, every sample's first collector_kwargs.max_steps steps (every step of the
     longest chains) labelled by M = collector_kwargs.continuations completions; AdamW at
     algorithm_kwargs.learning_rate, one update per batch; the trunk and the value head train,
     the completer stays frozen.
Model: chain_grpo's decoder with a scalar value head.

Launch (CPU):
  python -m polrl.launch --config experiments/chain_prm.py --workdir runs/chain_prm
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/chain_prm.py:smoke --workdir /tmp/polrl/chain_prm_smoke
Held-out step accuracy and Brier score (labels of test-split prompts, never trained on):
  python scripts/prm_accuracy.py --config experiments/chain_prm.py --workdir runs/chain_prm

Checkpoints: WORKDIR/checkpoints/sft_warmup holds the policy (the completer: the SFT warm start)
and WORKDIR/checkpoints/process_reward_model the PRM; both are the same Transformer with a value
head. Read the PRM with ``polrl.train.build.reward_model_structure(config.model, vocab)`` and
``polrl.train.reward_checkpoint.load_reward_params``; the policy with
``frozen_model_structure(config.model, vocab, value_head=True, …)`` and ``load_params`` (as
scripts/prm_accuracy.py does); score prefixes with ``polrl.search.scoring.prefix_scores``.

<!-- report: guided.prm -->
Expected result (benchmarks/guided.md, written by `python benchmarks/guided.py` from
benchmarks/results/guided.jsonl; CPU AMD EPYC; 3 seeds (0, 1, 2); 200 held-out prompts, each step
labelled by 16 completions): step accuracy 0.761 ± 0.070 (the constant label mean: 0.657 ± 0.097),
Brier score 0.125 ± 0.025 (constant: 0.175 ± 0.019). Searching with it (3 seeds (0, 1, 2)): the
small policy 48.3 ± 8.3% greedy, weighted best-of-16 49.8 ± 10.3%, beam search N = 16 42.5 ± 7.9%;
the compute-optimal choice within the FLOPs of a 9.8× larger policy decoding greedily (66.7 ± 14.6%)
reaches 48.3 ± 6.5% at 0.46 ± 0.17× its FLOPs.
<!-- /report -->

What it shows: the run logs the cross-entropy and prm_step_accuracy / prm_brier on each step's
freshly labelled (not yet trained on) steps, and the labels' mean, the fraction of steps whose
completions disagree (prm/mixed_label_fraction) and the steps per response; the held-out command
compares the PRM's step accuracy and Brier score with the best constant prediction, the label
mean. The PRM phase logs no eval/ metrics: the noun trains a scorer, and its model's greedy answers
as a policy would say nothing about it.
"""
import ml_collections

from experiments import chain_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_grpo.get_config(arg)
    c.total_steps = 300
    c.eval_every = 300
    c.checkpoint_every = 300
    c.phase_name = "process_reward_model"
    c.algorithm = "process_reward_model"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4))
    c.collector = "step_labels"
    c.collector_kwargs = ml_collections.ConfigDict(dict(continuations=4, max_steps=9))
    c.rollout.update(batch_size=32, group_size=4)
    if arg == "smoke":
        c.total_steps = 2
        c.eval_every = 2
        c.checkpoint_every = 2
        c.rollout.update(batch_size=8, group_size=2)
        c.collector_kwargs.update(continuations=2, max_steps=4)
    return c

"""OPA-DPO on the chain task: DPO on the policy's own scratchpads paired with their minimal revisions,
after an On-Policy Alignment SFT phase on the revisions, with an anchor on the chosen response.

"Mitigating Hallucinations in Large Vision-Language Models via DPO: On-Policy Data Hold the Key"
(arXiv 2501.09695), text-only (``polrl.algorithms.opa_dpo``). Each step samples one scratchpad per
prompt from the phase's frozen reference; the programmatic expert (``polrl.collectors.revised_pairs``)
keeps the scratchpad up to its first wrong step and rewrites the rest with the right steps; the pair
is (revised ≻ original), and a scratchpad already right gives a tie the loss ignores.

Launch (CPU):
  python -m polrl.launch --config experiments/chain_opa_dpo.py --workdir runs/chain_opa_dpo
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/chain_opa_dpo.py:smoke --workdir /tmp/polrl/chain_opa_dpo_smoke

Recipe: the chain_grpo SFT warm start (500 demonstrations, 500 steps of batch 64); then, in
total_steps = 400 steps like chain_grpo's RL phase:
  1. ``opa`` (total_steps / 10 = 40 steps): On-Policy Alignment, SFT (lr 5e-4) on the revised
     responses of the warm model's own samples (``revised_pairs``, ``emit="revised"``), 64 prompts
     per step;
  2. ``opa_dpo`` (the other 360 steps): OPA-DPO (β = 0.1, anchor λ = 1, δ = 0, lr 3e-4) on
     (revised ≻ original) pairs of the OPA model's samples (the phase reference, hence also the
     DPO reference), 64 prompts per step (128 rows, as chain_grpo's 16 × 8 samples).
The comparison the paper makes — DPO on the same revised pairs without OPA's alignment phase and
anchor — is experiments/chain_dpo_revised.py.

<!-- report: preference.chain_opa_dpo -->
Expected result (benchmarks/preference.md, written by `python benchmarks/preference.py` from
benchmarks/results/preference.jsonl; CPU AMD EPYC; held-out greedy exact match of the final answer
on 500 prompts, the mean of a run's last 3 evaluations; every arm of a seed from chain_grpo's SFT
warm start of that seed; 400 steps (OPA-DPO: a tenth of them the SFT phase on revisions); mean ± std
over 3 seeds (0, 1, 2)): SFT warm start 48.5 ± 5.9% → 88.1 ± 4.4%; without the anchor 4.3 ± 3.8%;
DPO on the same kind of pairs without the SFT phase and the anchor 12.8 ± 5.1% (paired differences,
OPA-DPO − DPO: +76.7, +80.1, +69.3 points).
<!-- /report -->

What it shows: whether aligning the policy to the expert's revisions before DPO, and anchoring
the revision's likelihood, helps over plain DPO on the same on-policy revised pairs
(chain_dpo_revised) and over the warm start; the benchmark's ``chain_opa_dpo_no_anchor`` arm
(``algorithm_kwargs.anchor_coef=0``) tells the anchor's share from the alignment phase's.
"""
import ml_collections

from experiments import chain_grpo

OPA_DIVISOR = 10  # the OPA phase is total_steps / 10 steps


def revised_rollout(c: ml_collections.ConfigDict, smoke: bool) -> None:
    """One sample per prompt, 64 prompts per step (8 in the smoke run)."""
    c.rollout.update(batch_size=8 if smoke else 64, group_size=1)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_grpo.get_config(arg)
    if arg == "smoke":
        c.total_steps = 10  # 1 + 9: both phases run
    revised_rollout(c, smoke=arg == "smoke")
    c.algorithm = "opa_dpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(beta=0.1, anchor_coef=1.0, anchor_delta=0.0, learning_rate=3e-4))
    c.collector = "revised_pairs"
    c.collector_kwargs = ml_collections.ConfigDict(dict(policy="reference"))
    total = c.get_ref("total_steps")
    opa_steps = total // OPA_DIVISOR
    c.phases = [
        ml_collections.ConfigDict(dict(
            name="opa", steps=opa_steps, algorithm="sft", algorithm_kwargs=dict(learning_rate=5e-4),
            collector="revised_pairs", collector_kwargs=dict(policy="reference", emit="revised"))),
        ml_collections.ConfigDict(dict(name="opa_dpo", steps=total - opa_steps)),
    ]
    return c

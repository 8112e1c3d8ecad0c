"""DPO on the chain task on the same on-policy revised pairs as chain_opa_dpo, without OPA's alignment
phase and anchor: the baseline OPA-DPO is compared with ("Mitigating Hallucinations in Large
Vision-Language Models via DPO: On-Policy Data Hold the Key", arXiv 2501.09695).

Launch (CPU):
  python -m polrl.launch --config experiments/chain_dpo_revised.py --workdir runs/chain_dpo_revised
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/chain_dpo_revised.py:smoke --workdir /tmp/polrl/chain_dpo_revised_smoke

Recipe: the chain_grpo SFT warm start (500 demonstrations, 500 steps of batch 64); then
total_steps = 400 steps of DPO (β = 0.1, lr 3e-4) on (revised ≻ original) pairs: each step samples
one scratchpad for each of 64 prompts from the frozen warm model (the DPO reference), and the
programmatic expert (``polrl.collectors.revised_pairs``) keeps it up to its first wrong step and
rewrites the rest; scratchpads already right give ties.

<!-- report: preference.chain_dpo_revised -->
Expected result (benchmarks/preference.md, written by `python benchmarks/preference.py` from
benchmarks/results/preference.jsonl; CPU AMD EPYC; held-out greedy exact match of the final answer
on 500 prompts, the mean of a run's last 3 evaluations; every arm of a seed from chain_grpo's SFT
warm start of that seed; 400 steps (OPA-DPO: a tenth of them the SFT phase on revisions); mean ± std
over 3 seeds (0, 1, 2)): SFT warm start 48.5 ± 5.9% → 12.8 ± 5.1% (OPA-DPO, the same pairs after an
SFT phase on the revisions, with the anchor: 88.1 ± 4.4%).
<!-- /report -->

What it shows: plain DPO on revised own responses, against which chain_opa_dpo measures what the
OPA phase and the anchor add.
"""
import ml_collections

from experiments import chain_grpo, chain_opa_dpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_grpo.get_config(arg)
    chain_opa_dpo.revised_rollout(c, smoke=arg == "smoke")
    c.algorithm = "dpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(beta=0.1, learning_rate=3e-4))
    c.collector = "revised_pairs"
    c.collector_kwargs = ml_collections.ConfigDict(dict(policy="reference"))
    c.phase_name = "dpo"
    return c

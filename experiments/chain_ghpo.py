"""GHPO on the chain task: GRPO whose unsolved prompts are drawn again with the beginning of their
labelled scratchpad after them (arXiv 2507.10628), from the SFT warm start of chain_grpo.

Task, warm start, model, prompts, learning rate and loss are experiments/chain_grpo.py's; only
the collector differs: ``hinted_groups`` (``polrl.collectors.hints``) samples 8 answers per
prompt and, for every prompt none of whose samples is right, samples 8 more after the first 25%
of its labelled scratchpad (characters, rounded half to even), then, for those still unsolved,
after 50%, then 75% (the reference code's stages, within one step). Hinted rows are trained by the
same GRPO loss with the hint in their prompt (no gradient on it) and are marked GUIDED: the
logged ``accuracy`` is the policy's own, unhinted, and ``guided_accuracy`` /
``hint/hinted_frac`` / ``hint/solved_frac`` describe the hints. Held-out prompts are answered
without hints. The hinted prompt is up to 56 tokens longer, so ``model.max_len`` is 160 (RoPE
positions only: the parameters and the warm start are chain_grpo's).

Launch (CPU):
  python -m polrl.launch --config experiments/chain_ghpo.py --workdir runs/chain_ghpo
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/chain_ghpo.py:smoke --workdir /tmp/polrl/chain_ghpo_smoke

Expected result: not measured yet (``python benchmarks/guided_ghpo.py`` runs it against chain_grpo).
"""
import ml_collections

from experiments import chain_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_grpo.get_config(arg)
    c.model.max_len = 160
    c.collector = "hinted_groups"
    c.collector_kwargs = ml_collections.ConfigDict(dict(hint_ratios=(0.25, 0.5, 0.75)))
    return c

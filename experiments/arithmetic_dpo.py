"""DPO on pairs built from the warm model's own samples, ranked by the arithmetic verifier.

Each step samples G answers per prompt from the frozen SFT warm start (the DPO reference),
scores them with exact match, and pairs the best with the worst of each prompt; prompts whose
samples are all right or all wrong give ties, which the loss ignores.

Launch:
  python -m polrl.launch --config experiments/arithmetic_dpo.py --workdir /tmp/polrl/arithmetic_dpo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_dpo.py:smoke --workdir /tmp/polrl/dpo_smoke

Expected result: TBD
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "dpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(beta=0.1, learning_rate=c.algorithm_kwargs.learning_rate))
    c.batches = "preference_pairs"
    return c

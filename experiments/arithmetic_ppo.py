"""PPO (value head, GAE, clipped value loss) on embedded arithmetic, from the same SFT warm start.

Launch:
  python -m polrl.launch --config experiments/arithmetic_ppo.py --workdir /tmp/polrl/arithmetic_ppo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_ppo.py:smoke --workdir /tmp/polrl/ppo_smoke

Expected result: TBD
"""
import ml_collections

from experiments import arithmetic_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "ppo"
    c.algorithm_kwargs = ml_collections.ConfigDict(
        dict(learning_rate=c.algorithm_kwargs.learning_rate, num_epochs=2, num_minibatches=2, kl_coef=0.01)
    )
    return c
